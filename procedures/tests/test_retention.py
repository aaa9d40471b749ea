"""Retention: applications past their procedure's retention period are deleted by a daily task."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django_q.models import Schedule

from audit import actions as audit_actions
from audit.models import AuditEntry
from procedures import retention, tasks
from procedures.models import (
    DEFAULT_RETENTION_DAYS,
    Application,
    ApplicationRevision,
    ApplicationStatusChange,
    CorrectionRequest,
    Procedure,
)
from procedures.tests.admin_browser import form_data
from procedures.tests.factories import ApplicationFactory, published_version
from procedures.workflow import application_status_change, next_statuses

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _with_image(version, *, days_ago: float, **fields) -> tuple[Application, str]:
    ref = default_storage.save("line/images/retention-test.png", ContentFile(b"\x89PNG fake"))
    application = ApplicationFactory(
        version=version,
        submitted_at=NOW - dt.timedelta(days=days_ago),
        answers={"item": "tansu", "photo": {"ref": ref, "content_type": "image/png", "size": 9}},
        **fields,
    )
    return application, ref


def _history(application) -> None:
    """One status change, so the application has history rows that must go with it."""
    target, _notifies = next_statuses(application=application)[0]
    application_status_change(application=application, to_status=target.pk, actor=None, note="")


@time_machine.travel(NOW, tick=False)
def test_expired_applications_go_with_their_files_history_and_one_audit_entry(
    media_root, django_capture_on_commit_callbacks
):
    version = published_version(name="粗大ごみの収集")
    Procedure.objects.filter(pk=version.procedure_id).update(retention_days=30)
    expired, ref = _with_image(version, days_ago=30.01)
    _history(expired)
    expired_test = ApplicationFactory(version=version, submitted_at=NOW - dt.timedelta(days=31), is_test=True)
    kept = ApplicationFactory(version=version, submitted_at=NOW - dt.timedelta(days=29.99))
    other = published_version(name="犬の登録")  # five years by default
    old_but_kept = ApplicationFactory(version=other, submitted_at=NOW - dt.timedelta(days=365))

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.delete_expired_applications() == {version.procedure_id: 2}

    assert set(Application.objects.values_list("pk", flat=True)) == {kept.pk, old_but_kept.pk}
    assert not ApplicationStatusChange.objects.filter(application_id__in=[expired.pk, expired_test.pk]).exists()
    assert not default_storage.exists(ref)
    entry = AuditEntry.objects.get(action=audit_actions.APPLICATION_RETENTION_DELETE)
    assert entry.object_id == str(version.procedure_id) and entry.actor is None
    assert entry.details["count"] == 2 and entry.details["files"] == 1 and entry.details["retention_days"] == 30
    assert expired.receipt_number not in str(entry.details)


@time_machine.travel(NOW, tick=False)
def test_a_run_works_in_batches_until_everything_expired_is_gone(media_root):
    version = published_version()
    Procedure.objects.filter(pk=version.procedure_id).update(retention_days=1)
    for _ in range(5):
        ApplicationFactory(version=version, submitted_at=NOW - dt.timedelta(days=2))

    assert retention.applications_expired_delete(batch_size=2) == {version.procedure_id: 5}

    assert not Application.objects.exists()
    counts = [e.details["count"] for e in AuditEntry.objects.filter(action=audit_actions.APPLICATION_RETENTION_DELETE)]
    assert sorted(counts) == [1, 2, 2]


@time_machine.travel(NOW, tick=False)
def test_a_failed_run_leaves_no_half_deleted_application(media_root, monkeypatch, django_capture_on_commit_callbacks):
    version = published_version()
    Procedure.objects.filter(pk=version.procedure_id).update(retention_days=30)
    expired, ref = _with_image(version, days_ago=40)
    _history(expired)

    def crash(**kwargs):
        raise RuntimeError("the worker died here")

    monkeypatch.setattr(retention, "audit_record", crash)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        tasks.delete_expired_applications()

    application = Application.objects.get(pk=expired.pk)
    assert application.answers["item"] == "tansu"
    assert ApplicationStatusChange.objects.filter(application=application).exists()
    assert default_storage.exists(ref)  # files go only after the rows are gone for good
    assert not AuditEntry.objects.filter(action=audit_actions.APPLICATION_RETENTION_DELETE).exists()


def test_the_retention_run_is_scheduled_daily_and_procedures_default_to_five_years():
    schedule = Schedule.objects.get(func="procedures.tasks.delete_expired_applications")
    assert schedule.schedule_type == Schedule.DAILY and schedule.repeats == -1
    assert published_version().procedure.retention_days == DEFAULT_RETENTION_DAYS == 1825


# --------------------------------------------------------------------------
# The admin: shortening the period needs a confirmation that names the count
# --------------------------------------------------------------------------


def _change(admin_client, procedure, **changes):
    url = reverse("admin:procedures_procedure_change", args=[procedure.pk])
    data = form_data(admin_client.get(url))
    data.update({key: str(value) for key, value in changes.items()})
    return admin_client.post(url, data)


@time_machine.travel(NOW, tick=False)
def test_shortening_the_period_asks_for_confirmation_with_the_number_deleted(admin_client):
    version = published_version(name="粗大ごみの収集")
    procedure = Procedure.objects.get(pk=version.procedure_id)
    for days in (100, 400, 800):
        ApplicationFactory(version=version, submitted_at=NOW - dt.timedelta(days=days))

    response = _change(admin_client, procedure, retention_days=365)

    assert response.status_code == 200
    error = response.context["adminform"].form.errors["confirm_retention_shortening"][0]
    assert "1825 日から 365 日" in error and "既存の申請 2 件" in error
    assert Procedure.objects.get(pk=procedure.pk).retention_days == 1825

    response = _change(admin_client, procedure, retention_days=365, confirm_retention_shortening="on")
    assert response.status_code == 302
    assert Procedure.objects.get(pk=procedure.pk).retention_days == 365


def test_lengthening_the_period_needs_no_confirmation_and_zero_is_refused(admin_client):
    procedure = Procedure.objects.get(pk=published_version().procedure_id)

    assert _change(admin_client, procedure, retention_days=3650).status_code == 302
    assert Procedure.objects.get(pk=procedure.pk).retention_days == 3650

    assert _change(admin_client, procedure, retention_days="").status_code == 302  # empty: left as it is
    assert Procedure.objects.get(pk=procedure.pk).retention_days == 3650

    response = _change(admin_client, procedure, retention_days=0, confirm_retention_shortening="on")
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["retention_days"]
    assert Procedure.objects.get(pk=procedure.pk).retention_days == 3650


def test_the_period_is_shown_in_japanese_on_the_procedure_page(admin_client):
    procedure = published_version().procedure
    html = admin_client.get(reverse("admin:procedures_procedure_change", args=[procedure.pk])).content.decode()
    assert "保存期間（日）" in html
    html = admin_client.get(reverse("admin:procedures_procedure_add")).content.decode()
    assert "保存期間（日）" in html and "confirm_retention_shortening" not in html


@time_machine.travel(NOW, tick=False)
def test_images_replaced_by_a_correction_are_deleted_with_the_application(media_root, django_capture_on_commit_callbacks):
    version = published_version(name="粗大ごみの収集")
    Procedure.objects.filter(pk=version.procedure_id).update(retention_days=30)
    expired, current_ref = _with_image(version, days_ago=31)
    replaced_ref = default_storage.save("line/images/replaced.png", ContentFile(b"\x89PNG old"))
    old_answers = {**expired.answers, "photo": {"ref": replaced_ref, "content_type": "image/png", "size": 7}}
    correction = CorrectionRequest.objects.create(
        application=expired, keys=["photo"], reason="写真が不鮮明です", return_status=expired.status,
        token="t", state=CorrectionRequest.State.ANSWERED, created_at=NOW - dt.timedelta(days=31),
    )
    ApplicationRevision.objects.create(application=expired, correction=correction, old_answers=old_answers,
                                       new_answers=expired.answers, created_at=NOW - dt.timedelta(days=31))

    with django_capture_on_commit_callbacks(execute=True):
        tasks.delete_expired_applications()

    assert not Application.objects.filter(pk=expired.pk).exists()
    assert not default_storage.exists(current_ref) and not default_storage.exists(replaced_ref)
    assert AuditEntry.objects.get(action=audit_actions.APPLICATION_RETENTION_DELETE).details["files"] == 2
