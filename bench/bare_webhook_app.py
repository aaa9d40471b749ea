"""The baseline webhook: the least a LINE webhook must do, as a bare WSGI app (no Django).

Per request: read the body (capped), check `X-Line-Signature` (HMAC-SHA256 of the raw body with
the channel secret, compared in constant time), parse the JSON, and INSERT one row per request
into a plain table with one psycopg statement in autocommit (one round trip, its own commit).
Then 200. No middleware, no ORM, no transaction block, no queue, no logging.

Run under the same gunicorn settings as the real app (bench.webhook does it):

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_line LINE_CHANNEL_SECRET=... \\
        gunicorn bench.bare_webhook_app:application -w 2 -b 127.0.0.1:8001

With BENCH_BARE_REPLY_URL set (bench.conversation's baseline), it also answers every event that
has a reply token with one canned text message through LINE's reply API at that base URL, inside
the request, after the insert: the shortest possible path from an event to a reply.

The table (`bench_bare_inbox`) is created by the benchmark before the server starts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
from urllib.parse import urlsplit

import psycopg

MAX_BODY_BYTES = 1024 * 1024  # the real webhook's default cap (LINE_WEBHOOK_MAX_BYTES)
TABLE_SQL = """
CREATE TABLE IF NOT EXISTS bench_bare_inbox (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    body jsonb NOT NULL
)
"""
INSERT_SQL = "INSERT INTO bench_bare_inbox (body) VALUES (%s::jsonb)"
REPLY_MESSAGES = [{"type": "text", "text": "受け付けました"}]

_SECRET = os.environ.get("LINE_CHANNEL_SECRET", "").encode("utf-8")
_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "")
_REPLY_URL = os.environ.get("BENCH_BARE_REPLY_URL", "")
_ACCESS_TOKEN = os.environ.get("LINE_CHANNEL_ACCESS_TOKEN", "bench-access-token")
_connection: psycopg.Connection | None = None  # one per worker process, opened on first use (after the fork)
_line: http.client.HTTPConnection | None = None


def _database() -> psycopg.Connection:
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(_DATABASE_URL, autocommit=True)
    return _connection


def _answer(start_response, status: str, body: bytes = b"") -> list[bytes]:
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _reply(token: str) -> None:
    """POST /v2/bot/message/reply on the (fake) LINE API, on a kept-alive connection."""
    global _line
    if _line is None:
        parts = urlsplit(_REPLY_URL)
        _line = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    body = json.dumps({"replyToken": token, "messages": REPLY_MESSAGES}, ensure_ascii=False).encode("utf-8")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {_ACCESS_TOKEN}"}
    try:
        _line.request("POST", "/v2/bot/message/reply", body=body, headers=headers)
        _line.getresponse().read()
    except (OSError, http.client.HTTPException):
        _line.close()
        raise


def application(environ, start_response):
    if environ.get("REQUEST_METHOD") != "POST":
        return _answer(start_response, "405 Method Not Allowed")
    try:
        declared = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        return _answer(start_response, "413 Payload Too Large")
    body = environ["wsgi.input"].read(min(declared, MAX_BODY_BYTES + 1) if declared else MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _answer(start_response, "413 Payload Too Large")
    signature = environ.get("HTTP_X_LINE_SIGNATURE", "").encode("ascii", "replace")
    expected = base64.b64encode(hmac.new(_SECRET, body, hashlib.sha256).digest())
    if not _SECRET or not hmac.compare_digest(expected, signature):
        return _answer(start_response, "400 Bad Request")
    try:
        payload = json.loads(body)
    except ValueError:
        return _answer(start_response, "400 Bad Request")
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        return _answer(start_response, "400 Bad Request")
    try:
        _database().execute(INSERT_SQL, (body.decode("utf-8"),))
    except psycopg.Error:
        return _answer(start_response, "503 Service Unavailable")
    if _REPLY_URL:
        for event in payload["events"]:
            token = event.get("replyToken") if isinstance(event, dict) else None
            if isinstance(token, str) and token:
                _reply(token)
    return _answer(start_response, "200 OK")
