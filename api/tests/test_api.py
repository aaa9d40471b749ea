"""The staff REST API: reads, filters, pagination, status changes, tokens, audit, the schema."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from api.pagination import MAX_PAGE_SIZE
from api.selectors import MASK
from api.tests.conftest import member, token_client
from audit import actions
from audit.models import AuditEntry
from procedures.models import Application, ApplicationStatusChange
from procedures.tests.factories import ApplicationFactory, StaffUserFactory
from staff.models import Role

pytestmark = pytest.mark.django_db
JST = ZoneInfo("Asia/Tokyo")
LIST = reverse("api:application-list")


def _detail(application):
    return reverse("api:application-detail", args=[application.pk])


def _status(application):
    return reverse("api:application-change-status", args=[application.pk])


def test_department_staff_reads_an_application_with_its_answers(staff, application):
    body = token_client(staff).get(_detail(application)).json()
    assert body["receipt_number"] == "SODAI-2026-000001"
    assert body["status"] == {"code": "received", "label": "受付"}
    assert body["version"] == application.version.number
    assert body["answers"] == {"item": "tansu", "count": 2, "name": "市役所 太郎"}


def test_reading_an_application_is_audit_logged_with_the_revealed_keys(staff, application):
    token_client(staff).get(_detail(application))
    view = AuditEntry.objects.get(action=actions.APPLICATION_VIEW)
    reveal = AuditEntry.objects.get(action=actions.APPLICATION_REVEAL)
    assert view.actor == staff and view.details["via"] == "api"
    assert reveal.details["keys"] == ["name"]
    assert "市役所 太郎" not in str(view.details) + str(reveal.details)


def test_viewer_sees_sensitive_answers_masked_and_nothing_is_revealed(viewer, application):
    body = token_client(viewer).get(_detail(application)).json()
    assert body["answers"]["name"] == MASK and body["answers"]["count"] == 2
    assert not AuditEntry.objects.filter(action=actions.APPLICATION_REVEAL).exists()


def test_list_leaves_answers_and_test_applications_out(staff, application, version):
    ApplicationFactory(version=version, is_test=True, receipt_number="TEST-SODAI-2026-000001")
    body = token_client(staff).get(LIST).json()
    assert [row["receipt_number"] for row in body["results"]] == ["SODAI-2026-000001"]
    assert "answers" not in body["results"][0]


def test_test_application_answers_404_by_id(staff, version):
    test_application = ApplicationFactory(version=version, is_test=True)
    assert token_client(staff).get(_detail(test_application)).status_code == 404


def test_list_is_paginated_with_a_bounded_page_size(staff, version):
    for number in range(3):
        ApplicationFactory(version=version, receipt_number=f"SODAI-2026-00010{number}")
    client = token_client(staff)
    body = client.get(LIST, {"page_size": 2}).json()
    assert body["count"] == 3 and len(body["results"]) == 2 and body["next"]
    assert len(client.get(LIST, {"page_size": 2, "page": 2}).json()["results"]) == 1
    too_big = client.get(LIST, {"page_size": MAX_PAGE_SIZE + 1})
    assert too_big.status_code == 400
    assert "page_size は 1〜100 の整数" in too_big.json()["page_size"][0]
    assert client.get(LIST, {"page": 9}).status_code == 404


def test_list_filters_by_procedure_status_dates_needs_action_and_assignee(staff, version, application):
    other = ApplicationFactory(
        version=version, submitted_at=datetime(2026, 1, 10, 9, tzinfo=JST), needs_action=True, assignee=staff
    )
    client = token_client(staff)

    def receipts(**params):
        response = client.get(LIST, params)
        assert response.status_code == 200, response.json()
        return {row["receipt_number"] for row in response.json()["results"]}

    assert receipts(procedure=version.procedure_id) == {application.receipt_number, other.receipt_number}
    assert receipts(procedure=version.procedure_id + 1000) == set()
    assert receipts(submitted_from="2026-01-10", submitted_to="2026-01-10") == {other.receipt_number}
    assert receipts(needs_action="true") == {other.receipt_number}
    assert receipts(needs_action="false") == {application.receipt_number}
    assert receipts(assignee=staff.pk) == {other.receipt_number}
    token_client(staff).post(_status(application), {"to_status": "reviewing"}, format="json")
    assert receipts(status="reviewing") == {application.receipt_number}


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"procedure": "abc"}, "procedure", "手続きの id"),
        ({"status": "受付"}, "status", "状態のコード"),
        ({"submitted_from": "2026/01/10"}, "submitted_from", "YYYY-MM-DD"),
        ({"submitted_from": "2026-02-01", "submitted_to": "2026-01-01"}, "submitted_to", "より後"),
        ({"needs_action": "maybe"}, "needs_action", "true か false"),
        ({"assignee": "-3"}, "assignee", "職員の id"),
        ({"page_size": "x"}, "page_size", "整数"),
    ],
)
def test_bad_filter_values_are_400_with_a_japanese_message(staff, application, params, field, words):
    response = token_client(staff).get(LIST, params)
    assert response.status_code == 400
    assert words in response.json()[field][0]


def test_staff_changes_a_status_through_the_workflow(staff, application):
    Application.objects.filter(pk=application.pk).update(needs_action=True)
    response = token_client(staff).post(_status(application), {"to_status": "reviewing", "note": "確認"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"]["code"] == "reviewing"
    change = ApplicationStatusChange.objects.get(application=application)
    assert (change.actor, change.via, change.note) == (staff, "staff", "確認")
    assert AuditEntry.objects.filter(action=actions.APPLICATION_STATUS_CHANGE).count() == 1
    assert not Application.objects.get(pk=application.pk).needs_action  # a staff status change handles it


def test_disallowed_transition_is_400_in_japanese_and_changes_nothing(staff, application):
    client = token_client(staff)
    client.post(_status(application), {"to_status": "completed"}, format="json")
    response = client.post(_status(application), {"to_status": "reviewing"}, format="json")
    assert response.status_code == 400
    assert "「完了」から「確認中」には変更できません。" in response.json()["to_status"][0]
    assert Application.objects.get(pk=application.pk).status.code == "completed"
    assert ApplicationStatusChange.objects.filter(application=application).count() == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"to_status": "archived"}, "状態「archived」がありません"),
        ({}, "to_status（変更後の状態のコード）を指定"),
        ({"to_status": "reviewing", "note": "あ" * 1001}, "1000文字以内"),
    ],
)
def test_bad_status_change_is_400_and_leaves_no_change(staff, application, body, words):
    response = token_client(staff).post(_status(application), body, format="json")
    assert response.status_code == 400
    assert words in str(response.json())
    assert not ApplicationStatusChange.objects.filter(application=application).exists()


def test_viewer_cannot_change_a_status(viewer, application):
    response = token_client(viewer).post(_status(application), {"to_status": "reviewing"}, format="json")
    assert response.status_code == 403
    assert "権限がありません" in response.json()["detail"]


def test_procedures_list_their_published_steps(staff, version):
    body = token_client(staff).get(reverse("api:procedure-detail", args=[version.procedure_id])).json()
    assert body["published_version"] == version.number and body["department"]["name"] == "環境課"
    assert {"key": "name", "label": "お名前", "kind": "short_text", "sensitive": True} in body["steps"]


def test_no_token_is_401_and_a_bad_token_is_401():
    assert APIClient().get(LIST).status_code == 401
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token nonsense")
    assert client.get(LIST).status_code == 401


def test_the_token_of_an_inactive_user_does_not_work(staff, application):
    client = token_client(staff)
    staff.is_active = False
    staff.save()
    assert client.get(LIST).status_code == 401


def test_staff_issue_their_own_token_in_the_admin_and_not_someone_elses(staff, viewer):
    client = APIClient()
    client.force_login(staff)
    url = reverse("admin:authtoken_tokenproxy_add")
    client.post(url, {"user": viewer.pk})
    assert not Token.objects.filter(user=viewer).exists()
    client.post(url, {"user": staff.pk})
    assert Token.objects.filter(user=staff).exists()
    assert AuditEntry.objects.filter(action=actions.API_TOKEN_CREATE, actor=staff).exists()
    Token.objects.create(user=viewer)
    listing = client.get(reverse("admin:authtoken_tokenproxy_changelist")).content.decode()
    assert Token.objects.get(user=staff).key in listing and Token.objects.get(user=viewer).key not in listing


def test_system_admin_revokes_anyones_token(staff):
    admin_user = member(Role.SYSTEM_ADMIN, username="sysadmin")
    token = Token.objects.create(user=staff)
    client = APIClient()
    client.force_login(admin_user)
    client.post(reverse("admin:authtoken_tokenproxy_delete", args=[staff.pk]), {"post": "yes"})
    assert not Token.objects.filter(pk=token.pk).exists()
    assert AuditEntry.objects.filter(action=actions.API_TOKEN_REVOKE, actor=admin_user).exists()


def test_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/v1/applications/{id}/status/" in (tmp_path / "schema.yaml").read_text()


def test_schema_and_docs_page_are_served_to_staff_without_outside_scripts(staff):
    client = token_client(staff)
    assert client.get(reverse("api:schema")).status_code == 200
    browser = APIClient()
    browser.force_login(staff)
    page = browser.get(reverse("api:docs")).content.decode()
    assert "/api/v1/applications/{id}/status/" in page and "申請の状態を変更する" in page
    assert "cdn" not in page.lower() and "https://" not in page


def test_superuser_token_reaches_every_department(application):
    superuser = StaffUserFactory(username="root")
    assert token_client(superuser).get(_detail(application)).status_code == 200
