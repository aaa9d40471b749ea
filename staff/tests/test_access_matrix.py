"""Every role against the real pages: admin lists, object pages by id, add, delete, actions, exports, the simulator.

Objects live in department A (one procedure granted to the outsourced operator), department B
and no department (staff/tests/world.py). The pages are asked for objects of ANOTHER department
by id, as someone guessing ids would. The expected outcome of every (case, role) pair is written
out in ALLOWED below – a single explicit table, not derived from staff/policy.py.

A case's check returns True when the access happened (the object shown, changed, deleted,
exported…); a refusal can be a 403, a 404, the admin's "not found" redirect, or a list without
the object. A 500 is never a refusal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html.parser import HTMLParser

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from audit.models import AuditEntry
from procedures.models import Application, Procedure, ProcedureVersion, StaffField, Step
from procedures.services import procedure_export_data, version_publish
from procedures.tests.factories import ApplicationFactory, ImageStepFactory
from residents.models import Resident
from staff.models import Role, StaffMembership
from staff.tests.world import A_GRANTED, A_OTHER, NONE, ROLES, B, marker, world_fixture

world = pytest.fixture(scope="module", name="world")(world_fixture)

URL_ROLES = (*ROLES, "anonymous")

# --------------------------------------------------------------------------
# The table: case -> the roles for which the access happens. Every other role must be refused.
# --------------------------------------------------------------------------

ADMINS = {"superuser", "system_admin"}
CITY_READERS = ADMINS | {"auditor_citywide"}
A_READERS = CITY_READERS | {"department_staff", "department_viewer", "auditor"}
A_GRANTED_READERS = A_READERS | {"outsourced_operator"}
A_BUILDERS = ADMINS | {"department_staff"}
A_PROCESSORS = A_BUILDERS | {"outsourced_operator"}  # may process the granted procedure's applications
A_GRANTED_PROCESSORS = A_BUILDERS | {"outsourced_operator"}
NOBODY: set[str] = set()

ALLOWED: dict[str, set[str]] = {
    # procedures
    "procedure.changelist.shows_own": A_GRANTED_READERS,
    "procedure.changelist.shows_other_department": CITY_READERS,
    "procedure.change_page.other_department": CITY_READERS,
    "procedure.change_post.own": A_BUILDERS,
    "procedure.change_post.other_department": ADMINS,
    "procedure.add_page": A_BUILDERS,
    "procedure.add_post.own_department": A_BUILDERS,
    "procedure.add_post.other_department": ADMINS,
    "procedure.add_post.without_department": ADMINS,
    "procedure.delete.other_department": ADMINS,
    "procedure.close_action.other_department": ADMINS,
    "procedure.template_export.own": ADMINS | {"department_staff", "auditor", "auditor_citywide"},
    "procedure.template_export.other_department": CITY_READERS,
    "procedure.template_import.into_other_department": ADMINS,
    "procedure.draft_page.other_department": CITY_READERS,
    # versions
    "version.changelist.shows_other_department": CITY_READERS,
    "version.change_page.other_department": CITY_READERS,
    "version.publish.own": A_BUILDERS,
    "version.publish.other_department": ADMINS,
    "version.restore.other_department": ADMINS,
    "version.flow_page.other_department": CITY_READERS,
    "version.move_step.other_department": ADMINS,
    "version.delete.other_department": ADMINS,
    # steps
    "step.changelist.shows_other_department": CITY_READERS,
    "step.change_page.other_department": CITY_READERS,
    "step.add_page.preselecting_other_department_version": ADMINS,
    "step.add_post.into_other_department": ADMINS,
    "step.delete.other_department": ADMINS,
    # applications
    "application.changelist.shows_own": A_GRANTED_READERS,
    "application.changelist.shows_other_department": CITY_READERS,
    "application.change_page.own": A_GRANTED_READERS,
    "application.change_page.same_department_not_granted": A_READERS,
    "application.change_page.other_department": CITY_READERS,
    "application.delete.other_department": NOBODY,  # applications are never deleted in the admin
    "application.assign.own": A_PROCESSORS,
    "application.assign.same_department_not_granted": A_BUILDERS,
    "application.assign.other_department": ADMINS,
    "application.bulk_assign.own": A_PROCESSORS,
    "application.bulk_assign.other_department": ADMINS,
    "application.bulk_handled.other_department": ADMINS,
    "application.bulk_status.other_department": ADMINS,
    "application.staff_fields.own": A_PROCESSORS,
    "application.staff_fields.other_department": ADMINS,
    "application.print.own": A_GRANTED_READERS,
    "application.print.other_department": CITY_READERS,
    # residents
    "resident.changelist.shows_other_department": CITY_READERS,
    "resident.change_page.own": A_GRANTED_READERS,
    "resident.change_page.other_department": CITY_READERS,
    "resident.change_post.other_department": NOBODY,
    "resident.delete.other_department": ADMINS,
    # audit log
    "audit.changelist.shows_own_department": ADMINS | {"auditor", "auditor_citywide"},
    "audit.changelist.shows_other_department": CITY_READERS,
    "audit.change_page.other_department": CITY_READERS,
    "audit.change_post.other_department": NOBODY,  # append-only, even for superusers
    "audit.delete.other_department": NOBODY,
    "audit.export.own_department": ADMINS | {"auditor", "auditor_citywide"},
    "audit.export.other_department": CITY_READERS,
    # the simulator
    "simulator.page.own": A_GRANTED_READERS,
    "simulator.page.other_department": CITY_READERS,
    "simulator.send.other_department": CITY_READERS,
    # 代理入力: entering a real application needs "process" on its procedure
    "proxy_entry.page.own": A_GRANTED_PROCESSORS,
    "proxy_entry.page.same_department_not_granted": A_BUILDERS,
    "proxy_entry.page.other_department": ADMINS,
    "proxy_entry.send.own": A_GRANTED_PROCESSORS,
    "proxy_entry.send.other_department": ADMINS,
    # messages with the resident and correction requests: "process" on the application
    "application.message_page.same_department_not_granted": A_BUILDERS,
    "application.message_send.own": A_GRANTED_PROCESSORS,
    "application.message_send.other_department": ADMINS,
    "application.correction_request.own": A_GRANTED_PROCESSORS,
    "application.correction_request.other_department": ADMINS,
    # staff administration
    "staff.user_changelist": ADMINS,
    "staff.membership_add": ADMINS,
    "staff.unlock_login_action": ADMINS,
    "staff.reset_two_factor_action": ADMINS,
}


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------


def _ok(response) -> None:
    assert response.status_code < 500, response.status_code


def _shows(response, text: str) -> bool:
    _ok(response)
    return response.status_code == 200 and text in response.content.decode()


def _action(client, changelist: str, action: str, ids) -> object:
    return client.post(
        reverse(changelist), {"action": action, "_selected_action": [str(pk) for pk in ids], "index": "0"}
    )


class _FormValues(HTMLParser):
    """The values a browser would submit from the page's main form (inputs, selects, textareas)."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, list[str]] = {}
        self._select: str | None = None
        self._select_first: str | None = None
        self._select_chosen = False
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name:
            kind = (attrs.get("type") or "text").lower()
            if kind in ("submit", "button", "file", "image", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            self.values.setdefault(name, []).append(attrs.get("value") or ("on" if kind == "checkbox" else ""))
        elif tag == "select" and name:
            self._select, self._select_first, self._select_chosen = name, None, False
        elif tag == "option" and self._select:
            value = attrs.get("value", "")
            if self._select_first is None:
                self._select_first = value
            if "selected" in attrs:
                self.values.setdefault(self._select, []).append(value)
                self._select_chosen = True
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = [""]

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea][0] += data

    def handle_endtag(self, tag):
        if tag == "select" and self._select:
            if not self._select_chosen and self._select_first is not None:
                self.values[self._select] = [self._select_first]
            self._select = None
        elif tag == "textarea" and self._textarea:
            text = self.values[self._textarea][0]
            self.values[self._textarea][0] = text[1:] if text.startswith("\n") else text  # as browsers do
            self._textarea = None


def _form_as_superuser(world, url: str, **changes) -> dict:
    """The main form's fields as the admin's page at `url` fills them (read as a superuser), with `changes`.

    Inline sections (prefixed "<prefix>-…") are left out: the object's own fields are what these cases change.
    """
    reader = Client()
    reader.force_login(world.users["superuser"])
    response = reader.get(url)
    assert response.status_code == 200, (url, response.status_code)
    parser = _FormValues()
    parser.feed(response.content.decode())
    data = {name: values if len(values) > 1 else values[0] for name, values in parser.values.items() if "-" not in name}
    data.pop("csrfmiddlewaretoken", None)
    data.update(changes)
    return data


def procedure_changelist_own(client, world):
    return _shows(client.get(reverse("admin:procedures_procedure_changelist")), marker("procedure", A_GRANTED))


def procedure_changelist_other(client, world):
    return _shows(client.get(reverse("admin:procedures_procedure_changelist")), marker("procedure", B))


def procedure_change_page_other(client, world):
    url = reverse("admin:procedures_procedure_change", args=[world[B].procedure.pk])
    return _shows(client.get(url), marker("procedure", B))


def _procedure_change_post(client, world, procedure):
    url = reverse("admin:procedures_procedure_change", args=[procedure.pk])
    _ok(client.post(url, _form_as_superuser(world, url, name="書き換えられた名前")))
    return Procedure.objects.get(pk=procedure.pk).name == "書き換えられた名前"


def procedure_change_post_own(client, world):
    return _procedure_change_post(client, world, world[A_GRANTED].procedure)


def procedure_change_post_other(client, world):
    return _procedure_change_post(client, world, world[B].procedure)


def procedure_add_page(client, world):
    response = client.get(reverse("admin:procedures_procedure_add"))
    _ok(response)
    return response.status_code == 200


def _procedure_add_post(client, department):
    data = {"name": "新しい手続き", "description": "", "keywords": "", "receipt_prefix": "NEWP", "department": department.pk}
    _ok(client.post(reverse("admin:procedures_procedure_add"), data))
    return Procedure.objects.filter(receipt_prefix="NEWP", department=department).exists()


def procedure_add_post_without_department(client, world):
    url = reverse("admin:procedures_procedure_add")
    _ok(client.post(url, _form_as_superuser(world, url, name="部署なし", receipt_prefix="NODEP", department="")))
    return Procedure.objects.filter(receipt_prefix="NODEP").exists()


def procedure_add_post_own(client, world):
    return _procedure_add_post(client, world.department_a)


def procedure_add_post_other(client, world):
    return _procedure_add_post(client, world.department_b)


def procedure_delete_other(client, world):
    target = world[B].unpublished
    _ok(client.post(reverse("admin:procedures_procedure_delete", args=[target.pk]), {"post": "yes"}))
    return not Procedure.objects.filter(pk=target.pk).exists()


def procedure_close_other(client, world):
    target = world[B].procedure
    _ok(_action(client, "admin:procedures_procedure_changelist", "close_procedures", [target.pk]))
    return not Procedure.objects.get(pk=target.pk).is_open


def _template_export(client, procedure):
    response = _action(client, "admin:procedures_procedure_changelist", "export_templates", [procedure.pk])
    _ok(response)
    return response.status_code == 200 and "attachment" in response.get("Content-Disposition", "")


def procedure_template_export_own(client, world):
    return _template_export(client, world[A_GRANTED].procedure)


def procedure_template_export_other(client, world):
    return _template_export(client, world[B].procedure)


def procedure_template_import_other(client, world):
    raw = json.dumps(procedure_export_data(procedure=world[A_GRANTED].procedure), ensure_ascii=False).encode()
    upload = SimpleUploadedFile("template.json", raw, "application/json")
    data = {"file": upload, "department": world.department_b.pk, "receipt_prefix": "IMPB"}
    _ok(client.post(reverse("admin:procedures_procedure_import"), data))
    return Procedure.objects.filter(receipt_prefix="IMPB").exists()


def procedure_draft_page_other(client, world):
    response = client.get(reverse("admin:procedures_procedure_draft", args=[world[B].procedure.pk]))
    _ok(response)
    draft_url = reverse("admin:procedures_procedureversion_change", args=[world[B].draft.pk])
    return response.status_code == 302 and response["Location"] == draft_url


def version_changelist_other(client, world):
    return _shows(client.get(reverse("admin:procedures_procedureversion_changelist")), marker("procedure", B))


def version_change_page_other(client, world):
    url = reverse("admin:procedures_procedureversion_change", args=[world[B].draft.pk])
    return _shows(client.get(url), marker("step", B))


def _publish(client, draft):
    _ok(client.post(reverse("admin:procedures_procedureversion_publish", args=[draft.pk])))
    return ProcedureVersion.objects.get(pk=draft.pk).status == ProcedureVersion.Status.PUBLISHED


def version_publish_own(client, world):
    return _publish(client, world[A_GRANTED].draft)


def version_publish_other(client, world):
    return _publish(client, world[B].draft)


def version_restore_other(client, world):
    published = world[B].published
    _ok(client.post(reverse("admin:procedures_procedureversion_restore", args=[published.pk])))
    return ProcedureVersion.objects.get(pk=world[B].draft.pk).restored_from_id == published.pk


def version_flow_page_other(client, world):
    url = reverse("admin:procedures_procedureversion_flow", args=[world[B].draft.pk])
    return _shows(client.get(url), marker("procedure", B))


def version_move_step_other(client, world):
    step = world[B].step
    before = Step.objects.get(pk=step.pk).position
    url = reverse("admin:procedures_procedureversion_move_step", args=[world[B].draft.pk])
    _ok(client.post(url, {"step": step.pk, "direction": "down"}))
    return Step.objects.get(pk=step.pk).position != before


def version_delete_other(client, world):
    draft = world[B].draft
    _ok(client.post(reverse("admin:procedures_procedureversion_delete", args=[draft.pk]), {"post": "yes"}))
    return not ProcedureVersion.objects.filter(pk=draft.pk).exists()


def step_changelist_other(client, world):
    return _shows(client.get(reverse("admin:procedures_step_changelist")), marker("step", B))


def step_change_page_other(client, world):
    return _shows(client.get(reverse("admin:procedures_step_change", args=[world[B].step.pk])), marker("step", B))


def step_add_page_other_version(client, world):
    """The add form reads the preselected version's earlier steps for its condition builder."""
    response = client.get(reverse("admin:procedures_messagestep_add"), {"version": world[B].draft.pk})
    return _shows(response, marker("step", B))


def step_add_post_other(client, world):
    data = {
        "version": world[B].draft.pk,
        "position": "5",
        "key": "intruder",
        "label": "侵入",
        "help_text": "",
        "condition_combine": "all",
        "_save": "保存",
    }
    _ok(client.post(reverse("admin:procedures_messagestep_add"), data))
    return Step.objects.filter(version=world[B].draft, key="intruder").exists()


def step_delete_other(client, world):
    step = world[B].step
    _ok(client.post(reverse("admin:procedures_step_delete", args=[step.pk]), {"post": "yes"}))
    return not Step.objects.filter(pk=step.pk).exists()


def application_changelist_own(client, world):
    return _shows(client.get(reverse("admin:procedures_application_changelist")), marker("receipt", A_GRANTED))


def application_changelist_other(client, world):
    return _shows(client.get(reverse("admin:procedures_application_changelist")), marker("receipt", B))


def _application_page(client, place):
    url = reverse("admin:procedures_application_change", args=[place.application.pk])
    return _shows(client.get(url), place.application.receipt_number)


def application_change_page_own(client, world):
    return _application_page(client, world[A_GRANTED])


def application_change_page_not_granted(client, world):
    return _application_page(client, world[A_OTHER])


def application_change_page_other(client, world):
    return _application_page(client, world[B])


def application_delete_other(client, world):
    application = world[B].application
    _ok(client.post(reverse("admin:procedures_application_delete", args=[application.pk]), {"post": "yes"}))
    return not type(application).objects.filter(pk=application.pk).exists()


def _assign(client, place):
    application = place.application
    _ok(client.post(reverse("admin:procedures_application_assign", args=[application.pk]), {"assign": "me"}))
    return Application.objects.filter(pk=application.pk, assignee__isnull=False).exists()


def application_assign_own(client, world):
    return _assign(client, world[A_GRANTED])


def application_assign_not_granted(client, world):
    return _assign(client, world[A_OTHER])


def application_assign_other(client, world):
    return _assign(client, world[B])


def _bulk_assign(client, place):
    application = place.application
    _ok(_action(client, "admin:procedures_application_changelist", "assign_to_me", [application.pk]))
    return Application.objects.filter(pk=application.pk, assignee__isnull=False).exists()


def application_bulk_assign_own(client, world):
    return _bulk_assign(client, world[A_GRANTED])


def application_bulk_assign_other(client, world):
    return _bulk_assign(client, world[B])


def application_bulk_handled_other(client, world):
    application = world[B].application
    Application.objects.filter(pk=application.pk).update(needs_action=True)
    _ok(_action(client, "admin:procedures_application_changelist", "mark_handled", [application.pk]))
    return not Application.objects.get(pk=application.pk).needs_action


def application_bulk_status_other(client, world):
    application = world[B].application
    before = Application.objects.get(pk=application.pk).status_id
    response = client.post(reverse("admin:procedures_application_changelist"), {
        "action": "change_status", "_selected_action": [str(application.pk)], "index": "0", "to_status": "reviewing"})
    _ok(response)
    return Application.objects.get(pk=application.pk).status_id != before


def _staff_fields(client, place):
    StaffField.objects.get_or_create(procedure=place.procedure, key="memo", defaults={"label": "内部メモ"})
    application = place.application
    url = reverse("admin:procedures_application_staff_fields", args=[application.pk])
    _ok(client.post(url, {"sf-memo": "matrix"}))
    return Application.objects.get(pk=application.pk).staff_values.get("memo") == "matrix"


def application_staff_fields_own(client, world):
    return _staff_fields(client, world[A_GRANTED])


def application_staff_fields_other(client, world):
    return _staff_fields(client, world[B])


def _print(client, place):
    response = client.get(reverse("admin:procedures_application_print", args=[place.application.pk]))
    return _shows(response, place.application.receipt_number)


def application_print_own(client, world):
    return _print(client, world[A_GRANTED])


def application_print_other(client, world):
    return _print(client, world[B])


def resident_changelist_other(client, world):
    return _shows(client.get(reverse("admin:residents_resident_changelist")), marker("resident", B))


def _resident_page(client, resident):
    return _shows(client.get(reverse("admin:residents_resident_change", args=[resident.pk])), resident.line_user_id)


def resident_change_page_own(client, world):
    return _resident_page(client, world[A_GRANTED].resident)


def resident_change_page_other(client, world):
    return _resident_page(client, world[B].resident)


def resident_change_post_other(client, world):
    resident = world[B].resident
    url = reverse("admin:residents_resident_change", args=[resident.pk])
    _ok(client.post(url, _form_as_superuser(world, url, display_name="書き換え")))
    return Resident.objects.get(pk=resident.pk).display_name == "書き換え"


def resident_delete_other(client, world):
    resident = world[B].resident
    _ok(client.post(reverse("admin:residents_resident_delete", args=[resident.pk]), {"post": "yes"}))
    return not Resident.objects.filter(pk=resident.pk).exists()


def audit_changelist_own(client, world):
    return _shows(client.get(reverse("admin:audit_auditentry_changelist")), marker("audit", A_OTHER))


def audit_changelist_other(client, world):
    return _shows(client.get(reverse("admin:audit_auditentry_changelist")), marker("audit", B))


def audit_change_page_other(client, world):
    entry = world[B].audit_entry
    return _shows(client.get(reverse("admin:audit_auditentry_change", args=[entry.pk])), marker("audit", B))


def audit_change_post_other(client, world):
    entry = world[B].audit_entry
    url = reverse("admin:audit_auditentry_change", args=[entry.pk])
    _ok(client.post(url, {"actor_display": "改ざん", "action": "test.marker", "details": "{}"}))
    return AuditEntry.objects.get(pk=entry.pk).actor_display == "改ざん"


def audit_delete_other(client, world):
    entry = world[B].audit_entry
    _ok(client.post(reverse("admin:audit_auditentry_delete", args=[entry.pk]), {"post": "yes"}))
    _ok(_action(client, "admin:audit_auditentry_changelist", "delete_selected", [entry.pk]))
    return not AuditEntry.objects.filter(pk=entry.pk).exists()


def _audit_export(client, text):
    response = client.get(reverse("admin:audit_auditentry_export"))
    _ok(response)
    if response.status_code != 200 or not response.streaming:
        return False
    return text in b"".join(response.streaming_content).decode("utf-8-sig")


def audit_export_own(client, world):
    return _audit_export(client, marker("audit", A_OTHER))


def audit_export_other(client, world):
    return _audit_export(client, marker("audit", B))


def _simulator_page(client, place):
    response = client.get(reverse("procedures:simulator"), {"procedure": place.procedure.pk})
    return _shows(response, place.procedure.name)


def simulator_page_own(client, world):
    return _simulator_page(client, world[A_GRANTED])


def simulator_page_other(client, world):
    return _simulator_page(client, world[B])


def simulator_send_other(client, world):
    body = {"procedure": world[B].procedure.pk, "version": world[B].published.pk, "event": {"type": "sticker"}}
    response = client.post(reverse("procedures:simulator_send"), body, content_type="application/json")
    _ok(response)
    return response.status_code == 200 and "messages" in response.json()


def _proxy_entry_page(client, place):
    response = client.get(reverse("procedures:proxy_entry"), {"procedure": place.procedure.pk})
    return _shows(response, place.procedure.name)


def _proxy_entry_send(client, place):
    body = {"procedure": place.procedure.pk, "version": place.published.pk, "event": {"type": "sticker"}}
    response = client.post(reverse("procedures:proxy_entry_send"), body, content_type="application/json")
    _ok(response)
    return response.status_code == 200 and "messages" in response.json()


def _message_page(client, place):
    url = reverse("admin:procedures_application_message", args=[place.application.pk])
    return _shows(client.get(url), place.application.receipt_number)


def _message_send(client, place):
    from procedures.models import ApplicationMessage

    url = reverse("admin:procedures_application_message", args=[place.application.pk])
    _ok(client.post(url, {"text": "書類の確認のため、お電話ください。", "client_key": "matrix"}))
    return ApplicationMessage.objects.filter(application=place.application).exists()


def _correction_request(client, place):
    from procedures.models import ApplicationStatus, CorrectionRequest

    reviewing = ApplicationStatus.objects.get(procedure=place.procedure, code="reviewing")
    url = reverse("admin:procedures_application_correction", args=[place.application.pk])
    _ok(client.post(url, {"keys": ["count"], "reason": "個数をもう一度お知らせください。", "return_status": reviewing.pk}))
    return CorrectionRequest.objects.filter(application=place.application).exists()


def staff_user_changelist(client, world):
    response = client.get(reverse("admin:auth_user_changelist"))
    _ok(response)
    return response.status_code == 200


def staff_membership_add(client, world):
    target = world.users["no_role"]
    data = {"user": target.pk, "role": Role.AUDITOR, "department": world.department_b.pk}
    _ok(client.post(reverse("admin:staff_staffmembership_add"), data))
    return StaffMembership.objects.filter(user=target).exists()


def staff_unlock_login_action(client, world):
    from audit import actions as audit_actions

    target = world.users["no_role"]
    _ok(client.post(reverse("admin:auth_user_changelist"), {"action": "unlock_login", "_selected_action": [target.pk]}))
    return AuditEntry.objects.filter(action=audit_actions.LOGIN_UNLOCK, object_id=str(target.pk)).exists()


def staff_reset_two_factor_action(client, world):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    target = world.users["no_role"]
    TOTPDevice.objects.create(user=target, name="TOTP", confirmed=True)
    _ok(client.post(reverse("admin:auth_user_changelist"), {"action": "reset_two_factor", "_selected_action": [target.pk]}))
    return not TOTPDevice.objects.filter(user=target).exists()


CHECKS: dict[str, Callable] = {
    "procedure.changelist.shows_own": procedure_changelist_own,
    "procedure.changelist.shows_other_department": procedure_changelist_other,
    "procedure.change_page.other_department": procedure_change_page_other,
    "procedure.change_post.own": procedure_change_post_own,
    "procedure.change_post.other_department": procedure_change_post_other,
    "procedure.add_page": procedure_add_page,
    "procedure.add_post.own_department": procedure_add_post_own,
    "procedure.add_post.other_department": procedure_add_post_other,
    "procedure.add_post.without_department": procedure_add_post_without_department,
    "procedure.delete.other_department": procedure_delete_other,
    "procedure.close_action.other_department": procedure_close_other,
    "procedure.template_export.own": procedure_template_export_own,
    "procedure.template_export.other_department": procedure_template_export_other,
    "procedure.template_import.into_other_department": procedure_template_import_other,
    "procedure.draft_page.other_department": procedure_draft_page_other,
    "version.changelist.shows_other_department": version_changelist_other,
    "version.change_page.other_department": version_change_page_other,
    "version.publish.own": version_publish_own,
    "version.publish.other_department": version_publish_other,
    "version.restore.other_department": version_restore_other,
    "version.flow_page.other_department": version_flow_page_other,
    "version.move_step.other_department": version_move_step_other,
    "version.delete.other_department": version_delete_other,
    "step.changelist.shows_other_department": step_changelist_other,
    "step.change_page.other_department": step_change_page_other,
    "step.add_page.preselecting_other_department_version": step_add_page_other_version,
    "step.add_post.into_other_department": step_add_post_other,
    "step.delete.other_department": step_delete_other,
    "application.changelist.shows_own": application_changelist_own,
    "application.changelist.shows_other_department": application_changelist_other,
    "application.change_page.own": application_change_page_own,
    "application.change_page.same_department_not_granted": application_change_page_not_granted,
    "application.change_page.other_department": application_change_page_other,
    "application.delete.other_department": application_delete_other,
    "application.assign.own": application_assign_own,
    "application.assign.same_department_not_granted": application_assign_not_granted,
    "application.assign.other_department": application_assign_other,
    "application.bulk_assign.own": application_bulk_assign_own,
    "application.bulk_assign.other_department": application_bulk_assign_other,
    "application.bulk_handled.other_department": application_bulk_handled_other,
    "application.bulk_status.other_department": application_bulk_status_other,
    "application.staff_fields.own": application_staff_fields_own,
    "application.staff_fields.other_department": application_staff_fields_other,
    "application.print.own": application_print_own,
    "application.print.other_department": application_print_other,
    "resident.changelist.shows_other_department": resident_changelist_other,
    "resident.change_page.own": resident_change_page_own,
    "resident.change_page.other_department": resident_change_page_other,
    "resident.change_post.other_department": resident_change_post_other,
    "resident.delete.other_department": resident_delete_other,
    "audit.changelist.shows_own_department": audit_changelist_own,
    "audit.changelist.shows_other_department": audit_changelist_other,
    "audit.change_page.other_department": audit_change_page_other,
    "audit.change_post.other_department": audit_change_post_other,
    "audit.delete.other_department": audit_delete_other,
    "audit.export.own_department": audit_export_own,
    "audit.export.other_department": audit_export_other,
    "simulator.page.own": simulator_page_own,
    "simulator.page.other_department": simulator_page_other,
    "simulator.send.other_department": simulator_send_other,
    "proxy_entry.page.own": lambda client, world: _proxy_entry_page(client, world[A_GRANTED]),
    "proxy_entry.page.same_department_not_granted": lambda client, world: _proxy_entry_page(client, world[A_OTHER]),
    "proxy_entry.page.other_department": lambda client, world: _proxy_entry_page(client, world[B]),
    "proxy_entry.send.own": lambda client, world: _proxy_entry_send(client, world[A_GRANTED]),
    "proxy_entry.send.other_department": lambda client, world: _proxy_entry_send(client, world[B]),
    "application.message_page.same_department_not_granted": lambda client, world: _message_page(client, world[A_OTHER]),
    "application.message_send.own": lambda client, world: _message_send(client, world[A_GRANTED]),
    "application.message_send.other_department": lambda client, world: _message_send(client, world[B]),
    "application.correction_request.own": lambda client, world: _correction_request(client, world[A_GRANTED]),
    "application.correction_request.other_department": lambda client, world: _correction_request(client, world[B]),
    "staff.user_changelist": staff_user_changelist,
    "staff.membership_add": staff_membership_add,
    "staff.unlock_login_action": staff_unlock_login_action,
    "staff.reset_two_factor_action": staff_reset_two_factor_action,
}


def test_every_case_has_a_check_and_an_expectation():
    assert set(CHECKS) == set(ALLOWED)
    for roles in ALLOWED.values():
        assert roles <= set(URL_ROLES)


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(CHECKS))
@pytest.mark.parametrize("role", URL_ROLES)
def test_access_matrix(world, role, case):
    client = Client()
    if role != "anonymous":
        client.force_login(world.users[role])
    assert CHECKS[case](client, world) is (role in ALLOWED[case])


# --------------------------------------------------------------------------
# Object types that do not exist yet: their rows arrive with them.
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Attached images (procedures/attachments.py): every role x an image of an application in each
# place, by direct URL with the application's id. Sensitive images need the reveal permission.
# --------------------------------------------------------------------------

A_REVEALERS = ADMINS | {"department_staff", "outsourced_operator", "auditor", "auditor_citywide"}

ATTACHMENT_ALLOWED: dict[str, set[str]] = {
    "attachment.own": A_GRANTED_READERS,
    "attachment.same_department_not_granted": A_READERS,
    "attachment.other_department": CITY_READERS,
    "attachment.without_department": CITY_READERS,
    "attachment.sensitive.own": A_REVEALERS,  # not the department viewer: no reveal permission
    "attachment.sensitive.same_department_not_granted": ADMINS | {"department_staff", "auditor", "auditor_citywide"},
    "attachment.sensitive.other_department": CITY_READERS,
}

ATTACHMENT_CASES: dict[str, tuple[str, str]] = {
    "attachment.own": (A_GRANTED, "photo"),
    "attachment.same_department_not_granted": (A_OTHER, "photo"),
    "attachment.other_department": (B, "photo"),
    "attachment.without_department": (NONE, "photo"),
    "attachment.sensitive.own": (A_GRANTED, "id_photo"),
    "attachment.sensitive.same_department_not_granted": (A_OTHER, "id_photo"),
    "attachment.sensitive.other_department": (B, "id_photo"),
}

IMAGE_BYTES = b"\x89PNG\r\n\x1a\n matrix image"


def _image_application(world, place: str):
    """An application of `place`'s procedure with a photo and a sensitive ID photo (undone after the test)."""
    draft = ProcedureVersion.objects.get(pk=world[place].draft.pk)
    ImageStepFactory(version=draft, key="photo", label="写真", position=2)
    ImageStepFactory(version=draft, key="id_photo", label="本人確認書類", position=3, sensitive=True)
    version = version_publish(version=draft)
    answers = {}
    for key in ("photo", "id_photo"):
        ref = default_storage.save(f"line/images/matrix/{place}-{key}.png", ContentFile(IMAGE_BYTES))
        answers[key] = {"ref": ref, "content_type": "image/png", "size": len(IMAGE_BYTES)}
    return ApplicationFactory(version=version, procedure=version.procedure, answers=answers)


def test_every_attachment_case_has_a_place_and_an_expectation():
    assert set(ATTACHMENT_CASES) == set(ATTACHMENT_ALLOWED)
    for roles in ATTACHMENT_ALLOWED.values():
        assert roles <= set(URL_ROLES)


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(ATTACHMENT_CASES))
@pytest.mark.parametrize("role", URL_ROLES)
def test_attachment_download_matrix(world, settings, tmp_path, role, case):
    """Every role x attachment of an application in its own / another department, by direct URL."""
    settings.MEDIA_ROOT = tmp_path / "media"
    place, key = ATTACHMENT_CASES[case]
    application = _image_application(world, place)
    client = Client()
    if role != "anonymous":
        client.force_login(world.users[role])
    response = client.get(reverse("procedures:application_attachment", args=[application.pk, key]))
    _ok(response)
    served = response.status_code == 200 and b"".join(response.streaming_content) == IMAGE_BYTES
    if not served:
        assert IMAGE_BYTES not in (b"" if response.streaming else response.content)
    assert served is (role in ATTACHMENT_ALLOWED[case])


# The application CSV export (/procedures/exports/): place -> the roles that get the place's application
# in the file. Viewers and outsourced operators never export; another department's procedure is refused.
EXPORT_ALLOWED: dict[str, set[str]] = {
    A_GRANTED: ADMINS | {"department_staff", "auditor", "auditor_citywide"},  # granted to the operator: still no export
    A_OTHER: ADMINS | {"department_staff", "auditor", "auditor_citywide"},
    B: CITY_READERS,
    NONE: CITY_READERS,
}


def _application_export(client, world, place: str) -> bool:
    response = client.get(
        reverse("procedures:application_export"), {"procedure": world[place].procedure.pk, "download": "1"}
    )
    _ok(response)
    if response.status_code != 200 or not response.streaming:
        return False
    return marker("receipt", place) in b"".join(response.streaming_content).decode("utf-8-sig")


@pytest.mark.django_db
@pytest.mark.parametrize("place", sorted(EXPORT_ALLOWED))
@pytest.mark.parametrize("role", URL_ROLES)
def test_application_export_matrix(world, role, place):
    """Every role x export of an application in its own department, another department or none."""
    client = Client()
    if role != "anonymous":
        client.force_login(world.users[role])
    assert _application_export(client, world, place) is (role in EXPORT_ALLOWED[place])


# --------------------------------------------------------------------------
# The REST API (/api/v1/, api/): every role with its own token x procedures and applications in
# each place, listed, read by id and moved to another status. A refusal of an object the role may
# not view is a 404 (like an unknown id), of one it may view but not process a 403; no token, 401.
# --------------------------------------------------------------------------

A_PROCESSORS = ADMINS | {"department_staff"}

API_ALLOWED: dict[str, set[str]] = {
    "api.procedure.list.shows_own": A_GRANTED_READERS,
    "api.procedure.list.shows_other_department": CITY_READERS,
    "api.procedure.read.own": A_GRANTED_READERS,
    "api.procedure.read.same_department_not_granted": A_READERS,
    "api.procedure.read.other_department": CITY_READERS,
    "api.procedure.read.without_department": CITY_READERS,
    "api.application.list.shows_own": A_GRANTED_READERS,
    "api.application.list.shows_other_department": CITY_READERS,
    "api.application.read.own": A_GRANTED_READERS,
    "api.application.read.same_department_not_granted": A_READERS,
    "api.application.read.other_department": CITY_READERS,
    "api.application.read.without_department": CITY_READERS,
    "api.application.sensitive_unmasked.own": A_REVEALERS,  # the viewer reads it masked
    "api.application.change_status.own": A_PROCESSORS | {"outsourced_operator"},
    "api.application.change_status.same_department_not_granted": A_PROCESSORS,
    "api.application.change_status.other_department": ADMINS,  # a city-wide auditor reads only
    "api.application.change_status.without_department": ADMINS,
}

_API_PLACES = {"own": A_GRANTED, "same_department_not_granted": A_OTHER, "other_department": B, "without_department": NONE}


def _api_client(world, role):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    if role != "anonymous":
        token, _created = Token.objects.get_or_create(user=world.users[role])
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def _api_check(client, world, case: str):
    """(whether the access happened, the status code)."""
    _api, kind, verb, where = case.split(".")
    if verb == "list":
        response = client.get(reverse(f"api:{kind}-list"), {"page_size": 100})
        _ok(response)
        place = A_GRANTED if where == "shows_own" else B
        text = marker("procedure" if kind == "procedure" else "receipt", place)
        return response.status_code == 200 and text in response.content.decode(), response.status_code
    place = world[_API_PLACES[where]]
    target = place.procedure if kind == "procedure" else place.application
    if verb == "change_status":
        response = client.post(
            reverse("api:application-change-status", args=[target.pk]), {"to_status": "reviewing"}, format="json"
        )
        _ok(response)
        changed = type(target).objects.get(pk=target.pk).status.code == "reviewing"
        return response.status_code == 200 and changed, response.status_code
    response = client.get(reverse(f"api:{kind}-detail", args=[target.pk]))
    _ok(response)
    if verb == "sensitive_unmasked":
        return response.status_code == 200 and response.json()["answers"]["name"] == "市役所 太郎", response.status_code
    return response.status_code == 200 and response.json()["id"] == target.pk, response.status_code


def test_every_api_case_has_an_expectation():
    for roles in API_ALLOWED.values():
        assert roles <= set(URL_ROLES)


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(API_ALLOWED))
@pytest.mark.parametrize("role", URL_ROLES)
def test_api_matrix(world, role, case):
    """Every role x API list/read/change-status of procedures and applications in each place, by id."""
    accessed, status_code = _api_check(_api_client(world, role), world, case)
    assert accessed is (role in API_ALLOWED[case])
    if accessed or case.split(".")[2] in ("list", "sensitive_unmasked"):
        return
    if role == "anonymous":
        assert status_code == 401
    else:
        where = case.split(".")[3]
        readable = role in API_ALLOWED[f"api.application.read.{where}"]
        assert status_code == (403 if readable else 404), status_code
