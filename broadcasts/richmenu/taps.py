"""Rich-menu tiles: what a tap sends, counting taps, and turning a tap into the conversation's input.

Every tile except a web link sends a postback `rm.<signature>.<area id>` (messaging/line/postback_routes):
the tap is counted, then the tile's action is looked up NOW, by reference, so a renamed keyword or
a republished procedure never breaks a deployed menu. A web-link tile opens our tracking redirect,
which counts and forwards. Signatures use SECRET_KEY (fallbacks accepted, as for engine buttons).
"""

from __future__ import annotations

import base64
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext as _

from broadcasts.richmenu.models import RichMenuArea, RichMenuTapCount
from messaging.line import postback
from messaging.line.postback_routes import PostbackOutcome
from procedures.engine.types import Event

PREFIX = "rm"
_SALT = "broadcasts.richmenu.taps"


def _signature(payload: str, secret: str) -> str:
    digest = salted_hmac(_SALT, payload, secret=secret, algorithm="sha256").digest()[:12]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def tap_data(area_id: int) -> str:
    return f"{PREFIX}.{_signature(str(area_id), settings.SECRET_KEY)}.{area_id}"


def area_id_from(data: str) -> int | None:
    """The area id in signed tap data, or None when it is not ours or was tampered with."""
    prefix, _dot, rest = data.partition(".")
    signature, _dot, payload = rest.partition(".")
    if prefix != PREFIX or not payload.isdigit() or len(payload) > 18:
        return None
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    if not any(constant_time_compare(signature, _signature(payload, secret)) for secret in secrets):
        return None
    return int(payload)


def tracking_url(area: RichMenuArea) -> str:
    return settings.GOVTECH_BASE_URL.rstrip("/") + reverse("richmenu-tap-redirect", args=[area.pk])


def tap_count(*, area_id: int, now: datetime) -> None:
    """Add one tap to the tile's count for the day (Asia/Tokyo), in one statement when the row exists."""
    day = timezone.localdate(now)
    if RichMenuTapCount.objects.filter(area_id=area_id, day=day).update(count=F("count") + 1):
        return
    try:
        with transaction.atomic():
            RichMenuTapCount.objects.create(area_id=area_id, day=day, count=1)
    except IntegrityError:  # another tap created the row first
        RichMenuTapCount.objects.filter(area_id=area_id, day=day).update(count=F("count") + 1)


def _event_for(area: RichMenuArea, params: dict) -> Event | None:
    kind = RichMenuArea.ActionType
    if area.action_type == kind.PROCEDURE and area.procedure_id:
        return Event(type="start", value=area.procedure_id)
    if area.action_type in (kind.MESSAGE, kind.POSTBACK) and area.text:
        return Event(type="text", text=area.text)
    if area.action_type == kind.DATETIME_PICKER:
        picked = postback.picked_date(params)
        return Event(type="text", text=f"{area.text} {picked}".strip()) if picked else None
    return None


def tap_handle(*, data: str, params: dict, line_user_id: str, resident, now: datetime) -> PostbackOutcome:
    """A resident tapped a tile: count it and go on with what the tile does."""
    area_id = area_id_from(data)
    area = RichMenuArea.objects.select_related("menu").filter(pk=area_id).first() if area_id else None
    if area is None:
        return PostbackOutcome(
            texts=(_("このメニューは現在使えません。メニューが新しくなっている場合は、開き直してください。"),)
        )
    tap_count(area_id=area.pk, now=now)
    if area.action_type == RichMenuArea.ActionType.SWITCH:
        return PostbackOutcome()  # LINE switched the tab itself; nothing to say
    event = _event_for(area, params)
    if event is None:
        return PostbackOutcome(texts=(_("このメニューは準備中です。"),))
    return PostbackOutcome(event=event)
