"""LINE webhook events -> what the channel does with them (engine Events, follow, unfollow, ignore).

Pure functions over the JSON LINE sends (webhook.yml of LINE's OpenAPI specs); no Django models,
no I/O. The webhook view uses `body_problems`; the inbox stores each event with `inbox_fields`, or
a malformed one (`event_problems`) as ignored with `malformed_fields`; the inbox worker uses
`parse_event` and, once an event is processed or parked, `redact` (the inbox keeps no resident input).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from messaging.line import postback, postback_routes
from procedures.engine.types import Event

MAX_TEXT_LENGTH = 5000  # LINE text messages hold at most 5000 characters
MAX_EVENT_ID_LENGTH = 64
MAX_USER_ID_LENGTH = 64
MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last time Python can hold
_LOCATION_TEXT_MAX = {"address": 500, "title": 200}
# What the engine is told about media that is never an acceptable image.
MEDIA_TYPES = {"video": "video/mp4", "audio": "audio/m4a"}
REJECTED_REF_PREFIX = "rejected:"

# Parsed.action values
ENGINE = "engine"  # pass `event` to the conversation engine
CONTENT = "content"  # fetch the message content first, then an image Event
FOLLOW = "follow"
UNFOLLOW = "unfollow"
IGNORE = "ignore"  # mark ignored with `reason`; nothing else happens
ROUTED = "routed"  # a postback for another feature (postback_routes): `postback_data`, `postback_params`

# What the engine is told when a postback's data was not signed by this channel (a rich-menu
# postback set up in LINE's console, a button from before a SECRET_KEY rotation, forged data).
# Nothing of the data is passed on, so it is never trusted as a command; the engine treats it as
# a button it does not know: "このボタンは現在使えません。" and the current question, or the menu.
UNSIGNED_POSTBACK = Event(type="command", name="unsigned_postback")


@dataclass(frozen=True)
class Parsed:
    action: str
    event: Event | None = None
    reason: str = ""  # IGNORE: why; otherwise a note for the logs (e.g. an unsigned postback)
    reply_token: str = ""
    message_id: str = ""
    declared_type: str = ""  # CONTENT: the type known before fetching (from a file name)
    declared_size: int | None = None  # CONTENT: the size LINE declared (file messages)
    is_unblocked: bool = False
    postback_data: str = ""  # ROUTED
    postback_params: dict | None = None  # ROUTED


# --------------------------------------------------------------------------
# The request body (checked by the webhook view before anything is stored)
# --------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _usable_event_id(event: dict) -> str:
    event_id = event.get("webhookEventId")
    return event_id if isinstance(event_id, str) and 0 < len(event_id) <= MAX_EVENT_ID_LENGTH else ""


def _usable_timestamp(event: dict) -> int | None:
    value = event.get("timestamp")
    return value if _is_int(value) and 0 <= value <= MAX_TIMESTAMP_MS else None


def event_problems(index: int, event: Any) -> list[str]:
    """Why one webhook event cannot be processed (empty when it can). Names fields, never values."""
    where = f"events[{index}]"
    if not isinstance(event, dict):
        return [f"{where} is not an object"]
    problems = []
    if not isinstance(event.get("type"), str) or not event["type"]:
        problems.append(f"{where}.type is missing")
    if _usable_timestamp(event) is None:
        problems.append(f"{where}.timestamp is not a time in milliseconds")
    if not _usable_event_id(event):
        problems.append(f"{where}.webhookEventId is missing or too long")
    if "mode" in event and not isinstance(event["mode"], str):
        problems.append(f"{where}.mode is not a string")
    source = event.get("source")
    if source is not None:
        if not isinstance(source, dict) or not isinstance(source.get("type"), str):
            problems.append(f"{where}.source is malformed")
        elif "userId" in source and (
            not isinstance(source["userId"], str) or not 0 < len(source["userId"]) <= MAX_USER_ID_LENGTH
        ):
            problems.append(f"{where}.source.userId is malformed")
    if "replyToken" in event and not isinstance(event["replyToken"], str):
        problems.append(f"{where}.replyToken is not a string")
    if event.get("type") == "message":
        message = event.get("message")
        if (
            not isinstance(message, dict)
            or not isinstance(message.get("id"), str)
            or not isinstance(message.get("type"), str)
        ):
            problems.append(f"{where}.message is malformed")
    if event.get("type") == "postback":
        data = event.get("postback")
        if not isinstance(data, dict) or not isinstance(data.get("data"), str):
            problems.append(f"{where}.postback is malformed")
        elif "params" in data and not isinstance(data["params"], dict):
            problems.append(f"{where}.postback.params is malformed")
    return problems


def body_problems(payload: Any) -> list[str]:
    """Why a webhook body is not a LINE callback request at all (empty when it is one).

    Only the envelope: one malformed event does not make the others unusable (see event_problems).
    """
    if not isinstance(payload, dict):
        return ["the body is not a JSON object"]
    problems = []
    if not isinstance(payload.get("destination"), str):
        problems.append("destination is missing")
    if not isinstance(payload.get("events"), list):
        problems.append("events is not a list")
    return problems


def callback_problems(payload: Any) -> list[str]:
    """Every problem of a webhook body: the envelope's, then each event's.

    Event types unknown today are accepted (they are stored and ignored), so LINE can add new ones.
    """
    problems = body_problems(payload)
    events = payload.get("events") if isinstance(payload, dict) else None
    if isinstance(events, list):
        for index, event in enumerate(events):
            problems += event_problems(index, event)
    return problems


def line_time(milliseconds: int) -> datetime:
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)


def source_user_id(event: dict) -> str:
    source = event.get("source")
    user_id = source.get("userId") if isinstance(source, dict) else None
    return user_id if isinstance(user_id, str) else ""


def malformed_fields(event: Any, problems: list[str], received_at: datetime) -> dict | None:
    """The columns of an ignored InboxEvent row for a malformed event, or None when it cannot be
    stored (no usable webhookEventId: nothing to deduplicate a redelivery by)."""
    if not isinstance(event, dict) or not _usable_event_id(event):
        return None
    source = event.get("source") if isinstance(event.get("source"), dict) else {}
    user_id = source_user_id(event)
    timestamp = _usable_timestamp(event)
    return {
        "webhook_event_id": event["webhookEventId"],
        "line_user_id": user_id if len(user_id) <= MAX_USER_ID_LENGTH else "",
        "source_type": str(source.get("type") or "")[:20],
        "event_type": event["type"][:40] if isinstance(event.get("type"), str) else "",
        "line_timestamp": line_time(timestamp) if timestamp is not None else received_at,
        "ignored_reason": ("malformed event: " + "; ".join(problems))[:200],
        "payload": redact(event),
    }


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """`value` with U+0000 and lone surrogates in its strings (and keys) replaced by U+FFFD.

    JSON may carry both (`\\u0000`, a `\\ud83d` without its pair) and `json.loads` accepts them,
    but PostgreSQL refuses U+0000 in text and jsonb and nothing can encode a lone surrogate as
    UTF-8: one such character would fail the whole request's transaction, every time LINE
    redelivers it.
    """
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def inbox_fields(event: dict) -> dict:
    """The columns of an InboxEvent row for one (checked) webhook event."""
    source = event.get("source") if isinstance(event.get("source"), dict) else {}
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    delivery = event.get("deliveryContext") if isinstance(event.get("deliveryContext"), dict) else {}
    return {
        "webhook_event_id": event["webhookEventId"],
        "line_user_id": source_user_id(event),
        "source_type": str(source.get("type") or "")[:20],
        "event_type": event["type"][:40],
        "message_type": str(message.get("type") or "")[:20],
        "line_timestamp": line_time(event["timestamp"]),
        "is_redelivery": delivery.get("isRedelivery") is True,
    }


# --------------------------------------------------------------------------
# One event -> what to do
# --------------------------------------------------------------------------


def _number(value: Any, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if -limit <= value <= limit else None


def _location(message: dict) -> Event:
    data: dict[str, Any] = {
        "latitude": _number(message.get("latitude"), 90),
        "longitude": _number(message.get("longitude"), 180),
    }
    for field, limit in _LOCATION_TEXT_MAX.items():
        value = message.get(field)
        data[field] = value[:limit] if isinstance(value, str) else ""
    return Event(type="location", data=data)


def _rejected_media(message_id: str, content_type: str, size: int = 0) -> Event:
    """An image event the engine refuses with the real reason (wrong type or too large)."""
    return Event(
        type="image",
        data={"ref": f"{REJECTED_REF_PREFIX}{message_id}", "content_type": content_type, "size": max(size, 0)},
    )


def _message(event: dict, reply_token: str) -> Parsed:
    message = event["message"]
    kind, message_id = message.get("type"), str(message.get("id"))
    if kind == "text":
        text = message.get("text")
        text = text[:MAX_TEXT_LENGTH] if isinstance(text, str) else ""
        return Parsed(ENGINE, Event(type="text", text=text), reply_token=reply_token)
    if kind == "image":
        provider = message.get("contentProvider")
        if isinstance(provider, dict) and provider.get("type") not in (None, "line"):
            # An image hosted elsewhere: never fetched (the URL is the sender's choice).
            return Parsed(ENGINE, _rejected_media(message_id, "application/octet-stream"), reply_token=reply_token)
        return Parsed(CONTENT, reply_token=reply_token, message_id=message_id)
    if kind == "file":
        name = message.get("fileName") if isinstance(message.get("fileName"), str) else ""
        size = message.get("fileSize") if _is_int(message.get("fileSize")) else None
        guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Parsed(
            CONTENT, reply_token=reply_token, message_id=message_id, declared_type=guessed, declared_size=size
        )
    if kind in MEDIA_TYPES:
        return Parsed(ENGINE, _rejected_media(message_id, MEDIA_TYPES[kind]), reply_token=reply_token)
    if kind == "location":
        return Parsed(ENGINE, _location(message), reply_token=reply_token)
    if kind == "sticker":
        return Parsed(ENGINE, Event(type="sticker"), reply_token=reply_token)
    return Parsed(IGNORE, reason=f"unsupported message type: {str(kind)[:40]}")


def unanswerable_reason(event: dict) -> str:
    """Why no resident's one-to-one chat can be answered for this event, or "" when one can.

    Judged from the event alone, so the webhook stores such events as ignored: no worker runs
    for them and no LineUser is made for a group member who never added the account.
    """
    if event.get("mode", "active") != "active":
        return "standby mode (another channel has the chat)"
    source = event.get("source") if isinstance(event.get("source"), dict) else {}
    if source.get("type") != "user":
        return f"not a one-to-one chat (source: {str(source.get('type'))[:20]})"
    if not source_user_id(event):
        return "no user id"
    return ""


def parse_event(event: dict) -> Parsed:
    """What to do with one stored webhook event. Never raises on odd input."""
    if not isinstance(event, dict):
        return Parsed(IGNORE, reason="not an event object")
    event_type = event.get("type")
    reason = unanswerable_reason(event)
    if reason:
        return Parsed(IGNORE, reason=reason)
    reply_token = event.get("replyToken") if isinstance(event.get("replyToken"), str) else ""
    if event_type == "follow":
        follow = event.get("follow") if isinstance(event.get("follow"), dict) else {}
        return Parsed(FOLLOW, reply_token=reply_token, is_unblocked=follow.get("isUnblocked") is True)
    if event_type == "unfollow":
        return Parsed(UNFOLLOW)
    if event_type == "message" and isinstance(event.get("message"), dict):
        return _message(event, reply_token)
    if event_type == "postback" and isinstance(event.get("postback"), dict):
        data = event["postback"]
        if postback_routes.prefix_of(data.get("data")):
            params = data.get("params") if isinstance(data.get("params"), dict) else None
            return Parsed(ROUTED, reply_token=reply_token, postback_data=data["data"], postback_params=params)
        try:
            engine_event = postback.decode(data.get("data"), data.get("params"))
        except postback.InvalidPostback:
            # Answered (never silence), but nothing of the data is trusted: see UNSIGNED_POSTBACK.
            return Parsed(
                ENGINE,
                UNSIGNED_POSTBACK,
                reason="postback refused: not signed by this channel",
                reply_token=reply_token,
            )
        return Parsed(ENGINE, engine_event, reply_token=reply_token)
    return Parsed(IGNORE, reason=f"unsupported event type: {str(event_type)[:40]}")


# --------------------------------------------------------------------------
# Redaction: what the inbox keeps once an event is processed, ignored or parked
# --------------------------------------------------------------------------

_KEPT_EVENT_FIELDS = ("type", "mode", "timestamp", "source", "webhookEventId", "deliveryContext", "follow")


def redact(event: Any) -> dict:
    """The event without anything the resident typed, picked or sent (ids and types stay)."""
    if not isinstance(event, dict):
        return {"redacted": True}
    kept = {key: event[key] for key in _KEPT_EVENT_FIELDS if key in event}
    message = event.get("message")
    if isinstance(message, dict):
        kept["message"] = {key: message[key] for key in ("id", "type") if key in message}
    if "postback" in event:
        kept["postback"] = {}
    kept["redacted"] = True
    return kept
