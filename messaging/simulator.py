"""A simulated resident of the whole LINE account (the staff's 住民シミュレーター).

Unlike the procedure simulator (procedures/simulator.py), which talks to the engine directly, this
one plays LINE itself: it builds the webhook bodies LINE would send for one resident (follow,
text, postback, image, location, sticker, unfollow), signs them with LINE_CHANNEL_SECRET and
POSTs them over HTTP to this server's own `/line/webhook/` – the same path, inbox, workers,
engine, outbox and sender as a real resident's messages. What the city sends back (replies,
pushes, multicasts, broadcasts) is read from the fake LINE API's control API
(messaging/line/fakeline/control.py) that LINE_API_BASE_URL points at.

It only ever talks to a fake LINE on this machine: a LINE_API_BASE_URL that is not http on a
loopback address (the real LINE) makes it unavailable, so it can never send anything to LINE.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from messaging.line import postback, postback_routes
from messaging.line.client import LineClient
from messaging.models import InboxEvent, LineUser, OutboxMessage

TEXT_MAX = 5000  # LINE: a text message holds at most 5000 characters
ADDRESS_MAX = 500
TITLE_MAX = 100
POSTBACK_DATA_MAX = postback.MAX_DATA_LENGTH
CONTROL_TIMEOUT = (2.0, 5.0)  # (connect, read) seconds
WEBHOOK_TIMEOUT = (2.0, 10.0)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# A sticker of LINE's basic set (package 446 "Moon special edition"), as LINE's own examples use.
STICKER = {"packageId": "446", "stickerId": "1988", "stickerResourceType": "STATIC"}
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_USER_ID = re.compile(r"^U[0-9a-f]{32}$")
_PICKER_FORMATS = {"date": "%Y-%m-%d", "time": "%H:%M", "datetime": "%Y-%m-%dT%H:%M"}


class SimulatorError(Exception):
    """Something the staff member should read (Japanese), with the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


class FakeLineUnavailable(SimulatorError):
    def __init__(self, message: str | None = None):
        super().__init__(
            message
            or _(
                "シミュレーター用の LINE（fakeline）に接続できません。make run で起動しているか確認してください。"
            ),
            503,
        )


# --------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------


def resident_user_id(staff_user, number: int = 0) -> str:
    """The LINE user id ("U" + 32 hex) of the staff member's `number`-th simulated resident: stable."""
    digest = salted_hmac("messaging.simulator.resident", f"{staff_user.pk}:{number}", algorithm="sha256")
    return "U" + digest.hexdigest()[:32]


def is_user_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_USER_ID.match(value))


def destination() -> str:
    """The bot's user id in webhook bodies (`destination`): stable for this installation."""
    return "U" + salted_hmac("messaging.simulator.destination", "bot", algorithm="sha256").hexdigest()[:32]


def new_webhook_event_id() -> str:
    """A ULID like LINE's webhookEventId: 48-bit milliseconds + 80 random bits, Crockford base32."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def new_message_id() -> str:
    """An 18-digit message id like LINE's."""
    return f"{int(time.time() * 1000)}{secrets.randbelow(100000):05d}"


# --------------------------------------------------------------------------
# Webhook events, as LINE sends them from a one-to-one chat
# --------------------------------------------------------------------------


def _event(kind: str, user_id: str, reply_token: str | None = None, **fields) -> dict:
    event = {
        "type": kind,
        "mode": "active",
        "timestamp": int(time.time() * 1000),
        "source": {"type": "user", "userId": user_id},
        "webhookEventId": new_webhook_event_id(),
        "deliveryContext": {"isRedelivery": False},
        **fields,
    }
    if reply_token is not None:
        event["replyToken"] = reply_token
    return event


def _message(kind: str, **fields) -> dict:
    return {"id": new_message_id(), "type": kind, "quoteToken": secrets.token_urlsafe(24), **fields}


def follow_event(user_id: str, reply_token: str, *, unblocked: bool = False) -> dict:
    return _event("follow", user_id, reply_token, follow={"isUnblocked": unblocked})


def unfollow_event(user_id: str) -> dict:
    return _event("unfollow", user_id)


def text_event(user_id: str, reply_token: str, text: str) -> dict:
    return _event("message", user_id, reply_token, message=_message("text", text=text))


def postback_event(user_id: str, reply_token: str, data: str, params: dict[str, str] | None = None) -> dict:
    content: dict[str, Any] = {"data": data}
    if params:
        content["params"] = dict(params)
    return _event("postback", user_id, reply_token, postback=content)


def image_event(user_id: str, reply_token: str, message_id: str) -> dict:
    message = {**_message("image", contentProvider={"type": "line"}), "id": message_id}
    return _event("message", user_id, reply_token, message=message)


def location_event(
    user_id: str, reply_token: str, *, latitude: float, longitude: float, address: str = "", title: str = ""
) -> dict:
    message = {"id": new_message_id(), "type": "location", "latitude": latitude, "longitude": longitude}
    if address:
        message["address"] = address
    if title:
        message["title"] = title
    return _event("message", user_id, reply_token, message=message)


def sticker_event(user_id: str, reply_token: str) -> dict:
    return _event("message", user_id, reply_token, message=_message("sticker", **STICKER))


def callback_body(events: list[dict]) -> bytes:
    return json.dumps({"destination": destination(), "events": events}, ensure_ascii=False).encode("utf-8")


def signature(body: bytes, channel_secret: str) -> str:
    """LINE's X-Line-Signature: base64(HMAC-SHA256(channel secret, body))."""
    return base64.b64encode(hmac.new(channel_secret.encode("utf-8"), body, hashlib.sha256).digest()).decode("ascii")


# --------------------------------------------------------------------------
# What the browser sends, checked (a bad value is a 400 with a Japanese message)
# --------------------------------------------------------------------------


def clean_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SimulatorError(_("メッセージを入力してください。"))
    if len(value.encode("utf-16-le")) // 2 > TEXT_MAX:
        raise SimulatorError(_("メッセージは%(max)s文字以内で入力してください。") % {"max": TEXT_MAX})
    return value


def clean_postback(data: Any, params: Any) -> tuple[str, dict[str, str] | None]:
    """The `data` of a button the city sent (signed by this server) and what LINE adds: a picker's
    value, or a rich-menu tab switch's alias and outcome."""
    if not isinstance(data, str) or not data or len(data) > POSTBACK_DATA_MAX:
        raise SimulatorError(_("ボタンのデータが正しくありません。"))
    if params is not None:
        params = _switch_params(params) or _picker_params(params)
    if postback_routes.prefix_of(data):
        return data, params  # a rich-menu tile or another feature's button: its handler checks it
    try:
        postback.decode(data, params)
    except postback.InvalidPostback:
        raise SimulatorError(_("このボタンのデータは、この LINE アカウントが送ったものではありません。")) from None
    return data, params


def _switch_params(params: Any) -> dict[str, str] | None:
    if not isinstance(params, dict) or set(params) != {"newRichMenuAliasId", "status"}:
        return None
    alias, status = params["newRichMenuAliasId"], params["status"]
    if not isinstance(alias, str) or not re.fullmatch(r"[a-z0-9_-]{1,32}", alias) or status != "SUCCESS":
        raise SimulatorError(_("メニューの切り替えの指定が正しくありません。"))
    return {"newRichMenuAliasId": alias, "status": status}


def _picker_params(params: Any) -> dict[str, str]:
    if not isinstance(params, dict) or len(params) != 1:
        raise SimulatorError(_("日付の指定が正しくありません。"))
    ((key, value),) = params.items()
    if key not in _PICKER_FORMATS or not isinstance(value, str) or len(value) > 20:
        raise SimulatorError(_("日付の指定が正しくありません。"))
    try:
        datetime.strptime(value, _PICKER_FORMATS[key])  # noqa: DTZ007 - only the format is checked
    except ValueError:
        raise SimulatorError(_("日付の指定が正しくありません。")) from None
    return {key: value}


# --------------------------------------------------------------------------
# The rich menu under the chat: what LINE shows this resident
# --------------------------------------------------------------------------

RICH_MENU_IMAGE_MAX_BYTES = 1024 * 1024  # LINE's limit for rich menu images


def rich_menu_shown(user_id: str, alias: str = "") -> dict | None:
    """The rich menu LINE shows the resident (their own, else the default), or the one behind a tab's
    alias; None when there is none. Read from the fake LINE only, as a phone would."""
    fake_line_base()  # never the real LINE: FakeLineUnavailable otherwise
    with LineClient() as line:
        if alias:
            found = line.rich_menu_alias(alias)
        else:
            found = line.rich_menu_of_user(user_id)
            if found.result.status == 404:
                found = line.rich_menu_default()
        if found.result.status == 404:
            return None
        if not found.result.ok:
            raise SimulatorError(_("LINE からリッチメニューを取得できませんでした。"), 502)
        result, menu = line.rich_menu(found.rich_menu_id)
    if result.status == 404:
        return None
    if not result.ok:
        raise SimulatorError(_("LINE からリッチメニューを取得できませんでした。"), 502)
    return {
        "id": found.rich_menu_id,
        "size": menu.get("size", {}),
        "chatBarText": menu.get("chatBarText", ""),
        "selected": bool(menu.get("selected")),
        "areas": menu.get("areas", []),
    }


def rich_menu_image(rich_menu_id: str) -> tuple[bytes, str]:
    fake_line_base()  # never the real LINE: FakeLineUnavailable otherwise
    with LineClient() as line:
        content = line.rich_menu_image(rich_menu_id, max_bytes=RICH_MENU_IMAGE_MAX_BYTES)
    if not content.result.ok or content.too_large:
        raise SimulatorError(_("リッチメニューの画像を取得できませんでした。"), 404 if content.result.status == 404 else 502)
    return content.data, content.content_type


def _number(value: Any, limit: float, what: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, int | float) or not -limit <= value <= limit:
        raise SimulatorError(_("%(what)sの値が正しくありません。") % {"what": what})
    return float(value)


def clean_location(data: dict) -> dict:
    latitude = _number(data.get("latitude"), 90, _("緯度"))
    longitude = _number(data.get("longitude"), 180, _("経度"))
    texts = {}
    for key, limit, label in (("address", ADDRESS_MAX, _("住所")), ("title", TITLE_MAX, _("名前"))):
        value = data.get(key) or ""
        if not isinstance(value, str) or len(value) > limit:
            raise SimulatorError(_("%(what)sは%(max)s文字以内で入力してください。") % {"what": label, "max": limit})
        texts[key] = value.strip()
    return {"latitude": latitude, "longitude": longitude, **texts}


# --------------------------------------------------------------------------
# The fake LINE's control API
# --------------------------------------------------------------------------


def fake_line_base() -> str:
    """LINE_API_BASE_URL when it is a fake on this machine; FakeLineUnavailable otherwise."""
    base = (settings.LINE_API_BASE_URL or "").rstrip("/")
    parts = urlsplit(base)
    if parts.scheme != "http" or (parts.hostname or "") not in LOOPBACK_HOSTS:
        raise FakeLineUnavailable(
            _(
                "住民シミュレーターは、このマシンで動く偽の LINE（make run の fakeline）とだけ使えます。"
                "いまは本物の LINE（%(url)s）に接続する設定です。"
            )
            % {"url": base or "-"}
        )
    return base


class FakeLine:
    """A client of the fake LINE's control API (/_fake/...)."""

    def __init__(self, base_url: str | None = None):
        self.base = (base_url or fake_line_base()).rstrip("/") + "/_fake"
        self.session = requests.Session()

    def __enter__(self) -> FakeLine:
        return self

    def __exit__(self, *exc) -> None:
        self.session.close()

    def _call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self.session.request(method, self.base + path, timeout=CONTROL_TIMEOUT, **kwargs)
        except requests.RequestException:
            raise FakeLineUnavailable() from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 404 and path == "/health":
            raise FakeLineUnavailable(
                _("LINE_API_BASE_URL の先は、シミュレーター用の LINE（fakeline）ではないようです。")
            )
        if not 200 <= response.status_code < 300 or not isinstance(body, dict):
            message = body.get("message") if isinstance(body, dict) else ""
            raise SimulatorError(
                _("シミュレーター用の LINE がエラーを返しました（%(status)s %(message)s）。")
                % {"status": response.status_code, "message": message or ""},
                502,
            )
        return body

    def health(self) -> dict:
        return self._call("GET", "/health")

    def issue_reply_token(self, user_id: str) -> str:
        return self._call("POST", "/reply-tokens", json={"userId": user_id})["replyToken"]

    def add_user(self, user_id: str, display_name: str, *, follower: bool) -> dict:
        return self._call(
            "POST", "/users", json={"userId": user_id, "displayName": display_name[:100], "follower": follower}
        )

    def add_content(self, data: bytes, content_type: str) -> str:
        """Register content for a new message; returns the message id LINE would give it."""
        return self._call("POST", "/contents", data=data, headers={"Content-Type": content_type})["messageId"]

    def messages(self, user_id: str, after: int = 0) -> dict:
        return self._call("GET", "/messages", params={"userId": user_id, "after": str(after)})


# --------------------------------------------------------------------------
# The resident
# --------------------------------------------------------------------------


@dataclass
class SimulatedResident:
    """One simulated resident: sends signed webhook events to `webhook_url` and reads what it received."""

    user_id: str
    webhook_url: str
    line: FakeLine

    def token(self) -> str:
        return self.line.issue_reply_token(self.user_id)

    def deliver(self, *events: dict) -> str:
        """POST the events as one signed webhook request, as LINE does; returns the first event's id."""
        secret = settings.LINE_CHANNEL_SECRET or ""
        if not secret:
            raise SimulatorError(_("LINE_CHANNEL_SECRET が設定されていないため、Webhook を送れません。"), 503)
        body = callback_body(list(events))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Line-Signature": signature(body, secret),
            "User-Agent": "LineBotWebhook/2.0 (govtech resident simulator)",
        }
        try:
            response = requests.post(self.webhook_url, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT)
        except requests.RequestException:
            raise SimulatorError(
                _("Webhook（%(url)s）に送信できませんでした。") % {"url": self.webhook_url}, 502
            ) from None
        if response.status_code != 200:
            raise SimulatorError(
                _("Webhook がエラーを返しました（%(status)s）。") % {"status": response.status_code}, 502
            )
        return events[0]["webhookEventId"]

    def follow(self, *, unblocked: bool = False) -> str:
        return self.deliver(follow_event(self.user_id, self.token(), unblocked=unblocked))

    def unfollow(self) -> str:
        return self.deliver(unfollow_event(self.user_id))

    def say(self, text: str) -> str:
        return self.deliver(text_event(self.user_id, self.token(), text))

    def tap(self, data: str, params: dict[str, str] | None = None) -> str:
        return self.deliver(postback_event(self.user_id, self.token(), data, params))

    def send_image(self, data: bytes, content_type: str) -> str:
        message_id = self.line.add_content(data, content_type)
        return self.deliver(image_event(self.user_id, self.token(), message_id))

    def send_location(self, **location) -> str:
        return self.deliver(location_event(self.user_id, self.token(), **location))

    def send_sticker(self) -> str:
        return self.deliver(sticker_event(self.user_id, self.token()))

    def received(self, after: int = 0) -> dict:
        return self.line.messages(self.user_id, after)


# --------------------------------------------------------------------------
# What the channel knows about the resident
# --------------------------------------------------------------------------


def follow_state(user_id: str) -> str:
    """ "new" (never followed), "following" or "blocked": the resident's last follow or unfollow.

    Read from the inbox, which has the event as soon as the webhook answered (before a worker
    processed it); LineUser is the fallback for residents whose inbox rows are gone.
    """
    last = (
        InboxEvent.objects.filter(line_user_id=user_id, event_type__in=("follow", "unfollow"))
        .order_by("-line_timestamp", "-id")
        .values_list("event_type", flat=True)
        .first()
    )
    if last is not None:
        return "following" if last == "follow" else "blocked"
    line_user = LineUser.objects.filter(line_user_id=user_id).first()
    if line_user is None or (line_user.followed_at is None and line_user.blocked_at is None):
        return "new"
    return "following" if line_user.is_following else "blocked"


def pending(user_id: str) -> dict[str, int]:
    """Events not yet processed and messages not yet sent for the resident (the page shows 処理中…)."""
    return {
        "inbox": InboxEvent.objects.filter(line_user_id=user_id, status=InboxEvent.Status.PENDING).count(),
        "outbox": OutboxMessage.objects.filter(
            line_user_id=user_id, status__in=(OutboxMessage.Status.PENDING, OutboxMessage.Status.SENDING)
        ).count(),
    }
