"""The resident simulator (住民シミュレーター): staff play one resident of the whole LINE account.

A page (`/line/simulator/`) and five JSON endpoints. What the staff member types or taps becomes a
signed LINE webhook POSTed to this server's own `/line/webhook/` (messaging/simulator.py), so it
goes through the inbox, the workers, the engine, the outbox and the sender like a real resident's;
the page polls what the fake LINE received for this resident. Staff only.

    POST send/    {"type": "text"|"postback"|"location"|"sticker"|"unfollow", ...}
    GET  poll/    ?after=<seq>  -> the LINE messages sent to the resident since then, and the status
    POST upload/  multipart "file": an image message
    POST follow/  {"if_new": bool}: add as a friend (on opening: only if never followed)
    POST reset/   another resident (a new user id)
"""

from __future__ import annotations

import functools
import json
import re

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from govtech.uploads import LimitedUploadHandler, UploadRefused, too_large_message, upload_guard, uploaded_file
from messaging import simulator
from messaging.simulator import FakeLine, SimulatedResident, SimulatorError

SESSION_KEY = "messaging.resident_simulator.number"
MAX_RESIDENTS = 1_000_000
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,49}/[a-z0-9][a-z0-9.+-]{0,49}$")
_DEFAULT_CITY_HALL = {"latitude": 35.689501, "longitude": 139.691722, "address": "市役所", "title": "市役所"}


def _json_error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status, json_dumps_params={"ensure_ascii": False})


def _ok(**data) -> JsonResponse:
    return JsonResponse({"ok": True, **data}, json_dumps_params={"ensure_ascii": False})


def _staff_json(view):
    """Staff only, answering JSON (403 rather than the login page); SimulatorError -> its status and message."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        user = request.user
        if not (user.is_active and user.is_staff):
            return _json_error(_("ログインが切れました。ページを読み込み直して、もう一度ログインしてください。"), 403)
        try:
            return view(request, *args, **kwargs)
        except SimulatorError as error:
            return _json_error(error.message, error.status)

    return wrapper


# --------------------------------------------------------------------------
# The staff member's resident
# --------------------------------------------------------------------------


def _number(request) -> int:
    number = request.session.get(SESSION_KEY, 0)
    return number if isinstance(number, int) and 0 <= number < MAX_RESIDENTS else 0


def _user_id(request) -> str:
    return simulator.resident_user_id(request.user, _number(request))


def _display_name(request) -> str:
    return _("%(staff)s の住民%(number)s") % {"staff": request.user.get_username(), "number": _number(request) + 1}


def _resident(request, line: FakeLine) -> SimulatedResident:
    webhook_url = request.build_absolute_uri(reverse("messaging:line-webhook"))
    return SimulatedResident(user_id=_user_id(request), webhook_url=webhook_url, line=line)


def _read_json(request) -> dict:
    if request.content_type != "application/json":
        raise SimulatorError(_("JSON で送信してください。"), 415)
    try:
        raw = request.body
    except RequestDataTooBig:
        raise SimulatorError(_("送信内容が大きすぎます。"), 413) from None
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise SimulatorError(_("送信内容を JSON として読めません。")) from None
    if not isinstance(body, dict):
        raise SimulatorError(_("送信内容の形式が正しくありません。"))
    return body


# --------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------


@require_GET
@never_cache
@staff_member_required
def resident_simulator_page(request):
    problem = ""
    try:
        with FakeLine() as line:
            line.health()
    except SimulatorError as error:
        problem = error.message
    user_id = _user_id(request)
    config = {
        "user_id": user_id,
        "available": not problem,
        "urls": {
            name: reverse(f"messaging:resident-simulator-{name}")
            for name in ("send", "poll", "upload", "follow", "reset", "richmenu")
        },
        "text_max": simulator.TEXT_MAX,
        "upload_max_bytes": settings.SIMULATOR_UPLOAD_MAX_BYTES,
        "upload_too_large": too_large_message(settings.SIMULATOR_UPLOAD_MAX_BYTES),
        "city_hall": getattr(settings, "SIMULATOR_CITY_HALL", _DEFAULT_CITY_HALL),
    }
    context = {
        **admin.site.each_context(request),
        "title": _("住民シミュレーター（LINE）"),
        "problem": problem,
        "user_id": user_id,
        "display_name": _display_name(request),
        "config": config,
    }
    return render(request, "messaging/resident_simulator.html", context)


# --------------------------------------------------------------------------
# JSON endpoints
# --------------------------------------------------------------------------


@require_POST
@_staff_json
def resident_simulator_follow(request):
    """Add the resident as a friend: the greeting comes back. With if_new, only if it never followed."""
    body = _read_json(request)
    if_new = body.get("if_new", False)
    if not isinstance(if_new, bool):
        raise SimulatorError(_("if_new は true か false で指定してください。"))
    user_id = _user_id(request)
    state = simulator.follow_state(user_id)
    with FakeLine() as line:
        # (Again) known to the fake – it forgets on restart – so broadcasts reach a friend.
        line.add_user(user_id, _display_name(request), follower=state != "blocked" or not if_new)
        if if_new and state != "new":
            return _ok(sent=False, user_id=user_id, state=state)
        if state == "following":
            raise SimulatorError(_("すでに友だち追加しています。"))
        event_id = _resident(request, line).follow(unblocked=state == "blocked")
    return _ok(sent=True, user_id=user_id, state="following", event_id=event_id)


@require_POST
@_staff_json
def resident_simulator_send(request):
    body = _read_json(request)
    kind = body.get("type")
    if kind not in ("text", "postback", "location", "sticker", "unfollow"):
        raise SimulatorError(_("この種類のイベントは送れません。"))
    user_id = _user_id(request)
    state = simulator.follow_state(user_id)
    if state == "blocked":
        raise SimulatorError(_("ブロック中です。送るには、先に「友だち追加」をしてください。"))
    # Check everything before anything is sent.
    if kind == "text":
        text = simulator.clean_text(body.get("text"))
    elif kind == "postback":
        data, params = simulator.clean_postback(body.get("data"), body.get("params"))
    elif kind == "location":
        location = simulator.clean_location(body)
    elif kind == "unfollow" and state != "following":
        raise SimulatorError(_("友だち追加していないため、ブロックできません。"))
    with FakeLine() as line:
        resident = _resident(request, line)
        if kind == "text":
            event_id = resident.say(text)
        elif kind == "postback":
            event_id = resident.tap(data, params)
        elif kind == "location":
            event_id = resident.send_location(**location)
        elif kind == "sticker":
            event_id = resident.send_sticker()
        else:
            event_id = resident.unfollow()
            line.add_user(user_id, _display_name(request), follower=False)
    return _ok(event_id=event_id, user_id=user_id)


@require_GET
@never_cache
@_staff_json
def resident_simulator_poll(request):
    raw = request.GET.get("after", "0")
    if not raw.isdigit() or len(raw) > 18:
        raise SimulatorError(_("after の指定が正しくありません。"))
    user_id = _user_id(request)
    with FakeLine() as line:
        received = line.messages(user_id, int(raw))
    return _ok(
        user_id=user_id,
        messages=received["messages"],
        next=received["next"],
        instance=received["instance"],
        state=simulator.follow_state(user_id),
        pending=simulator.pending(user_id),
    )


@require_GET
@never_cache
@_staff_json
def resident_simulator_richmenu(request):
    """The rich menu under the resident's chat (or the tab behind `alias`), as LINE has it."""
    alias = request.GET.get("alias", "")
    if alias and not re.fullmatch(r"[a-z0-9_-]{1,32}", alias):
        raise SimulatorError(_("エイリアスIDが正しくありません。"))
    menu = simulator.rich_menu_shown(_user_id(request), alias)
    if menu is not None:
        menu["image_url"] = reverse("messaging:resident-simulator-richmenu-image", args=[menu["id"]])
    return _ok(menu=menu)


@require_GET
@_staff_json
def resident_simulator_richmenu_image(request, rich_menu_id: str):
    data, content_type = simulator.rich_menu_image(rich_menu_id)
    response = HttpResponse(data, content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"  # a LINE rich menu's image never changes
    return response


@require_POST
@_staff_json
def resident_simulator_reset(request):
    """別の住民として: a new resident (the next user id); it has never followed."""
    request.session[SESSION_KEY] = (_number(request) + 1) % MAX_RESIDENTS
    user_id = _user_id(request)
    return _ok(user_id=user_id, display_name=_display_name(request), state=simulator.follow_state(user_id))


@csrf_exempt  # checked in _upload, once the size limit is in place
@require_POST
@_staff_json
def resident_simulator_upload(request):
    """An image the resident sends: registered as message content on the fake LINE, then an image event."""
    limit = settings.SIMULATOR_UPLOAD_MAX_BYTES
    try:
        handler = upload_guard(request, limit)
    except UploadRefused as refused:
        raise SimulatorError(refused.message, refused.status) from None
    return _upload(request, limit, handler)


@csrf_protect
def _upload(request, limit: int, handler: LimitedUploadHandler):
    try:
        upload = uploaded_file(request, handler, limit)
    except UploadRefused as refused:
        raise SimulatorError(refused.message, refused.status) from None
    user_id = _user_id(request)
    if simulator.follow_state(user_id) == "blocked":
        raise SimulatorError(_("ブロック中です。送るには、先に「友だち追加」をしてください。"))
    claimed = (upload.content_type or "").split(";", 1)[0].strip().lower()
    content_type = claimed if _CONTENT_TYPE.match(claimed) else "application/octet-stream"
    upload.seek(0)
    data = upload.read()
    with FakeLine() as line:
        # What the resident's phone uploads is LINE's to keep; the worker fetches it and checks it.
        event_id = _resident(request, line).send_image(data, content_type)
    return _ok(event_id=event_id, user_id=user_id)
