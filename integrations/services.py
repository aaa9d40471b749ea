"""Writes for outgoing webhooks: the outbox, the sender, resends, endpoint changes.

    application_submitted / application_status_changed (procedures/signals.py)
        --deliveries_enqueue--> one WebhookDelivery per wanting endpoint, in the event's transaction
        --on commit--> integrations.tasks.send_webhooks
    deliveries_send: claim due rows (FOR UPDATE SKIP LOCKED; the claim commits with a lease, so a
        sender that dies mid-POST leaves the row to be claimed again once the lease runs out),
        POST the signed JSON, log the attempt, then: 2xx delivered; 429, 5xx, time-out or no
        connection retried with exponential back-off until WEBHOOK_MAX_ATTEMPTS; anything else failed.
    delivery_resend: staff send a delivery again (same delivery id: the receiver drops duplicates).

Logs carry ids and status codes, never the payload (it holds residents' answers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from api.selectors import application_answers
from audit import actions
from audit.services import audit_record
from integrations.models import DeliveryAttempt, Event, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)  # > one POST, which the time-out bounds
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600
BATCH_SIZE = 20
ERROR_MAX = 300
USER_AGENT = "govtech-webhook/1"


# --------------------------------------------------------------------------
# Enqueue
# --------------------------------------------------------------------------


def _status_data(status) -> dict | None:
    return {"code": status.code, "label": status.label} if status is not None else None


def _payload(endpoint: WebhookEndpoint, application, event: str, change=None) -> dict:
    answers = application_answers(application, sensitive="include" if endpoint.include_sensitive else "omit")
    payload = {
        "event": str(event),
        "occurred_at": timezone.now().isoformat(),
        "procedure": {"id": application.procedure_id, "name": application.procedure.name},
        "application": {
            "id": application.pk,
            "receipt_number": application.receipt_number,
            "version": application.version.number,
            "status": _status_data(application.status),
            "submitted_at": application.submitted_at.isoformat(),
            "answers": answers.values,
        },
    }
    if change is not None:
        payload["status_change"] = {
            "from": _status_data(change.from_status),
            "to": _status_data(change.to_status),
            "via": change.via,
            "changed_at": change.created_at.isoformat(),
        }
    return payload


def wake_sender() -> None:
    from django_q.tasks import async_task

    async_task("integrations.tasks.send_webhooks")


@transaction.atomic
def deliveries_enqueue(*, application, event: str, change=None) -> list[WebhookDelivery]:
    """One outbox row per active endpoint of the application's procedure that wants `event`.

    Written in the caller's transaction (the event and its deliveries commit together); the sender
    is woken once that commits. Test applications never leave the building.
    """
    if application.is_test:
        return []
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(procedure_id=application.procedure_id, is_active=True)
        if endpoint.wants(event)
    ]
    deliveries = [
        WebhookDelivery.objects.create(
            endpoint=endpoint,
            application=application,
            event=event,
            payload=_payload(endpoint, application, event, change),
            next_attempt_at=timezone.now(),
        )
        for endpoint in endpoints
    ]
    if deliveries:
        transaction.on_commit(wake_sender)
    return deliveries


def on_application_submitted(sender, application, **kwargs) -> None:
    deliveries_enqueue(application=application, event=Event.SUBMITTED)


def on_application_status_changed(sender, application, change, **kwargs) -> None:
    deliveries_enqueue(application=application, event=Event.STATUS_CHANGED, change=change)


# --------------------------------------------------------------------------
# Send
# --------------------------------------------------------------------------


def body_bytes(payload: dict) -> bytes:
    """The exact bytes sent (and signed): the same for every attempt of a delivery."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass
class SendRun:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0


def _due(now):
    return WebhookDelivery.objects.filter(
        Q(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        | Q(status=WebhookDelivery.Status.SENDING, lease_until__lt=now)  # its sender died mid-POST
    )


def deliveries_claim(*, now, batch_size: int = BATCH_SIZE) -> list[WebhookDelivery]:
    """Mark due rows as being sent, committed before any POST; rows out of attempts fail here."""
    with transaction.atomic():
        rows = list(
            _due(now).select_for_update(skip_locked=True).select_related("endpoint").order_by("next_attempt_at", "id")[
                :batch_size
            ]
        )
        claimed = []
        for row in rows:
            if row.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
                # Only a sender that kept dying mid-POST gets here: _result gives up otherwise.
                WebhookDelivery.objects.filter(pk=row.pk).update(
                    status=WebhookDelivery.Status.FAILED, claim_token=None, lease_until=None,
                    last_error=(row.last_error or "interrupted")[:ERROR_MAX],
                )
                logger.error("webhook delivery %s failed: no attempts left", row.pk)
                continue
            row.status = WebhookDelivery.Status.SENDING
            row.claim_token = uuid.uuid4()
            row.lease_until = now + LEASE
            row.attempts += 1
            row.save(update_fields=["status", "claim_token", "lease_until", "attempts"])
            claimed.append(row)
        return claimed


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    duration_ms: int


def _post(row: WebhookDelivery) -> Outcome:
    body = body_bytes(row.payload)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "X-Govtech-Event": row.event,
        "X-Govtech-Delivery": str(row.delivery_id),
        "X-Govtech-Signature": signature(row.endpoint.secret, body),
    }
    started = time.monotonic()
    try:
        with requests.post(
            row.endpoint.url,
            data=body,
            headers=headers,
            timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            allow_redirects=False,
            stream=True,  # the answer's body is never read
        ) as response:
            code, error = response.status_code, "" if response.ok else f"HTTP {response.status_code}"
    except requests.Timeout:
        code, error = None, "timeout"
    except requests.RequestException as failure:
        # The class only: a message can quote the URL's credentials.
        code, error = None, f"connection: {type(failure).__name__}"
    return Outcome(code, error, int((time.monotonic() - started) * 1000))


def _retriable(outcome: Outcome) -> bool:
    return outcome.status_code is None or outcome.status_code == 429 or outcome.status_code >= 500


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** (attempts - 1), BACKOFF_MAX_SECONDS))


@transaction.atomic
def _result(row: WebhookDelivery, outcome: Outcome, started_at, now) -> str:
    DeliveryAttempt.objects.create(
        delivery=row, number=row.attempts, started_at=started_at, status_code=outcome.status_code,
        error=outcome.error[:ERROR_MAX], duration_ms=outcome.duration_ms,
    )
    if outcome.status_code is not None and 200 <= outcome.status_code < 300:
        fields = {"status": WebhookDelivery.Status.DELIVERED, "delivered_at": now, "last_error": ""}
        result = "delivered"
    elif _retriable(outcome) and row.attempts < settings.WEBHOOK_MAX_ATTEMPTS:
        fields = {"status": WebhookDelivery.Status.PENDING, "next_attempt_at": now + _backoff(row.attempts),
                  "last_error": outcome.error[:ERROR_MAX]}
        result = "retrying"
    else:
        fields = {"status": WebhookDelivery.Status.FAILED, "last_error": outcome.error[:ERROR_MAX]}
        result = "failed"
    updated = WebhookDelivery.objects.filter(
        pk=row.pk, claim_token=row.claim_token, status=WebhookDelivery.Status.SENDING
    ).update(claim_token=None, lease_until=None, **fields)
    if not updated:
        logger.warning("webhook delivery %s: the claim was lost before the result was recorded", row.pk)
    logger.info("webhook delivery %s attempt %d: %s (status %s)", row.pk, row.attempts, result, outcome.status_code)
    return result


def deliveries_send(*, batch_size: int = BATCH_SIZE) -> SendRun:
    """Send everything due now, batch after batch."""
    run = SendRun()
    while True:
        claimed = deliveries_claim(now=timezone.now(), batch_size=batch_size)
        if not claimed:
            return run
        for row in claimed:
            started_at = timezone.now()
            outcome = _post(row)
            result = _result(row, outcome, started_at, timezone.now())
            setattr(run, result, getattr(run, result) + 1)


# --------------------------------------------------------------------------
# Staff
# --------------------------------------------------------------------------


@transaction.atomic
def delivery_resend(*, delivery: WebhookDelivery, actor) -> bool:
    """Send a failed or delivered row again with a fresh set of attempts; False if it is still under way."""
    row = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    if row.status not in (WebhookDelivery.Status.FAILED, WebhookDelivery.Status.DELIVERED):
        return False
    WebhookDelivery.objects.filter(pk=row.pk).update(
        status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now(), delivered_at=None
    )
    audit_record(actor=actor, action=actions.WEBHOOK_RESEND, obj=row.application,
                 details={"delivery_id": str(row.delivery_id), "endpoint_id": row.endpoint_id})
    transaction.on_commit(wake_sender)
    return True


@transaction.atomic
def endpoint_save(*, endpoint: WebhookEndpoint, actor, changed: list[str]) -> WebhookEndpoint:
    """Save an endpoint's settings and log which fields changed (never the secret's value)."""
    endpoint.full_clean()
    endpoint.save()
    audit_record(actor=actor, action=actions.WEBHOOK_ENDPOINT_CHANGE, obj=endpoint.procedure,
                 details={"endpoint_id": endpoint.pk, "fields": sorted(changed)})
    return endpoint
