"""The broadcast composer's messages: what staff write, its checks, and the LINE messages it becomes.

A broadcast stores up to BROADCAST_MAX_MESSAGES composer messages (Broadcast.messages), each a
dict with a "kind":

    {"kind": "text", "text": "…"}
    {"kind": "image", "image": "<stored name>.jpg"}
    {"kind": "buttons", "title": "…", "text": "…", "actions": [ACTION, …]}          # 1 to 4 actions
    {"kind": "confirm", "text": "…", "actions": [ACTION, ACTION]}
    {"kind": "cards", "alt_text": "…", "cards": [{"image": "", "title": "…", "text": "…",
                                                   "actions": [ACTION, …]}, …]}     # 1 to 12 cards
    {"kind": "flex", "alt_text": "…", "contents": {bubble or carousel JSON}}

    ACTION = {"type": "uri", "label": "…", "uri": "https://…"} or {"type": "message", "label": "…", "text": "…"}

Buttons open a page or send a keyword as the resident's own message; there are no postbacks (the
conversation engine only trusts its own signed postbacks). A broadcast is the same for every
recipient: there is no placeholder for a resident's name.

Images are re-encoded (which drops EXIF data such as a phone's GPS position) and stored with an
unguessable name through default_storage; LINE fetches them, without logging in, from
broadcasts.views.image under settings.GOVTECH_BASE_URL (https in a deployment).
"""

from __future__ import annotations

import io
import json
import re
import secrets
import warnings
from urllib.parse import urljoin

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from PIL import Image, ImageOps

from broadcasts.models import BROADCAST_MAX_MESSAGES
from govtech.images import sniff_image
from messaging.line.openapi.validation import load_specs
from messaging.line.render import (
    ALT_TEXT_MAX,
    BUTTONS_ACTIONS_MAX,
    BUTTONS_TEXT_MAX,
    BUTTONS_TEXT_WITH_TITLE_MAX,
    BUTTONS_TITLE_MAX,
    CAROUSEL_BUBBLES_MAX,
    CONFIRM_TEXT_MAX,
    DISPLAY_TEXT_MAX,
    FLEX_BUTTON_LABEL_MAX,
    TEMPLATE_LABEL_MAX,
    TEXT_MAX,
    truncate,
    units,
)

KINDS = ("text", "image", "buttons", "confirm", "cards", "flex")
KIND_LABELS = {
    "text": gettext_lazy("テキスト"),
    "image": gettext_lazy("画像"),
    "buttons": gettext_lazy("ボタン"),
    "confirm": gettext_lazy("確認（2択）"),
    "cards": gettext_lazy("カード（横に並ぶ）"),
    "flex": gettext_lazy("Flex JSON（上級者向け）"),
}
ACTION_TYPES = ("uri", "message")
CARD_ACTIONS_MAX = 2
CARD_TITLE_MAX = 40
CARD_TEXT_MAX = 300
URI_MAX = 1000
URI_PREFIXES = ("https://", "http://", "tel:")
# LINE: an image message's original at most 10 MB, its preview at most 1 MB; JPEG or PNG.
IMAGE_MAX_BYTES = 10 * 1024 * 1024
IMAGE_MAX_SIDE = 4096
PREVIEW_SIDE = 240
IMAGE_TYPES = {"image/jpeg": "jpg", "image/png": "png"}
IMAGE_DIRECTORY = "broadcasts/images"
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{32}(-preview)?\.(jpg|png)$")
# LINE: a Flex bubble's JSON at most 30 KB, a carousel's 50 KB.
FLEX_BUBBLE_BYTES_MAX = 30_000
FLEX_CAROUSEL_BYTES_MAX = 50_000
# Actions whose data would reach the conversation engine unsigned (it ignores them).
_FORBIDDEN_FLEX_ACTIONS = ("postback", "datetimepicker", "richmenuswitch")


class ComposeError(ValueError):
    """Messages that cannot be sent as they are; `errors` says why, for staff."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def store_image(data: bytes) -> str:
    """Check and store an uploaded JPEG/PNG and its preview; returns the stored image's name."""
    if len(data) > IMAGE_MAX_BYTES:
        raise ComposeError([_("画像が大きすぎます（10MB まで）。")])
    content_type, _width, _height = sniff_image(data)
    extension = IMAGE_TYPES.get(content_type or "")
    if extension is None:
        raise ComposeError([_("JPEG または PNG の画像を選んでください。")])
    try:
        with warnings.catch_warnings():
            # A picture over Pillow's pixel limit is refused, not decoded (a decompression bomb).
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                image = ImageOps.exif_transpose(opened)
                image.thumbnail((IMAGE_MAX_SIDE, IMAGE_MAX_SIDE))
                original = _encode(image, extension)
                preview = image.copy()
                preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
                preview_bytes = _encode(preview, "jpg")
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ComposeError([_("画像を読み込めませんでした（壊れているか、大きすぎます）。別の画像を選んでください。")]) from None
    if len(original) > IMAGE_MAX_BYTES:
        raise ComposeError([_("画像が大きすぎます（10MB まで）。")])
    stem = secrets.token_urlsafe(24)
    name = f"{stem}.{extension}"
    default_storage.save(f"{IMAGE_DIRECTORY}/{name}", ContentFile(original))
    default_storage.save(f"{IMAGE_DIRECTORY}/{preview_name(name)}", ContentFile(preview_bytes))
    return name


def _encode(image: Image.Image, extension: str) -> bytes:
    out = io.BytesIO()
    if extension == "jpg":
        image.convert("RGB").save(out, "JPEG", quality=88, optimize=True)
    else:
        image.save(out, "PNG", optimize=True)
    return out.getvalue()


def preview_name(name: str) -> str:
    return name.rsplit(".", 1)[0] + "-preview.jpg"


def image_name_is_valid(name: str) -> bool:
    return isinstance(name, str) and bool(_IMAGE_NAME.match(name))


def image_path(name: str) -> str:
    if not image_name_is_valid(name):
        raise ValueError("not a broadcast image name")
    return f"{IMAGE_DIRECTORY}/{name}"


def image_url(name: str) -> str:
    """The public address LINE downloads the image from."""
    return urljoin(settings.GOVTECH_BASE_URL.rstrip("/") + "/", reverse("broadcasts:image", args=[name]).lstrip("/"))


def _image_errors(name, where: str) -> list[str]:
    if not image_name_is_valid(name) or not default_storage.exists(image_path(name)):
        return [_("%(where)s画像が見つかりません。もう一度選んでください。") % {"where": where}]
    return []


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def _text_errors(value, label: str, limit: int, *, required: bool = True) -> list[str]:
    if not isinstance(value, str):
        return [_("%(label)sが正しくありません。") % {"label": label}]
    if not value.strip():
        return [_("%(label)sを入力してください。") % {"label": label}] if required else []
    if units(value) > limit:
        return [
            _("%(label)sは%(limit)s文字までです（いま%(count)s文字）。")
            % {"label": label, "limit": limit, "count": units(value)}
        ]
    return []


def _action_errors(action, where: str, label_max: int) -> list[str]:
    if not isinstance(action, dict) or action.get("type") not in ACTION_TYPES:
        return [_("%(where)sの種類を選んでください。") % {"where": where}]
    errors = _text_errors(action.get("label"), _("%(where)sの表示名") % {"where": where}, label_max)
    if action["type"] == "uri":
        uri = action.get("uri")
        errors += _text_errors(uri, _("%(where)sの URL") % {"where": where}, URI_MAX)
        if isinstance(uri, str) and uri.strip() and not uri.startswith(URI_PREFIXES):
            errors.append(_("%(where)sの URL は https:// で始めてください（電話は tel:）。") % {"where": where})
    else:
        errors += _text_errors(action.get("text"), _("%(where)sで送る言葉") % {"where": where}, DISPLAY_TEXT_MAX)
    return errors


def _actions_errors(actions, where: str, *, least: int, most: int, label_max: int) -> list[str]:
    if not isinstance(actions, list) or not least <= len(actions) <= most:
        if least == most:
            return [_("%(where)sボタンはちょうど%(count)s個です。") % {"where": where, "count": most}]
        return [_("%(where)sボタンは%(least)s〜%(most)s個です。") % {"where": where, "least": least, "most": most}]
    errors = []
    for number, action in enumerate(actions, start=1):
        errors += _action_errors(action, _("%(where)sボタン%(number)s") % {"where": where, "number": number}, label_max)
    return errors


def _flex_errors(message: dict) -> list[str]:
    errors = _text_errors(message.get("alt_text"), _("通知に表示する文"), ALT_TEXT_MAX)
    contents = message.get("contents")
    if not isinstance(contents, dict):
        return errors + [_("Flex の JSON はオブジェクト（{ … }）で書いてください。")]
    size = len(json.dumps(contents, ensure_ascii=False, separators=(",", ":")).encode())
    limit = FLEX_CAROUSEL_BYTES_MAX if contents.get("type") == "carousel" else FLEX_BUBBLE_BYTES_MAX
    if size > limit:
        errors.append(
            _("Flex の JSON が大きすぎます（%(size)s バイト、上限 %(limit)s バイト）。")
            % {"size": size, "limit": limit}
        )
    flex = {"type": "flex", "altText": message.get("alt_text") or " ", "contents": contents}
    errors += [
        f"{detail.property}: {detail.message}"
        for detail in load_specs().schema_errors("messaging-api", "FlexMessage", flex)
    ]
    errors += [
        _("%(path)s: この種類のボタン（%(type)s）は一斉配信では使えません。URL かメッセージのボタンにしてください。")
        % {"path": path, "type": kind}
        for path, kind in _forbidden_actions(contents, "contents")
    ]
    return errors


def _forbidden_actions(node, path: str):
    if isinstance(node, dict):
        action = node.get("action")
        if isinstance(action, dict) and action.get("type") in _FORBIDDEN_FLEX_ACTIONS:
            yield f"{path}.action", action["type"]
        for key, value in node.items():
            yield from _forbidden_actions(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _forbidden_actions(value, f"{path}[{index}]")


def message_errors(message) -> list[str]:
    """What is wrong with one composer message (empty: it can be sent)."""
    if not isinstance(message, dict) or message.get("kind") not in KINDS:
        return [_("メッセージの種類が正しくありません。")]
    kind = message["kind"]
    if kind == "text":
        return _text_errors(message.get("text"), _("本文"), TEXT_MAX)
    if kind == "image":
        return _image_errors(message.get("image"), "")
    if kind == "buttons":
        title = message.get("title") or ""
        text_max = BUTTONS_TEXT_WITH_TITLE_MAX if title.strip() else BUTTONS_TEXT_MAX
        return (
            _text_errors(title, _("タイトル"), BUTTONS_TITLE_MAX, required=False)
            + _text_errors(message.get("text"), _("本文"), text_max)
            + _actions_errors(
                message.get("actions"), "", least=1, most=BUTTONS_ACTIONS_MAX, label_max=TEMPLATE_LABEL_MAX
            )
        )
    if kind == "confirm":
        return _text_errors(message.get("text"), _("本文"), CONFIRM_TEXT_MAX) + _actions_errors(
            message.get("actions"), "", least=2, most=2, label_max=TEMPLATE_LABEL_MAX
        )
    if kind == "cards":
        return _cards_errors(message)
    return _flex_errors(message)


def _cards_errors(message: dict) -> list[str]:
    errors = _text_errors(message.get("alt_text") or "", _("通知に表示する文"), ALT_TEXT_MAX, required=False)
    cards = message.get("cards")
    if not isinstance(cards, list) or not 1 <= len(cards) <= CAROUSEL_BUBBLES_MAX:
        return errors + [_("カードは1〜%(most)s枚です。") % {"most": CAROUSEL_BUBBLES_MAX}]
    for number, card in enumerate(cards, start=1):
        where = _("カード%(number)sの") % {"number": number}
        if not isinstance(card, dict):
            errors.append(_("%(where)s内容が正しくありません。") % {"where": where})
            continue
        if card.get("image"):
            errors += _image_errors(card["image"], where)
        errors += _text_errors(card.get("title"), where + _("タイトル"), CARD_TITLE_MAX)
        errors += _text_errors(card.get("text") or "", where + _("本文"), CARD_TEXT_MAX, required=False)
        errors += _actions_errors(
            card.get("actions"), where, least=1, most=CARD_ACTIONS_MAX, label_max=FLEX_BUTTON_LABEL_MAX
        )
    return errors


def messages_errors(messages) -> list[str]:
    """What is wrong with a broadcast's messages, each error saying which message it is about."""
    if not isinstance(messages, list) or not messages:
        return [_("メッセージを1つ以上作ってください。")]
    if len(messages) > BROADCAST_MAX_MESSAGES:
        return [_("メッセージは%(most)s個までです。") % {"most": BROADCAST_MAX_MESSAGES}]
    return [
        _("メッセージ%(number)s: %(error)s") % {"number": number, "error": error}
        for number, message in enumerate(messages, start=1)
        for error in message_errors(message)
    ]


def check_messages(messages) -> None:
    errors = messages_errors(messages)
    if errors:
        raise ComposeError(errors)


# --------------------------------------------------------------------------
# Rendering into LINE messages
# --------------------------------------------------------------------------


def _line_action(action: dict, label_max: int) -> dict:
    label = truncate(action["label"].strip(), label_max)
    if action["type"] == "uri":
        return {"type": "uri", "label": label, "uri": action["uri"].strip()}
    return {"type": "message", "label": label, "text": action["text"].strip()}


def _card_bubble(card: dict) -> dict:
    body = [{"type": "text", "text": card["title"].strip(), "weight": "bold", "size": "lg", "wrap": True}]
    if (card.get("text") or "").strip():
        body.append({"type": "text", "text": card["text"].strip(), "size": "sm", "color": "#555555", "wrap": True})
    buttons = [
        {
            "type": "button",
            "style": "primary" if index == 0 else "secondary",
            "height": "sm",
            "action": _line_action(action, FLEX_BUTTON_LABEL_MAX),
        }
        for index, action in enumerate(card["actions"])
    ]
    bubble = {
        "type": "bubble",
        "body": {"type": "box", "layout": "vertical", "spacing": "sm", "contents": body},
        "footer": {"type": "box", "layout": "vertical", "spacing": "sm", "contents": buttons},
    }
    if card.get("image"):
        bubble["hero"] = {
            "type": "image",
            "url": image_url(card["image"]),
            "size": "full",
            "aspectRatio": "20:13",
            "aspectMode": "cover",
        }
    return bubble


def line_message(message: dict) -> dict:
    """The LINE message object of one valid composer message."""
    kind = message["kind"]
    if kind == "text":
        return {"type": "text", "text": message["text"]}
    if kind == "image":
        return {
            "type": "image",
            "originalContentUrl": image_url(message["image"]),
            "previewImageUrl": image_url(preview_name(message["image"])),
        }
    if kind == "buttons":
        template = {
            "type": "buttons",
            "text": message["text"].strip(),
            "actions": [_line_action(action, TEMPLATE_LABEL_MAX) for action in message["actions"]],
        }
        title = (message.get("title") or "").strip()
        if title:
            template["title"] = title
        alt = f"{title}\n{template['text']}" if title else template["text"]
        return {"type": "template", "altText": truncate(alt, ALT_TEXT_MAX), "template": template}
    if kind == "confirm":
        text = message["text"].strip()
        template = {
            "type": "confirm",
            "text": text,
            "actions": [_line_action(action, TEMPLATE_LABEL_MAX) for action in message["actions"]],
        }
        return {"type": "template", "altText": truncate(text, ALT_TEXT_MAX), "template": template}
    if kind == "cards":
        bubbles = [_card_bubble(card) for card in message["cards"]]
        contents = bubbles[0] if len(bubbles) == 1 else {"type": "carousel", "contents": bubbles}
        alt = (message.get("alt_text") or "").strip() or message["cards"][0]["title"].strip()
        return {"type": "flex", "altText": truncate(alt, ALT_TEXT_MAX), "contents": contents}
    return {"type": "flex", "altText": message["alt_text"].strip(), "contents": message["contents"]}


def line_messages(messages: list[dict]) -> list[dict]:
    """The LINE messages of a broadcast; raises ComposeError when they cannot be sent as they are."""
    check_messages(messages)
    return [line_message(message) for message in messages]


def parse_flex_json(raw: str) -> dict:
    """Staff's Flex JSON: a bubble or carousel, or a whole flex message (its "contents" are taken)."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ComposeError(
            [
                _("JSON として読めません（%(line)s行目 %(column)s文字目）: %(reason)s")
                % {"line": error.lineno, "column": error.colno, "reason": error.msg}
            ]
        ) from None
    if isinstance(value, dict) and value.get("type") == "flex" and isinstance(value.get("contents"), dict):
        value = value["contents"]
    if not isinstance(value, dict):
        raise ComposeError([_("Flex の JSON はオブジェクト（{ … }）で書いてください。")])
    return value
