"""The "試す" simulator and 代理入力: the engine's conversation in the browser, for staff.

試す: staff run a procedure (draft or any published version) as a resident would. Every run uses
the conversation partner `sim-<staff user id>`, so it never mixes with residents, and what it
submits is a test application (is_test=True) that lists and exports leave out.

代理入力 (entry on a resident's behalf, e.g. a phone request): the same conversation, so the
answers are checked exactly as on LINE (conditions, validators, confirmation), but only on the
published version of an open procedure the staff member may process (staff.policy PROCESS), as
the partner `proxy-<staff user id>`. What it submits is a real application marked as entered by
that staff member (Application.entered_by, channel 代理入力), without a LINE user.

Each mode has a page and three JSON endpoints (send, upload, reset).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Prefetch
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from govtech.images import sniff_image
from govtech.uploads import LimitedUploadHandler, UploadRefused, too_large_message, upload_guard, uploaded_file
from procedures import simulator as channel
from procedures.models import ConversationSession, Procedure, ProcedureVersion
from procedures.selectors import procedure_spec_get
from procedures.services import conversation_handle, version_problems
from procedures.spec import (
    DEFAULT_IMAGE_MAX_BYTES,
    IMAGE_TYPES,
    KEY_PATTERN,
    REJECTED_IMAGE_REF_PREFIX,
    SpecError,
    Step,
)
from staff.policy import PROCESS, VIEW, procedures_visible_to

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,49}/[a-z0-9][a-z0-9.+-]{0,49}")
# Room for the multipart envelope and the other fields around the file.
# Where "市役所" puts the resident on the location form unless settings.SIMULATOR_CITY_HALL says otherwise.
_DEFAULT_CITY_HALL = {"latitude": 35.689501, "longitude": 139.691722, "address": "市役所", "title": "市役所"}


@dataclass(frozen=True)
class _Mode:
    """試す (a test run of any version) or 代理入力 (a real application on the published version)."""

    proxy: bool
    url_prefix: str  # of the URL names: <prefix>, <prefix>_send, <prefix>_upload, <prefix>_reset
    upload_directory: str  # in the default storage; procedures.attachments serves images from there

    def url(self, name: str = "") -> str:
        return reverse(f"procedures:{self.url_prefix}{'_' + name if name else ''}")


TRY = _Mode(proxy=False, url_prefix="simulator", upload_directory="simulator")
PROXY = _Mode(proxy=True, url_prefix="proxy_entry", upload_directory="proxy")


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def _json_error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status, json_dumps_params={"ensure_ascii": False})


def _staff_json(view):
    """Staff only, answering JSON: a fetch from an expired login gets 403 instead of the login page."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        user = request.user
        if not (user.is_active and user.is_staff):
            return _json_error(_("ログインが切れました。ページを読み込み直して、もう一度ログインしてください。"), 403)
        try:
            return view(request, *args, **kwargs)
        except _BadRequest as error:
            return _json_error(error.message, error.status)
        except channel.SimulatorInputError as error:
            return _json_error(error.message)

    return wrapper


def upload_max_bytes() -> int:
    """The largest image the simulator accepts at all; a step may allow less (the engine re-asks)."""
    return settings.SIMULATOR_UPLOAD_MAX_BYTES


# --------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------


@require_GET
@staff_member_required
def simulator_page(request):
    return _page(request, TRY)


@require_GET
@staff_member_required
def proxy_entry_page(request):
    return _page(request, PROXY)


def _page(request, mode: _Mode):
    procedures = list(
        _procedures(request.user, mode).order_by("name", "pk").prefetch_related(_versions_prefetch(mode))
        .select_related("current_version")
    )
    choice_groups = []
    for procedure in procedures:
        options = [
            {"version": version, "label": _version_label(procedure, version)}
            for version in sorted(procedure.versions.all(), key=lambda v: -v.number)
        ]
        if options:
            choice_groups.append({"procedure": procedure, "options": options})

    selected_version, problem = _selected_version(request, procedures)
    # A draft may be tried before it can be published; what still blocks publishing is listed beside the chat.
    spec_problems = version_problems(selected_version) if selected_version is not None and not mode.proxy else []
    runnable = True
    if selected_version is not None:
        try:
            procedure_spec_get(selected_version)
        except SpecError:
            runnable = False
    config = {
        "procedure": selected_version.procedure_id if selected_version and runnable else None,
        "version": selected_version.pk if selected_version and runnable else None,
        "urls": {"send": mode.url("send"), "upload": mode.url("upload"), "reset": mode.url("reset")},
        "upload_max_bytes": upload_max_bytes(),
        "upload_too_large": too_large_message(upload_max_bytes()),
        "city_hall": getattr(settings, "SIMULATOR_CITY_HALL", _DEFAULT_CITY_HALL),
        "application_notice": _application_notice(mode),
    }
    context = {
        **admin.site.each_context(request),
        "title": _("代理入力（電話などで受けた申請）") if mode.proxy else _("試す（シミュレーター）"),
        "proxy": mode.proxy,
        "page_url": mode.url(),
        "choice_groups": choice_groups,
        "selected_version": selected_version,
        "selected_label": _version_label(selected_version.procedure, selected_version) if selected_version else "",
        "selection_problem": problem,
        "spec_problems": spec_problems,
        "runnable": runnable,
        "config": config,
    }
    return render(request, "procedures/simulator.html", context)


def _procedures(user, mode: _Mode):
    if mode.proxy:
        return procedures_visible_to(user, action=PROCESS).filter(is_open=True, current_version__isnull=False)
    return procedures_visible_to(user)


def _versions_prefetch(mode: _Mode) -> Prefetch:
    if mode.proxy:  # the published version residents get now, nothing else
        return Prefetch("versions", queryset=ProcedureVersion.objects.filter(pk__in=Procedure.objects.values("current_version")))
    return Prefetch("versions")


def _application_notice(mode: _Mode) -> dict:
    """What the page says about an application the conversation created."""
    if mode.proxy:
        return {
            "title": _("申請を受け付けました（代理入力）"),
            "note": _("住民の方に受付番号をお伝えください。申請一覧には受付方法「代理入力（電話）」として表示されます。"),
            "link": _("管理画面でこの申請を開く"),
        }
    return {
        "title": _("テスト申請を作成しました"),
        "note": _("テスト申請のため、申請一覧や出力には含まれません。"),
        "link": _("管理画面でこのテスト申請を開く"),
    }


def _version_label(procedure: Procedure, version: ProcedureVersion) -> str:
    if version.is_draft:
        state = _("下書き")
    elif procedure.current_version_id == version.pk:
        state = _("公開中") if procedure.is_open else _("公開中・受付停止")
    else:
        state = _("公開済み")
    return _("第%(number)s版（%(state)s）") % {"number": version.number, "state": state}


def _selected_version(request, procedures) -> tuple[ProcedureVersion | None, str]:
    """The version named by ?procedure=&version= (either alone works); a problem sentence when it is unusable."""
    raw_procedure = request.GET.get("procedure", "").strip()
    raw_version = request.GET.get("version", "").strip()
    if not raw_procedure and not raw_version:
        return None, ""
    if (raw_procedure and not (raw_procedure.isascii() and raw_procedure.isdigit())) or (raw_version and not (raw_version.isascii() and raw_version.isdigit())):
        return None, _("手続きまたはバージョンの指定が正しくありません。")
    by_id = {procedure.pk: procedure for procedure in procedures}
    if raw_version:
        version = next(
            (v for p in procedures for v in p.versions.all() if v.pk == int(raw_version)), None
        )
        if version is None or (raw_procedure and version.procedure_id != int(raw_procedure)):
            return None, _("指定されたバージョンが見つかりません。")
        version.procedure = by_id[version.procedure_id]
        return version, ""
    procedure = by_id.get(int(raw_procedure))
    if procedure is None:
        return None, _("指定された手続きが見つかりません。")
    versions = list(procedure.versions.all())
    draft = next((v for v in versions if v.is_draft), None)
    version = draft or next((v for v in versions if v.pk == procedure.current_version_id), None)
    if version is None:
        version = max(versions, key=lambda v: v.number, default=None)
    if version is None:
        return None, _("この手続きにはまだバージョンがありません。")
    version.procedure = procedure
    return version, ""


# --------------------------------------------------------------------------
# JSON endpoints
# --------------------------------------------------------------------------


def _read_json(request) -> dict:
    if request.content_type != "application/json":
        raise _BadRequest(_("JSON で送信してください。"), 415)
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _BadRequest(_("送信内容を JSON として読めません。")) from None
    if not isinstance(body, dict):
        raise _BadRequest(_("送信内容の形式が正しくありません。"))
    return body


def _id(value, what: str) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _BadRequest(_("%(what)s の指定が正しくありません。") % {"what": what})
    return value


def _version_and_spec(raw_procedure, raw_version, user, mode: _Mode):
    procedure_id = _id(raw_procedure, _("手続き"))
    version_id = _id(raw_version, _("バージョン"))
    action = PROCESS if mode.proxy else VIEW
    version = (
        ProcedureVersion.objects.select_related("procedure").filter(pk=version_id, procedure_id=procedure_id)
        .filter(procedure__in=procedures_visible_to(user, action=action)).first()
    )
    if version is None:
        raise _BadRequest(_("指定された手続きのバージョンが見つかりません。ページを読み込み直してください。"), 404)
    if mode.proxy and not (version.procedure.is_open and version.procedure.current_version_id == version.pk):
        raise _BadRequest(
            _("代理入力できるのは、受付中の手続きの公開中の版だけです。ページを読み込み直してください。")
        )
    try:
        spec = procedure_spec_get(version)
    except SpecError:
        raise _BadRequest(
            _("このバージョンには直す必要のある設定があるため試せません。管理画面で内容を確認してください。")
        ) from None
    return version, spec


def _reply_json(reply) -> JsonResponse:
    applications = []
    for application in reply.applications:
        try:
            admin_url = reverse("admin:procedures_application_change", args=[application.pk])
        except NoReverseMatch:
            admin_url = None
        applications.append(
            {
                "id": application.pk,
                "receipt_number": application.receipt_number,
                "is_test": application.is_test,
                "admin_url": admin_url,
            }
        )
    return JsonResponse(
        {"messages": channel.messages_to_dicts(reply.messages), "applications": applications},
        json_dumps_params={"ensure_ascii": False},
    )


def _handle(request, spec, event, mode: _Mode):
    partner = channel.partner_id(request.user, proxy=mode.proxy)
    if not mode.proxy:
        return conversation_handle(line_user_id=partner, event=event, is_test=True, extra_specs=(spec,))
    # The engine sees what LINE sees (no extra specs), so the answers are checked as for a resident.
    with transaction.atomic():
        reply = conversation_handle(line_user_id=partner, event=event, entered_by=request.user)
        _only_this_procedure(partner, spec.procedure_id, reply)
    return reply


def _only_this_procedure(partner: str, procedure_id: int, reply) -> None:
    """A keyword can start another procedure in the engine; 代理入力 stays on the one that was checked.

    Raised inside the caller's transaction, so whatever the engine did is rolled back.
    """
    state = ConversationSession.objects.filter(line_user_id=partner).values_list("state", flat=True).first() or {}
    running = (state.get("session") or {}).get("procedure_id") if isinstance(state, dict) else None
    if (running is not None and running != procedure_id) or any(
        application.procedure_id != procedure_id for application in reply.applications
    ):
        raise _BadRequest(
            _("代理入力では、選んだ手続きだけを入力できます。別の手続きはページで選び直してください。")
        )


def _send(request, mode: _Mode):
    """{procedure, version, event} -> {messages: [...], applications: [...]} (see procedures/simulator.py)."""
    body = _read_json(request)
    _version, spec = _version_and_spec(body.get("procedure"), body.get("version"), request.user, mode)
    if "event" not in body:
        raise _BadRequest(_("送信内容（event）がありません。"))
    event = channel.event_from_dict(body["event"])
    return _reply_json(_handle(request, spec, event, mode))


def _reset(request, mode: _Mode):
    """最初から: forget this staff member's conversation in this mode (the session row)."""
    ConversationSession.objects.filter(line_user_id=channel.partner_id(request.user, proxy=mode.proxy)).delete()
    return JsonResponse({"ok": True, "messages": [], "applications": []})


def _upload_guarded(request, mode: _Mode):
    """An image sent in the chat: checked, stored under the mode's directory, and passed on as an image event.

    Files go to memory up to settings.FILE_UPLOAD_MAX_MEMORY_SIZE and to a temporary file above it;
    anything over upload_max_bytes() (10 MB) is refused before it is read.
    """
    limit = upload_max_bytes()
    try:
        handler = upload_guard(request, limit)
    except UploadRefused as refused:
        raise _BadRequest(refused.message, refused.status) from None
    return _upload(request, limit, handler, mode)


@require_POST
@_staff_json
def simulator_send(request):
    return _send(request, TRY)


@require_POST
@_staff_json
def simulator_reset(request):
    return _reset(request, TRY)


@csrf_exempt  # the CSRF check runs in _upload below, once the size limit is in place
@require_POST
@_staff_json
def simulator_upload(request):
    return _upload_guarded(request, TRY)


@require_POST
@_staff_json
def proxy_entry_send(request):
    return _send(request, PROXY)


@require_POST
@_staff_json
def proxy_entry_reset(request):
    return _reset(request, PROXY)


@csrf_exempt  # the CSRF check runs in _upload below, once the size limit is in place
@require_POST
@_staff_json
def proxy_entry_upload(request):
    return _upload_guarded(request, PROXY)


@csrf_protect
def _upload(request, limit: int, handler: LimitedUploadHandler, mode: _Mode):
    try:
        upload = uploaded_file(request, handler, limit)
    except UploadRefused as refused:
        raise _BadRequest(refused.message, refused.status) from None
    _version, spec = _version_and_spec(request.POST.get("procedure"), request.POST.get("version"), request.user, mode)
    step_key = request.POST.get("step", "")
    if step_key and not KEY_PATTERN.match(step_key):
        raise _BadRequest(_("ステップのキー（step）が正しくありません。"))
    session = request.POST.get("session", "")
    if not channel.SESSION_PATTERN.match(session):
        raise _BadRequest(_("会話の識別子（session）が正しくありません。"))

    content_type = _image_type(upload)
    if content_type in IMAGE_TYPES and upload.size <= _step_max_bytes(spec, step_key):
        upload.seek(0)
        name = f"{mode.upload_directory}/{request.user.pk}/{uuid.uuid4().hex}.{_EXTENSIONS[content_type]}"
        ref = default_storage.save(name, upload)
    else:
        # Not kept: the engine re-asks with the reason (type or size), as it would for LINE.
        ref = f"{REJECTED_IMAGE_REF_PREFIX}{uuid.uuid4().hex}"
    event = channel.image_event(
        step=step_key, session=session, ref=ref, content_type=content_type, size=upload.size
    )
    return _reply_json(_handle(request, spec, event, mode))


def _step_max_bytes(spec, step_key: str) -> int:
    step: Step | None = next((s for s in spec.steps if s.key == step_key), None) if step_key else None
    if step is not None and step.kind == "image":
        return int(step.options.get("max_bytes") or DEFAULT_IMAGE_MAX_BYTES)
    return DEFAULT_IMAGE_MAX_BYTES


def _image_type(upload) -> str:
    """The real type of the file: what Pillow recognises, never what the browser merely claims."""
    upload.seek(0)
    kind = sniff_image(upload.read())[0]
    if kind is None:
        claimed = (upload.content_type or "").split(";")[0].strip().lower()
        # A file that only claims to be a JPEG or PNG is not one.
        if claimed in IMAGE_TYPES or not _CONTENT_TYPE.fullmatch(claimed):
            return "application/octet-stream"
        return claimed
    return kind
