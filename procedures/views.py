"""The "試す" simulator: staff run a procedure (draft or any published version) as a resident would.

The page talks to three JSON endpoints. Every run uses the conversation partner
`sim-<staff user id>`, so it never mixes with residents, and what it submits is
a test application (is_test=True) that lists and exports leave out.
"""

from __future__ import annotations

import functools
import json
import re
import uuid

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.core.files.storage import default_storage
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
from staff.policy import procedures_visible_to

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,49}/[a-z0-9][a-z0-9.+-]{0,49}")
# Room for the multipart envelope and the other fields around the file.
# Where "市役所" puts the resident on the location form unless settings.SIMULATOR_CITY_HALL says otherwise.
_DEFAULT_CITY_HALL = {"latitude": 35.689501, "longitude": 139.691722, "address": "市役所", "title": "市役所"}


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
    procedures = list(
        procedures_visible_to(request.user).order_by("name", "pk").prefetch_related("versions").select_related("current_version")
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
    spec_problems = version_problems(selected_version) if selected_version is not None else []
    runnable = True
    if selected_version is not None:
        try:
            procedure_spec_get(selected_version)
        except SpecError:
            runnable = False
    config = {
        "procedure": selected_version.procedure_id if selected_version and runnable else None,
        "version": selected_version.pk if selected_version and runnable else None,
        "urls": {
            "send": reverse("procedures:simulator_send"),
            "upload": reverse("procedures:simulator_upload"),
            "reset": reverse("procedures:simulator_reset"),
        },
        "upload_max_bytes": upload_max_bytes(),
        "upload_too_large": too_large_message(upload_max_bytes()),
        "city_hall": getattr(settings, "SIMULATOR_CITY_HALL", _DEFAULT_CITY_HALL),
    }
    context = {
        **admin.site.each_context(request),
        "title": _("試す（シミュレーター）"),
        "choice_groups": choice_groups,
        "selected_version": selected_version,
        "selected_label": _version_label(selected_version.procedure, selected_version) if selected_version else "",
        "selection_problem": problem,
        "spec_problems": spec_problems,
        "runnable": runnable,
        "config": config,
    }
    return render(request, "procedures/simulator.html", context)


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


def _version_and_spec(raw_procedure, raw_version, user):
    procedure_id = _id(raw_procedure, _("手続き"))
    version_id = _id(raw_version, _("バージョン"))
    version = (
        ProcedureVersion.objects.select_related("procedure").filter(pk=version_id, procedure_id=procedure_id)
        .filter(procedure__in=procedures_visible_to(user)).first()
    )
    if version is None:
        raise _BadRequest(_("指定された手続きのバージョンが見つかりません。ページを読み込み直してください。"), 404)
    try:
        spec = procedure_spec_get(version)
    except SpecError:
        raise _BadRequest(
            _("このバージョンには直す必要のある設定があるため試せません。管理画面で内容を確認してください。")
        ) from None
    return version, spec


def _reply_json(request, reply) -> JsonResponse:
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


def _handle(request, spec, event):
    return conversation_handle(
        line_user_id=channel.partner_id(request.user),
        event=event,
        is_test=True,
        extra_specs=(spec,),
    )


@require_POST
@_staff_json
def simulator_send(request):
    """{procedure, version, event} -> {messages: [...], applications: [...]} (see procedures/simulator.py)."""
    body = _read_json(request)
    _version, spec = _version_and_spec(body.get("procedure"), body.get("version"), request.user)
    if "event" not in body:
        raise _BadRequest(_("送信内容（event）がありません。"))
    event = channel.event_from_dict(body["event"])
    return _reply_json(request, _handle(request, spec, event))


@require_POST
@_staff_json
def simulator_reset(request):
    """最初から: forget this staff member's simulator conversation (the session row)."""
    ConversationSession.objects.filter(line_user_id=channel.partner_id(request.user)).delete()
    return JsonResponse({"ok": True, "messages": [], "applications": []})


@csrf_exempt  # the CSRF check runs in _upload below, once the size limit is in place
@require_POST
@_staff_json
def simulator_upload(request):
    """An image sent in the chat: checked, stored under simulator/, and passed on as an image event.

    Files go to memory up to settings.FILE_UPLOAD_MAX_MEMORY_SIZE and to a temporary file above it;
    anything over upload_max_bytes() (10 MB) is refused before it is read.
    """
    limit = upload_max_bytes()
    try:
        handler = upload_guard(request, limit)
    except UploadRefused as refused:
        raise _BadRequest(refused.message, refused.status) from None
    return _upload(request, limit, handler)


@csrf_protect
def _upload(request, limit: int, handler: LimitedUploadHandler):
    try:
        upload = uploaded_file(request, handler, limit)
    except UploadRefused as refused:
        raise _BadRequest(refused.message, refused.status) from None
    _version, spec = _version_and_spec(request.POST.get("procedure"), request.POST.get("version"), request.user)
    step_key = request.POST.get("step", "")
    if step_key and not KEY_PATTERN.match(step_key):
        raise _BadRequest(_("ステップのキー（step）が正しくありません。"))
    session = request.POST.get("session", "")
    if not channel.SESSION_PATTERN.match(session):
        raise _BadRequest(_("会話の識別子（session）が正しくありません。"))

    content_type = _image_type(upload)
    if content_type in IMAGE_TYPES and upload.size <= _step_max_bytes(spec, step_key):
        upload.seek(0)
        name = f"simulator/{request.user.pk}/{uuid.uuid4().hex}.{_EXTENSIONS[content_type]}"
        ref = default_storage.save(name, upload)
    else:
        # Not kept: the engine re-asks with the reason (type or size), as it would for LINE.
        ref = f"{REJECTED_IMAGE_REF_PREFIX}{uuid.uuid4().hex}"
    event = channel.image_event(
        step=step_key, session=session, ref=ref, content_type=content_type, size=upload.size
    )
    return _reply_json(request, _handle(request, spec, event))


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
