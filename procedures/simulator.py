"""The simulator channel: the engine's conversation in a browser, for staff trying a procedure
or typing in a resident's application taken by phone (代理入力).

It is a second channel beside LINE and needs nothing from the engine that LINE
does not: engine `Message`s become JSON-able dicts (text rendered by
procedures/texts.py), and what the browser sends back becomes engine `Event`s.

The browser only ever sends back the `event` dicts this module handed out with
each action, plus what a person types or picks (free text, a date, a location,
a sticker). Everything coming from the browser is validated here; a problem
raises `SimulatorInputError` with a Japanese sentence for the page.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext as _

from procedures.engine.types import EVENT_TYPES, Action, Event, Message, SummaryRow
from procedures.spec import HARD_TEXT_MAX, KEY_PATTERN
from procedures.texts import format_number, render_action_label, render_message, render_summary_value

# The conversation partner id of a staff member's simulator run; never a LINE user id (those start with "U").
PARTNER_PREFIX = "sim-"
# The same for a staff member typing in a resident's application (代理入力): a conversation of its own,
# so trying a draft and entering a real application never mix.
PROXY_PARTNER_PREFIX = "proxy-"

# Event types the browser may send to /simulator/send/. Images only come through the upload view,
# which builds the event itself from the stored file.
BROWSER_EVENT_TYPES = tuple(t for t in EVENT_TYPES if t != "image")

_EVENT_FIELDS = ("type", "text", "value", "step", "name", "data", "session")
_COMMAND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SESSION_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{0,100}$")
# The ref of an uploaded file that was not stored because it is not an acceptable image.
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_VALUE_LENGTH = 200
_LOCATION_TEXT_MAX = {"address": 300, "title": 100}


class SimulatorInputError(ValueError):
    """Something the browser sent cannot be used; `message` is shown to the staff member."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def partner_id(user, *, proxy: bool = False) -> str:
    return f"{PROXY_PARTNER_PREFIX if proxy else PARTNER_PREFIX}{user.pk}"


# --------------------------------------------------------------------------
# Events: engine <-> browser
# --------------------------------------------------------------------------


def event_to_dict(event: Event | None) -> dict | None:
    """The JSON form of an event; default fields are left out."""
    if event is None:
        return None
    data: dict[str, Any] = {"type": event.type}
    if event.text:
        data["text"] = event.text
    if event.value is not None:
        data["value"] = _plain(event.value)
    if event.step:
        data["step"] = event.step
    if event.name:
        data["name"] = event.name
    if event.data:
        data["data"] = _plain(event.data)
    if event.session:
        data["session"] = event.session
    return data


def event_from_dict(raw: Any, *, allowed_types: tuple[str, ...] = BROWSER_EVENT_TYPES) -> Event:
    """An engine Event from what the browser sent, or SimulatorInputError."""
    if not isinstance(raw, dict):
        raise SimulatorInputError(_("送信内容（event）の形式が正しくありません。"))
    unknown = sorted(str(key)[:20] for key in raw if key not in _EVENT_FIELDS)
    if unknown:
        raise SimulatorInputError(
            _("送信内容に使えない項目があります: %(fields)s") % {"fields": ", ".join(unknown)}
        )
    event_type = raw.get("type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise SimulatorInputError(_("送信内容の種類（type）が正しくありません。"))
    if event_type not in allowed_types:
        if event_type == "image":
            raise SimulatorInputError(_("画像は「画像を送る」からアップロードしてください。"))
        raise SimulatorInputError(_("この種類の送信（%(type)s）はここでは使えません。") % {"type": event_type})

    step = _optional_text(raw, "step", 40)
    if step and not KEY_PATTERN.match(step):
        raise SimulatorInputError(_("ステップのキー（step）が正しくありません。"))
    session = _optional_text(raw, "session", 100)
    if not SESSION_PATTERN.match(session):
        raise SimulatorInputError(_("会話の識別子（session）が正しくありません。"))
    name = _optional_text(raw, "name", 40)
    text = _optional_text(raw, "text", HARD_TEXT_MAX)
    value = raw.get("value")
    data = raw.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SimulatorInputError(_("送信内容の data の形式が正しくありません。"))

    if event_type == "text":
        if not text.strip():
            raise SimulatorInputError(_("メッセージを入力してください。"))
        _reject_extra(raw, ("text",))
        return Event(type="text", text=text)
    if event_type == "sticker":
        _reject_extra(raw, ())
        return Event(type="sticker")
    if event_type == "start":
        _reject_extra(raw, ("value",))
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SimulatorInputError(_("開始する手続き（value）が正しくありません。"))
        return Event(type="start", value=value)
    if event_type == "date":
        _reject_extra(raw, ("value", "step", "session"))
        if not isinstance(value, str) or not _DATE.match(value):
            raise SimulatorInputError(_("日付を選んでください（YYYY-MM-DD）。"))
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise SimulatorInputError(_("存在しない日付です。")) from None
        return Event(type="date", value=value, step=step, session=session)
    if event_type == "location":
        _reject_extra(raw, ("data", "step", "session"))
        return Event(type="location", step=step, session=session, data=location_data(data))
    if event_type == "choice":
        _reject_extra(raw, ("value", "step", "session", "text"))
        if not isinstance(value, str) or not value or len(value) > _MAX_VALUE_LENGTH:
            raise SimulatorInputError(_("選択した値（value）が正しくありません。"))
        return Event(type="choice", value=value, step=step, session=session, text=text)
    if event_type == "command":
        _reject_extra(raw, ("name", "value", "step", "session", "text"))
        if not _COMMAND_NAME.match(name):
            raise SimulatorInputError(_("操作の名前（name）が正しくありません。"))
        return Event(type="command", name=name, value=_scalar(value), step=step, session=session, text=text)
    raise SimulatorInputError(_("この種類の送信（%(type)s）はここでは使えません。") % {"type": event_type})


def location_data(data: Any) -> dict:
    """Latitude and longitude as numbers in range, address and title as short texts."""
    if not isinstance(data, dict):
        raise SimulatorInputError(_("位置情報の形式が正しくありません。"))
    unknown = sorted(str(key)[:20] for key in data if key not in ("latitude", "longitude", "address", "title"))
    if unknown:
        raise SimulatorInputError(
            _("位置情報に使えない項目があります: %(fields)s") % {"fields": ", ".join(unknown)}
        )
    latitude = _coordinate(data.get("latitude"), 90)
    longitude = _coordinate(data.get("longitude"), 180)
    if latitude is None or longitude is None:
        raise SimulatorInputError(_("緯度は -90〜90、経度は -180〜180 の数値で入力してください。"))
    result: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    for field, max_length in _LOCATION_TEXT_MAX.items():
        text = data.get(field, "")
        if text is None:
            text = ""
        if not isinstance(text, str) or len(text) > max_length:
            raise SimulatorInputError(
                _("位置情報の %(field)s は %(max)s 文字以内の文字で入力してください。") % {"field": field, "max": max_length}
            )
        result[field] = text.strip()
    return result


def image_event(*, step: str, session: str, ref: str, content_type: str, size: int) -> Event:
    """The image event the upload view passes on, as LINE would after fetching the content."""
    return Event(
        type="image", step=step, session=session, data={"ref": ref, "content_type": content_type, "size": size}
    )


def _optional_text(raw: dict, field: str, max_length: int) -> str:
    value = raw.get(field, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SimulatorInputError(_("送信内容の %(field)s は文字で指定してください。") % {"field": field})
    if len(value) > max_length:
        raise SimulatorInputError(
            _("送信内容の %(field)s が長すぎます（%(max)s 文字まで）。") % {"field": field, "max": max_length}
        )
    return value


def _reject_extra(raw: dict, allowed: tuple[str, ...]) -> None:
    extra = [key for key in raw if key != "type" and key not in allowed and raw[key] not in ("", None, {})]
    if extra:
        raise SimulatorInputError(
            _("この種類の送信に使えない項目があります: %(fields)s") % {"fields": ", ".join(sorted(extra))}
        )


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and len(value) <= _MAX_VALUE_LENGTH:
        return value
    raise SimulatorInputError(_("送信内容の value が正しくありません。"))


def _coordinate(value: Any, limit: float) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value) or abs(value) > limit:
        return None
    return value


def _plain(value: Any) -> Any:
    """Engine values as JSON: dates as YYYY-MM-DD, decimals as numbers, tuples as lists."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


# --------------------------------------------------------------------------
# Messages: engine -> browser
# --------------------------------------------------------------------------


def action_to_dict(action: Action) -> dict:
    """A button or quick reply: its label, what kind of input it opens, and the event to send back.

    kind "postback" sends `event` as is; "date_picker" opens a date input (options min, max, initial)
    and sends `event` with the picked date as value; "location" opens the location form;
    "camera" / "camera_roll" open the image upload. The last three send an event of their own type
    carrying the step of `event` when there is one.
    """
    return {
        "label": render_action_label(action),
        "code": action.code,
        "kind": action.kind,
        "event": event_to_dict(action.event),
        "options": _plain(dict(action.options)),
    }


def row_to_dict(row: SummaryRow) -> dict:
    return {
        "key": row.key,
        "label": row.label,
        "value": render_summary_value(row),
        "kind": row.kind,
        "masked": bool(row.masked),
        "edit": action_to_dict(row.edit) if row.edit is not None else None,
    }


def message_to_dict(message: Message) -> dict:
    """`text` is the whole message as LINE shows it in plain text; a summary also comes in parts
    (`heading`, `rows`, `notes`) so the page can lay it out as a card without repeating the rows."""
    data = {
        "code": message.code,
        "layout": message.layout,
        "text": render_message(message),
        "actions": [action_to_dict(action) for action in message.actions],
        "rows": [row_to_dict(row) for row in message.rows],
    }
    if message.layout == "summary":
        data.update(_summary_parts(message.params or {}))
    return data


def _summary_parts(params: dict) -> dict:
    # The same texts as procedures/texts.py uses for the plain-text summary.
    notes = [
        _("%(label)s：%(value)s%(unit)s")
        % {
            "label": item.get("label") or "",
            "value": format_number(item.get("value")),
            "unit": item.get("unit") or "",
        }
        for item in params.get("computed") or []
        if isinstance(item, dict)
    ]
    if params.get("help"):
        notes.append(str(params["help"]))
    return {"heading": str(params.get("label") or _("以下の内容でよろしいですか？")), "notes": notes}


def messages_to_dicts(messages) -> list[dict]:
    return [message_to_dict(message) for message in messages]
