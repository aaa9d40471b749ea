"""The LINE webhook: verify, store, answer. No call to LINE and no engine work here.

LINE wants a quick 200. The body is capped before it is read whole, the signature is checked on
the raw bytes before anything is parsed, and every event goes into the inbox in one
transaction. A database that is down answers 503, so LINE redelivers (when redelivery is on).

Only a body that is not a callback request at all is refused (400). A malformed event inside a
good body does not cost the others: it is stored as ignored with the reason, or skipped with a
log line when it has no usable webhookEventId (services.inbox_store), and the answer is 200 (a
redelivery would be just as malformed).
"""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from messaging import services
from messaging.line import parse

logger = logging.getLogger(__name__)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"message": message}, status=status)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python accepts them, JSON does not


def _read_capped(request: HttpRequest, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` (judged by Content-Length when given)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


@csrf_exempt
@require_POST
def webhook(request: HttpRequest) -> HttpResponse:
    limit = settings.LINE_WEBHOOK_MAX_BYTES
    body = _read_capped(request, limit)
    if body is None:
        return _error(413, "request body too large")
    secret = settings.LINE_CHANNEL_SECRET or ""
    if not secret:
        logger.error("LINE webhook called but LINE_CHANNEL_SECRET is not set")
        return _error(503, "channel not configured")
    signature = request.headers.get("X-Line-Signature")
    if not services.signature_is_valid(body=body, signature=signature, channel_secret=secret):
        logger.warning("LINE webhook: bad or missing signature")
        return _error(400, "invalid signature")
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _error(400, "body is not JSON")
    problems = parse.body_problems(payload)
    if problems:
        logger.warning("LINE webhook: malformed body (%s)", "; ".join(problems[:5]))
        return _error(400, "body is not a LINE webhook request")
    events = payload["events"]
    if not events:  # LINE's "verify" button in the console
        return HttpResponse(status=200)
    try:
        services.inbox_store(events=events)
    except DatabaseError:
        logger.exception("LINE webhook: could not store %d event(s); LINE may redeliver", len(events))
        return _error(503, "temporarily unavailable")
    return HttpResponse(status=200)
