"""Engine Messages -> LINE message objects (dicts of the Messaging API), within LINE's limits.

Texts come from procedures/texts.py; this module only lays them out:

* "text": text messages (split at 5000 characters, never cut);
* "question": the text with quick replies (at most 13). When a question has more actions than
  fit, every action becomes a button of a Flex list after the text, and the quick replies keep
  the navigation (and the camera/location actions, which only exist as quick replies);
* "buttons" / "confirm": a buttons or confirm template when it fits LINE's template limits,
  otherwise the question layout;
* "summary": a Flex bubble (or carousels of at most 12 bubbles) with a 変更 button per row and
  the final actions in the footer and as quick replies.

A label longer than LINE allows is shortened with "…"; the full labels of shortened choices are
then listed in the question text, so nothing is cut silently. Postback data is signed and at
most 300 characters (messaging/line/postback.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from django.utils.translation import gettext as _

from messaging.line import postback
from procedures.engine.types import Action, Message, SummaryRow
from procedures.texts import render_action_label, render_message, render_summary_value

MAX_MESSAGES_PER_REQUEST = 5
TEXT_MAX = 5000
ALT_TEXT_MAX = 400
QUICK_REPLY_MAX = 13
QUICK_REPLY_LABEL_MAX = 20
TEMPLATE_LABEL_MAX = 20
FLEX_BUTTON_LABEL_MAX = 40
DISPLAY_TEXT_MAX = 300
BUTTONS_ACTIONS_MAX = 4
BUTTONS_TITLE_MAX = 40
BUTTONS_TEXT_MAX = 160
BUTTONS_TEXT_WITH_TITLE_MAX = 60
CONFIRM_TEXT_MAX = 240
CAROUSEL_BUBBLES_MAX = 12
# Flex size limits are in bytes of JSON (LINE: bubble 30 KB, carousel 50 KB); keep a margin.
BUBBLE_BYTES_MAX = 24_000
CAROUSEL_BYTES_MAX = 45_000
BUTTONS_PER_BUBBLE = 13  # the engine pages choices by 11 (13 unpaged): one card
ROWS_PER_BUBBLE = 6

# Actions LINE only offers as quick replies (not in templates or Flex).
QUICK_REPLY_ONLY = ("camera", "camera_roll", "location")
# Actions that answer the question; the others (done, paging, skip, back, cancel, ...) navigate.
ANSWER_CODES = ("action.choice", "action.toggle", "action.start")
ELLIPSIS = "…"


# --------------------------------------------------------------------------
# Lengths (LINE counts UTF-16 code units: an emoji outside the BMP counts twice)
# --------------------------------------------------------------------------


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int) -> str:
    """`text` shortened to `limit` characters, ending with "…" when it was cut."""
    if units(text) <= limit:
        return text
    out, used = [], 0
    for char in text:
        size = units(char)
        if used + size > limit - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + ELLIPSIS


def split_text(text: str, limit: int = TEXT_MAX) -> list[str]:
    """`text` in pieces of at most `limit` characters, preferably cut at line breaks."""
    text = text or " "
    pieces = []
    while units(text) > limit:
        head, used = [], 0
        for char in text:
            size = units(char)
            if used + size > limit:
                break
            head.append(char)
            used += size
        chunk = "".join(head)
        cut = chunk.rfind("\n")
        if cut > len(chunk) // 2:
            chunk = chunk[: cut + 1]
        pieces.append(chunk.rstrip("\n") or chunk)
        text = text[len(chunk) :]
    pieces.append(text)
    return [piece for piece in pieces if piece] or [" "]


def _size(obj) -> int:
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


# --------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------


def action_label(action: Action) -> str:
    return render_action_label(action).strip() or _("選択")


def line_action(action: Action, label_max: int, *, label: str | None = None) -> dict:
    """The LINE action object of an engine Action."""
    full = action_label(action)
    shown = truncate(label if label is not None else full, label_max)
    if action.kind == "camera":
        return {"type": "camera", "label": shown}
    if action.kind == "camera_roll":
        return {"type": "cameraRoll", "label": shown}
    if action.kind == "location":
        return {"type": "location", "label": shown}
    if action.event is None:
        raise ValueError(f"action {action.code} has no event to send back")
    data = postback.encode(action.event)
    if action.kind == "date_picker":
        picker = {"type": "datetimepicker", "label": shown, "data": data, "mode": "date"}
        for option in ("initial", "min", "max"):
            value = (action.options or {}).get(option)
            if value:
                picker[option] = str(value)[:10]
        return picker
    if action.kind != "postback":
        raise ValueError(f"unknown action kind {action.kind!r}")
    return {"type": "postback", "label": shown, "data": data, "displayText": truncate(full, DISPLAY_TEXT_MAX)}


def quick_reply(actions: Iterable[Action]) -> dict:
    items = [{"type": "action", "action": line_action(action, QUICK_REPLY_LABEL_MAX)} for action in actions]
    if not 0 < len(items) <= QUICK_REPLY_MAX:
        raise ValueError(f"{len(items)} quick replies; LINE shows 1 to {QUICK_REPLY_MAX}")
    return {"items": items}


def _shortened_answers(actions: Sequence[Action], label_max: int) -> list[str]:
    return [
        action_label(action)
        for action in actions
        if action.code in ANSWER_CODES and units(action_label(action)) > label_max
    ]


def _with_full_labels(text: str, labels: list[str]) -> str:
    if not labels:
        return text
    listing = "\n".join(f"・{label}" for label in labels)
    return f"{text}\n\n{_('ボタンに入りきらない選択肢：')}\n{listing}"


# --------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------


def _text_messages(text: str) -> list[dict]:
    return [{"type": "text", "text": piece} for piece in split_text(text)]


def _flex_button(action: Action, *, style: str = "secondary") -> dict:
    return {
        "type": "button",
        "style": style,
        "height": "sm",
        "action": line_action(action, FLEX_BUTTON_LABEL_MAX),
    }


def _button_style(action: Action) -> str:
    if action.code == "action.toggle" and (action.params or {}).get("selected"):
        return "primary"
    return "secondary"


def _flex(alt_text: str, bubbles: list[dict]) -> dict:
    contents = bubbles[0] if len(bubbles) == 1 else {"type": "carousel", "contents": bubbles}
    return {"type": "flex", "altText": truncate(alt_text or " ", ALT_TEXT_MAX), "contents": contents}


def _button_list(text: str, actions: Sequence[Action]) -> list[dict]:
    """Flex messages listing `actions` as buttons (several bubbles when there are many)."""
    bubbles = []
    for start in range(0, len(actions), BUTTONS_PER_BUBBLE):
        buttons = [_flex_button(a, style=_button_style(a)) for a in actions[start : start + BUTTONS_PER_BUBBLE]]
        bubbles.append(
            {"type": "bubble", "body": {"type": "box", "layout": "vertical", "spacing": "sm", "contents": buttons}}
        )
    return [_flex(text, bubbles[i : i + CAROUSEL_BUBBLES_MAX]) for i in range(0, len(bubbles), CAROUSEL_BUBBLES_MAX)]


def _question(message: Message, text: str) -> list[dict]:
    actions = list(message.actions)
    if not actions:
        return _text_messages(text)
    if len(actions) <= QUICK_REPLY_MAX:
        messages = _text_messages(_with_full_labels(text, _shortened_answers(actions, QUICK_REPLY_LABEL_MAX)))
        messages[-1]["quickReply"] = quick_reply(actions)
        return messages
    # Too many for quick replies: the answers as buttons of a Flex card after the text; the
    # navigation (and camera/location) as quick replies, or in the card too if they do not fit.
    only_quick = [a for a in actions if a.kind in QUICK_REPLY_ONLY]
    navigation = [a for a in actions if a.kind not in QUICK_REPLY_ONLY and a.code not in ANSWER_CODES]
    answers = [a for a in actions if a.kind not in QUICK_REPLY_ONLY and a.code in ANSWER_CODES]
    room = QUICK_REPLY_MAX - len(only_quick)
    quick = only_quick + navigation[:room]
    in_flex = answers + navigation[room:]
    messages = _text_messages(_with_full_labels(text, _shortened_answers(in_flex, FLEX_BUTTON_LABEL_MAX)))
    messages += _button_list(text.split("\n", 1)[0], in_flex)
    if quick:
        messages[-1]["quickReply"] = quick_reply(quick)
    return messages


def _fits_template(actions: Sequence[Action]) -> bool:
    return all(a.kind not in QUICK_REPLY_ONLY and units(action_label(a)) <= TEMPLATE_LABEL_MAX for a in actions)


def _buttons(message: Message, text: str) -> list[dict]:
    actions = list(message.actions)
    if not 0 < len(actions) <= BUTTONS_ACTIONS_MAX or units(text) > BUTTONS_TEXT_MAX or not _fits_template(actions):
        return _question(message, text)
    return [
        {
            "type": "template",
            "altText": truncate(text, ALT_TEXT_MAX),
            "template": {
                "type": "buttons",
                "text": text,
                "actions": [line_action(a, TEMPLATE_LABEL_MAX) for a in actions],
            },
        }
    ]


def _confirm(message: Message, text: str) -> list[dict]:
    actions = list(message.actions)
    if len(actions) != 2 or units(text) > CONFIRM_TEXT_MAX or not _fits_template(actions):
        return _question(message, text)
    return [
        {
            "type": "template",
            "altText": truncate(text, ALT_TEXT_MAX),
            "template": {
                "type": "confirm",
                "text": text,
                "actions": [line_action(a, TEMPLATE_LABEL_MAX) for a in actions],
            },
        }
    ]


# -- summary ---------------------------------------------------------------


def _small_text(text: str, **style) -> dict:
    return {"type": "text", "text": text or "—", "wrap": True, **style}


def _summary_row(row: SummaryRow) -> dict:
    contents = [
        _small_text(row.label, size="xs", color="#777777"),
        _small_text(render_summary_value(row), size="sm"),
    ]
    if row.edit is not None:
        edit = dict(line_action(row.edit, FLEX_BUTTON_LABEL_MAX, label=_("変更")))
        edit["displayText"] = truncate(_("「%(label)s」を変更") % {"label": truncate(row.label, 60)}, DISPLAY_TEXT_MAX)
        contents.append({"type": "button", "style": "link", "height": "sm", "action": edit})
    return {"type": "box", "layout": "vertical", "spacing": "xs", "margin": "lg", "contents": contents}


def _summary_closing(message: Message) -> list[dict]:
    params = message.params or {}
    contents: list[dict] = []
    for item in params.get("computed") or []:
        if isinstance(item, dict):
            value = item.get("value")
            value = int(value) if isinstance(value, float) and value.is_integer() else value
            contents.append(
                _small_text(f"{item.get('label') or ''}：{value}{item.get('unit') or ''}", size="md", weight="bold")
            )
    if params.get("help"):
        contents.append(_small_text(str(params["help"]), size="xs", color="#777777"))
    return contents


def _summary(message: Message) -> list[dict]:
    params = message.params or {}
    title = str(params.get("label") or _("以下の内容でよろしいですか？"))
    alt_text = _("「%(name)s」の入力内容の確認") % {"name": params.get("name") or _("手続き")}
    actions = list(message.actions)
    footer_actions = [a for a in actions if a.kind not in QUICK_REPLY_ONLY]

    # Pack the rows into bubbles by count and size.
    groups: list[list[dict]] = [[_small_text(title, weight="bold", size="md")]]
    for row in message.rows:
        box = _summary_row(row)
        current = groups[-1]
        if len(current) >= ROWS_PER_BUBBLE or (_size(current) + _size(box) > BUBBLE_BYTES_MAX and len(current) > 0):
            groups.append([])
        groups[-1].append(box)
    closing = _summary_closing(message)
    if closing:
        if _size(groups[-1]) + _size(closing) > BUBBLE_BYTES_MAX:
            groups.append([])
        groups[-1] += [{"type": "separator", "margin": "lg"}, *closing] if groups[-1] else closing

    bubbles = [{"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": group}} for group in groups]
    if footer_actions:
        bubbles[-1]["footer"] = {
            "type": "box",
            "layout": "vertical",
            "spacing": "sm",
            "contents": [
                _flex_button(a, style="primary" if a.code == "action.submit" else "secondary") for a in footer_actions
            ],
        }

    # Bubbles into carousels of at most 12 bubbles and CAROUSEL_BYTES_MAX.
    carousels: list[list[dict]] = [[]]
    for bubble in bubbles:
        current = carousels[-1]
        if current and (len(current) >= CAROUSEL_BUBBLES_MAX or _size(current) + _size(bubble) > CAROUSEL_BYTES_MAX):
            carousels.append([])
        carousels[-1].append(bubble)
    messages = [_flex(alt_text, group) for group in carousels]
    if actions:
        messages[-1]["quickReply"] = quick_reply(actions[:QUICK_REPLY_MAX])
    return messages


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------


def render(message: Message) -> list[dict]:
    """The LINE messages for one engine message (usually one; more for very long content)."""
    if message.layout == "summary":
        return _summary(message)
    text = render_message(message)
    if message.layout == "confirm":
        return _confirm(message, text)
    if message.layout == "buttons":
        return _buttons(message, text)
    return _question(message, text)


def render_all(messages: Iterable[Message]) -> list[dict]:
    rendered: list[dict] = []
    for message in messages:
        rendered += render(message)
    return rendered


def plain_text(text: str) -> list[dict]:
    """Text messages for a text of our own (the greeting)."""
    return _text_messages(text)


def chunks(messages: Sequence[dict], size: int = MAX_MESSAGES_PER_REQUEST) -> list[list[dict]]:
    """Messages in request-sized groups (LINE sends 1 to 5 messages per request), order kept."""
    return [list(messages[i : i + size]) for i in range(0, len(messages), size)]
