"""Engine events <-> LINE postback `data` (at most 300 characters), signed so forged ones are refused.

    data = "1." + signature + "." + payload

`payload` is a compact JSON array ``[type, value, step, name, session]`` (plus ``text`` when an
event carries one); `signature` is a truncated HMAC-SHA256 of the payload keyed with SECRET_KEY
(SECRET_KEY_FALLBACKS are accepted, so rotating the key does not break buttons already shown).
LINE returns `data` untouched; a datetime picker adds the picked value in `postback.params`.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

from procedures.engine.types import Event

MAX_DATA_LENGTH = 300  # LINE: postback / datetime picker `data`
VERSION = "1"
_SALT = "messaging.line.postback"
_SIGNATURE_BYTES = 16

# Event types a button can carry, and their one-letter codes in the payload.
_CODES = {"choice": "c", "command": "m", "date": "d", "start": "s"}
_TYPES = {code: name for name, code in _CODES.items()}

_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_SESSION = re.compile(r"^[A-Za-z0-9_.:-]{0,100}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_MAX_VALUE_LENGTH = 200
_MAX_TEXT_LENGTH = 200


class PostbackTooLong(ValueError):
    """The event does not fit in LINE's 300 characters."""


class InvalidPostback(ValueError):
    """Postback data that this channel did not sign (forged, damaged, or from another system)."""


def _signature(payload: str, secret: str) -> str:
    digest = salted_hmac(_SALT, payload, secret=secret, algorithm="sha256").digest()[:_SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def encode(event: Event) -> str:
    """The postback data for a button that sends `event` back when tapped."""
    code = _CODES.get(event.type)
    if code is None:
        raise ValueError(f"an event of type {event.type!r} cannot be sent by a postback")
    if event.data:
        raise ValueError("postback events carry no data")
    items: list[Any] = [code, event.value, event.step, event.name, event.session]
    if event.text:
        items.append(event.text)
    payload = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
    data = f"{VERSION}.{_signature(payload, settings.SECRET_KEY)}.{payload}"
    if len(data) > MAX_DATA_LENGTH:
        raise PostbackTooLong(f"postback data is {len(data)} characters, LINE allows {MAX_DATA_LENGTH}")
    return data


def _verified_payload(data: Any) -> str:
    if not isinstance(data, str) or len(data) > MAX_DATA_LENGTH:
        raise InvalidPostback("not postback data of this channel")
    version, _dot, rest = data.partition(".")
    signature, _dot, payload = rest.partition(".")
    if version != VERSION or not signature or not payload:
        raise InvalidPostback("not postback data of this channel")
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    if not any(constant_time_compare(signature, _signature(payload, secret)) for secret in secrets):
        raise InvalidPostback("bad postback signature")
    return payload


def _text(value: Any, pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str) or (pattern is not None and not pattern.match(value)):
        raise InvalidPostback("malformed postback payload")
    return value


def _value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str) and len(value) <= _MAX_VALUE_LENGTH:
        return value
    raise InvalidPostback("malformed postback payload")


def decode(data: Any, params: dict | None = None) -> Event:
    """The engine Event of a postback; InvalidPostback when it is not ours or was tampered with.

    `params` are the postback's `params` from LINE: a datetime picker puts the picked date there.
    """
    payload = _verified_payload(data)
    try:
        items = json.loads(payload)
    except ValueError:
        raise InvalidPostback("malformed postback payload") from None
    if not isinstance(items, list) or len(items) not in (5, 6):
        raise InvalidPostback("malformed postback payload")
    event_type = _TYPES.get(items[0]) if isinstance(items[0], str) else None
    if event_type is None:
        raise InvalidPostback("malformed postback payload")
    value = _value(items[1])
    step = _text(items[2])
    if step and not _KEY.match(step):
        raise InvalidPostback("malformed postback payload")
    name = _text(items[3])
    if name and not _NAME.match(name):
        raise InvalidPostback("malformed postback payload")
    session = _text(items[4], _SESSION)
    text = _text(items[5]) if len(items) == 6 else ""
    if len(text) > _MAX_TEXT_LENGTH:
        raise InvalidPostback("malformed postback payload")
    if event_type == "date":
        value = picked_date(params)
    return Event(type=event_type, value=value, step=step, name=name, session=session, text=text)


def picked_date(params: dict | None) -> str | None:
    """ "YYYY-MM-DD" from a datetime picker's params (mode date, or the date part of a datetime)."""
    if not isinstance(params, dict):
        return None
    for key in ("date", "datetime"):
        value = params.get(key)
        if isinstance(value, str) and _DATE.match(value):
            return value[:10]
    return None
