"""The audit log: append-only on every path (model, queryset, admin, raw SQL – the database triggers),
what gets recorded (logins, failed logins, logouts, application views, publishing, exports) and the CSV export.

Runs on SQLite by default and on PostgreSQL with DATABASE_URL; the trigger tests run on both.
"""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, models, transaction
from django.db.models.deletion import ProtectedError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit import actions, db
from audit.models import AuditEntry, AuditLogIsAppendOnly
from audit.services import AuditDetailsRefused, audit_record
from procedures.tests.factories import DepartmentFactory, ProcedureFactory, StaffUserFactory, published_version
from staff.models import Role, StaffMembership
from staff.tests.world import A_GRANTED, A_OTHER, B, marker, world_fixture

world = pytest.fixture(scope="module", name="world")(world_fixture)

PASSWORD = "correct horse battery staple"


@pytest.fixture
def entry(db):
    return audit_record(actor=None, action="test.entry", details={"count": 3})


# --------------------------------------------------------------------------
# Append-only
# --------------------------------------------------------------------------


def _unchanged(entry) -> bool:
    return AuditEntry.objects.filter(pk=entry.pk, action="test.entry", details={"count": 3}).exists()


def test_the_model_refuses_changes_and_deletion(entry):
    entry.action = "test.rewritten"
    with pytest.raises(AuditLogIsAppendOnly):
        entry.save()
    with pytest.raises(AuditLogIsAppendOnly):
        entry.save(update_fields=["action"])
    with pytest.raises(AuditLogIsAppendOnly):
        entry.delete()
    loaded = AuditEntry.objects.get(pk=entry.pk)
    loaded.details = {}
    with pytest.raises(AuditLogIsAppendOnly):
        loaded.save()
    assert _unchanged(entry)


def test_a_new_row_cannot_take_over_an_existing_id(entry):
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry(pk=entry.pk, action="test.forged").save()
    assert _unchanged(entry)


def test_the_queryset_refuses_update_and_delete(entry):
    entries = AuditEntry.objects.filter(pk=entry.pk)
    with pytest.raises(AuditLogIsAppendOnly):
        entries.update(action="test.rewritten")
    with pytest.raises(AuditLogIsAppendOnly):
        entries.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEntry.objects.all().delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEntry.objects.bulk_update([entry], ["action"])
    with pytest.raises(AuditLogIsAppendOnly):
        AuditEntry.objects.update_or_create(pk=entry.pk, defaults={"action": "test.rewritten"})
    assert _unchanged(entry)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditentry SET action = 'test.rewritten' WHERE id = %s",
        "UPDATE audit_auditentry SET details = '{}' WHERE id = %s",
        "DELETE FROM audit_auditentry WHERE id = %s",
    ],
)
def test_the_database_refuses_update_and_delete_by_raw_sql(entry, statement):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(statement, [entry.pk])
    assert _unchanged(entry)


def test_the_database_refuses_a_whole_table_delete(entry):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute('DELETE FROM "audit_auditentry"')
    assert _unchanged(entry)


def test_the_database_stops_what_bypasses_the_model_layer(entry):
    """The base manager and a plain QuerySet skip AuditEntryQuerySet: the triggers still refuse."""
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry._base_manager.filter(pk=entry.pk).update(action="test.rewritten")
    with pytest.raises(DatabaseError), transaction.atomic():
        models.QuerySet(AuditEntry).filter(pk=entry.pk).delete()
    assert _unchanged(entry)


@pytest.mark.django_db
def test_the_triggers_exist_after_all_migrations():
    if connection.vendor not in db.TRIGGER_NAMES:
        pytest.skip(f"no append-only triggers for {connection.vendor}")
    assert db.installed_triggers(connection) == db.TRIGGER_NAMES[connection.vendor]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL flushes with TRUNCATE, which row triggers do not see")
def test_on_sqlite_only_the_test_suites_flush_may_empty_the_table(entry):
    """TransactionTestCase teardown flushes every table; that one statement, from Django's flush, is let through."""
    connection.ops.execute_sql_flush(['DELETE FROM "audit_auditentry";'])
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_the_admin_offers_no_change_add_or_delete_even_to_a_superuser(admin_client, entry):
    change = reverse("admin:audit_auditentry_change", args=[entry.pk])
    page = admin_client.get(change)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html
    assert reverse("admin:audit_auditentry_delete", args=[entry.pk]) not in html
    assert admin_client.post(change, {"action": "test.rewritten"}).status_code == 403
    assert admin_client.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert admin_client.post(reverse("admin:audit_auditentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    response = admin_client.post(
        reverse("admin:audit_auditentry_changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert _unchanged(entry)


@pytest.mark.django_db
def test_a_staff_account_in_the_log_is_kept_not_deleted():
    user = StaffUserFactory()
    audit_record(actor=user, action="test.entry")
    with pytest.raises(ProtectedError):
        user.delete()


# --------------------------------------------------------------------------
# What is recorded
# --------------------------------------------------------------------------


def _only(action: str, **filters) -> AuditEntry:
    return AuditEntry.objects.get(action=action, **filters)


@pytest.mark.django_db
def test_login_failed_login_and_logout_are_recorded():
    user = StaffUserFactory(username="kaori", password=PASSWORD)
    client = Client(HTTP_USER_AGENT="Mozilla/5.0 test", REMOTE_ADDR="198.51.100.4")
    login = reverse("admin:login")

    wrong = "Tr0ub4dor&3-not-it"
    response = client.post(login, {"username": "kaori", "password": wrong, "next": "/admin/"})
    assert response.status_code == 200  # the form again
    failed = _only(actions.LOGIN_FAILED)
    assert failed.actor is None and failed.actor_display == "kaori"
    assert (failed.ip, failed.user_agent) == ("198.51.100.4", "Mozilla/5.0 test")
    stored = " ".join(str(value) for value in AuditEntry.objects.values_list().get(pk=failed.pk))
    assert wrong not in stored and "*" not in str(failed.details)

    client.post(login, {"username": "nobody-here", "password": wrong, "next": "/admin/"})
    assert _only(actions.LOGIN_FAILED, actor_display="nobody-here").actor is None

    response = client.post(login, {"username": "kaori", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 302
    logged_in = _only(actions.LOGIN)
    assert logged_in.actor == user and logged_in.actor_display == "kaori" and logged_in.ip == "198.51.100.4"

    client.post(reverse("admin:logout"))
    assert _only(actions.LOGOUT).actor == user
    assert not any(wrong in str(row) for row in AuditEntry.objects.values_list())


@pytest.mark.django_db
def test_viewing_an_application_is_recorded_without_its_answers(admin_client, admin_user):
    department = DepartmentFactory()
    version = published_version(department=department)
    from procedures.tests.factories import ApplicationFactory

    application = ApplicationFactory(version=version, procedure=version.procedure, answers={"name": "山田花子", "item": "bed"})
    page = admin_client.get(reverse("admin:procedures_application_change", args=[application.pk]))
    assert page.status_code == 200
    viewed = _only(actions.APPLICATION_VIEW)
    assert viewed.actor == admin_user
    assert (viewed.object_type, viewed.object_id) == ("procedures.application", str(application.pk))
    assert viewed.department == department
    assert viewed.details == {"receipt_number": application.receipt_number}
    assert "山田花子" not in str(AuditEntry.objects.values_list().get(pk=viewed.pk))
    # The list is not a view of any one application.
    admin_client.get(reverse("admin:procedures_application_changelist"))
    assert AuditEntry.objects.filter(action=actions.APPLICATION_VIEW).count() == 1


@pytest.mark.django_db
def test_publish_close_and_reopen_are_recorded_with_the_actor(admin_client, admin_user):
    department = DepartmentFactory()
    from procedures.tests.factories import valid_draft

    draft = valid_draft(department=department)
    procedure = draft.procedure
    admin_client.post(reverse("admin:procedures_procedureversion_publish", args=[draft.pk]))
    published = _only(actions.PROCEDURE_PUBLISH)
    assert published.actor == admin_user and published.department == department
    assert (published.object_type, published.object_id) == ("procedures.procedure", str(procedure.pk))
    assert published.details == {"version_id": draft.pk, "number": draft.number}

    changelist = reverse("admin:procedures_procedure_changelist")
    admin_client.post(changelist, {"action": "close_procedures", "_selected_action": [procedure.pk]})
    admin_client.post(changelist, {"action": "reopen_procedures", "_selected_action": [procedure.pk]})
    assert _only(actions.PROCEDURE_CLOSE).actor == admin_user
    assert _only(actions.PROCEDURE_REOPEN).actor == admin_user

    never_published = ProcedureFactory(department=department)
    admin_client.post(changelist, {"action": "reopen_procedures", "_selected_action": [never_published.pk]})
    assert AuditEntry.objects.filter(action=actions.PROCEDURE_REOPEN).count() == 1  # nothing reopened


@pytest.mark.django_db
def test_a_template_export_is_recorded(admin_client, admin_user):
    procedure = published_version(department=DepartmentFactory()).procedure
    response = admin_client.post(
        reverse("admin:procedures_procedure_changelist"),
        {"action": "export_templates", "_selected_action": [procedure.pk]},
    )
    assert "attachment" in response["Content-Disposition"]
    exported = _only(actions.PROCEDURE_TEMPLATE_EXPORT)
    assert exported.actor == admin_user and exported.details == {"ids": [procedure.pk], "count": 1}
    assert exported.department_id == procedure.department_id


@pytest.mark.django_db
@pytest.mark.parametrize(
    "details",
    [
        {"answers": {"name": "山田花子"}},
        {"filters": {"password": "x"}},
        {"items": [{"answer": "x"}]},
        {"note": "あ" * 201},
        {"when": object()},
        "not a dict",
    ],
)
def test_details_that_could_carry_answers_or_secrets_are_refused(details):
    with pytest.raises(AuditDetailsRefused):
        audit_record(actor=None, action="test.entry", details=details)
    assert not AuditEntry.objects.exists()


# --------------------------------------------------------------------------
# Auditors: the list and the CSV export
# --------------------------------------------------------------------------


def _csv(response) -> list[list[str]]:
    raw = b"".join(response.streaming_content)
    assert raw.startswith("\ufeff".encode())  # UTF-8 with a BOM, for Excel
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


@pytest.mark.django_db
def test_an_auditor_exports_the_filtered_log_and_the_export_is_recorded(world):
    client = Client()
    auditor = world.users["auditor"]
    client.force_login(auditor)
    changelist = client.get(reverse("admin:audit_auditentry_changelist"), {"action": "test.marker"})
    assert changelist.status_code == 200
    export_url = reverse("admin:audit_auditentry_export") + "?action=test.marker"
    assert export_url.replace("&", "&amp;") in changelist.content.decode()

    response = client.get(export_url)
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    rows = _csv(response)
    assert rows[0][:3] == ["日時", "職員", "操作"]
    shown = {row[1] for row in rows[1:]}
    assert shown == {marker("audit", A_GRANTED), marker("audit", A_OTHER)}  # department A only, markers only

    exported = AuditEntry.objects.filter(action=actions.AUDIT_EXPORT, actor=auditor).get()
    assert exported.details == {"filters": {"action": "test.marker"}, "count": 2}


@pytest.mark.django_db
def test_the_export_neutralises_formulas(world):
    audit_record(actor=None, action=actions.LOGIN_FAILED, actor_display="=HYPERLINK(\"http://evil\")")
    audit_record(actor=None, action=actions.LOGIN_FAILED, actor_display="@SUM(A1)")
    client = Client()
    client.force_login(world.users["auditor_citywide"])
    rows = _csv(client.get(reverse("admin:audit_auditentry_export"), {"action": actions.LOGIN_FAILED}))
    names = sorted(row[1] for row in rows[1:])
    assert names == ["'=HYPERLINK(\"http://evil\")", "'@SUM(A1)"]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["department_staff", "department_viewer", "outsourced_operator", "no_role"])
def test_the_log_and_its_export_are_closed_to_other_roles(world, role):
    client = Client()
    client.force_login(world.users[role])
    assert client.get(reverse("admin:audit_auditentry_changelist")).status_code == 403
    assert client.get(reverse("admin:audit_auditentry_export")).status_code == 403
    entry = world[B].audit_entry
    assert client.get(reverse("admin:audit_auditentry_change", args=[entry.pk])).status_code in (302, 403, 404)
    assert not AuditEntry.objects.filter(action=actions.AUDIT_EXPORT).exists()


@pytest.mark.django_db
def test_the_list_searches_and_filters(world):
    client = Client()
    client.force_login(world.users["auditor_citywide"])
    url = reverse("admin:audit_auditentry_changelist")
    found = client.get(url, {"q": marker("audit", B)}).content.decode()
    assert marker("audit", B) in found and marker("audit", A_OTHER) not in found
    by_department = client.get(url, {"department__id__exact": world.department_a.pk}).content.decode()
    assert marker("audit", A_OTHER) in by_department and marker("audit", B) not in by_department
    this_year = timezone.localdate().year
    assert marker("audit", B) in client.get(url, {"created_at__year": this_year}).content.decode()
    assert marker("audit", B) not in client.get(url, {"created_at__year": this_year - 1}).content.decode()
    by_action = client.get(url, {"action": "test.marker"}).content.decode()
    assert marker("audit", B) in by_action
    assert marker("audit", B) not in client.get(url, {"action": actions.LOGIN}).content.decode()
    by_actor = client.get(url, {"actor__id__exact": world.users["auditor_citywide"].pk}).content.decode()
    assert marker("audit", B) not in by_actor and "ログイン" in by_actor


@pytest.mark.django_db
def test_a_department_auditor_sees_role_changes_of_its_department(world):
    admin = world.users["system_admin"]
    newcomer = get_user_model().objects.create_user("audited-newcomer", is_staff=True)
    from staff.services import membership_add

    membership_add(actor=admin, user=newcomer, role=Role.DEPARTMENT_STAFF, department=world.department_a)
    membership_add(actor=admin, user=newcomer, role=Role.DEPARTMENT_VIEWER, department=world.department_b)
    client = Client()
    client.force_login(world.users["auditor"])
    rows = _csv(client.get(reverse("admin:audit_auditentry_export"), {"action": actions.ROLE_GRANT}))
    assert [row[5] for row in rows[1:]] == [
        str(StaffMembership.objects.get(user=newcomer, department=world.department_a).pk)
    ]
