"""Images attached to applications, served only through an access-checked view.

GET /procedures/applications/<id>/attachments/<step key>/ serves the image a resident sent for
that image step. The file is opened from Django's default storage with the ref stored in the
application's answers – never with anything taken from the request – after checking:

- the user may view the application (staff.policy; otherwise 404, the same as an unknown id);
- the step exists in the application's version and is an image step (otherwise 404);
- a sensitive image step also needs the permission to reveal sensitive answers (otherwise 403);
- the stored ref is a plain relative name under a channel's image directory (otherwise 404).

Every image served is written to the audit log ("application.image_view"): ids and the step key,
never the file or its name.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied, SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseNotFound
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from audit import actions as audit_actions
from audit.services import audit_record
from procedures.models import Application
from procedures.selectors import version_spec_data
from procedures.spec import IMAGE_TYPES, KEY_PATTERN, SpecError, parse_spec
from staff import policy

# Where the channels keep residents' images in the default storage (messaging.services for LINE,
# procedures.views for the simulator and 代理入力). A stored ref elsewhere is not served.
IMAGE_REF_PREFIXES = ("line/images/", "simulator/", "proxy/")


def attachment_url(application_id: int, step_key: str) -> str:
    return reverse("procedures:application_attachment", args=[application_id, step_key])


def image_step(application: Application, step_key: str):
    """The image step `step_key` of the application's version, or None."""
    if not isinstance(step_key, str) or not KEY_PATTERN.match(step_key):
        return None
    try:
        steps = parse_spec(version_spec_data(application.version)).steps
    except SpecError:
        return None
    return next((step for step in steps if step.key == step_key and step.kind == "image"), None)


def safe_image_ref(value) -> str | None:
    """The stored ref of an image answer when it is a plain relative name under a channel's directory."""
    if not isinstance(value, dict):
        return None
    ref = value.get("ref")
    if not isinstance(ref, str) or not ref or "\\" in ref or "\x00" in ref or ref.startswith("/"):
        return None
    parts = PurePosixPath(ref).parts
    if any(part in ("", ".", "..") for part in parts) or not ref.startswith(IMAGE_REF_PREFIXES):
        return None
    return ref


def _not_found(message: str) -> HttpResponseNotFound:
    return HttpResponseNotFound(message, content_type="text/plain; charset=utf-8")


@require_GET
@staff_member_required
def application_attachment(request, application_id: int, step_key: str):
    not_found = _("指定された添付画像が見つかりません。")
    application = Application.objects.select_related("procedure", "version").filter(pk=application_id).first()
    if application is None or not policy.can(request.user, policy.VIEW, application):
        return _not_found(not_found)
    step = image_step(application, step_key)
    if step is None:
        return _not_found(not_found)
    if step.sensitive and not policy.can(request.user, policy.REVEAL_SENSITIVE, application):
        raise PermissionDenied
    answers = application.answers if isinstance(application.answers, dict) else {}
    value = answers.get(step.key)
    ref = safe_image_ref(value)
    content_type = value.get("content_type") if isinstance(value, dict) else None
    if ref is None or content_type not in IMAGE_TYPES:
        return _not_found(not_found)
    try:
        file = default_storage.open(ref, "rb")
    except (OSError, SuspiciousFileOperation):
        return _not_found(_("画像ファイルが見つかりません。保存期間を過ぎて削除された可能性があります。"))
    audit_record(
        actor=request.user,
        action=audit_actions.APPLICATION_IMAGE_VIEW,
        obj=application,
        details={"receipt_number": application.receipt_number, "step": step.key, "sensitive": step.sensitive},
        request=request,
    )
    response = FileResponse(file, content_type=content_type)
    response["Content-Disposition"] = "inline"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
