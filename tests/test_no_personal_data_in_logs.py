"""A whole application, from the resident's LINE to the staff's admin, leaves no answer in any log.

Every logger is captured at DEBUG (tests/log_capture.py). The resident applies over the fake LINE;
a member of the department logs in with password and one-time code, lists, opens and reveals the
application, changes its status and exports it to CSV.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import time_machine
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.conftest import current_code, fast_password_hashing, log_in  # noqa: F401 (autouse fixture)
from messaging.tests.test_webhook import LinePhone, line_channel, user_id, wakeups  # noqa: F401 (autouse fixtures)
from procedures.models import Application
from procedures.services import procedure_import, version_publish
from procedures.tests.factories import DepartmentFactory, StaffUserFactory
from procedures.tests.spec_data import template_bytes
from procedures.workflow import next_statuses
from staff.models import Role, StaffMembership
from tests.log_capture import all_logs

pytestmark = pytest.mark.django_db

NAME, ADDRESS, PHONE, NOTE = "唐津 恵美子", "小城市三日月町長神田2112番地3", "0952-37-9876", "犬が吠えるので裏口へ"

PROCEDURE = {
    "name": "犬の鑑札の再交付",
    "keywords": ["鑑札"],
    "receipt_prefix": "KANSATSU",
    "steps": [
        {"key": "name", "kind": "short_text", "label": "お名前を入力してください。", "sensitive": True},
        {"key": "address", "kind": "short_text", "label": "ご住所を入力してください。", "sensitive": True},
        {"key": "phone", "kind": "short_text", "label": "電話番号を入力してください。", "sensitive": True},
        {"key": "note", "kind": "long_text", "label": "伝えておきたいことがあれば入力してください。"},
        {"key": "confirm", "kind": "confirmation", "label": "内容を確認してください。"},
        {"key": "done", "kind": "completion", "label": "受け付けました。"},
    ],
}


def resident_applies_over_line(client, fake_line) -> Application:
    phone = LinePhone(client, fake_line, user_id(4242))
    phone.follow()
    phone.say("鑑札")
    for answer in (NAME, ADDRESS, PHONE, NOTE):
        phone.say(answer)
    phone.tap("この内容で申し込む")
    assert "受付番号：KANSATSU-" in phone.texts()
    return Application.objects.get()


def staff_logs_in_with_both_factors(settings) -> tuple[Client, object]:
    settings.STAFF_REQUIRE_2FA = True
    department = DepartmentFactory(name="環境課", code="env")
    user = StaffUserFactory(username="kankyo", is_superuser=False)
    StaffMembership.objects.create(user=user, role=Role.DEPARTMENT_STAFF, department=department)
    device = TOTPDevice.objects.create(user=user, name="TOTP", confirmed=True)
    client = Client(REMOTE_ADDR="198.51.100.20")
    assert log_in(client, "kankyo").status_code == 302
    assert client.post(reverse("accounts:otp_verify"), {"token": current_code(device)}).status_code == 302
    return client, department


def staff_works_on(client: Client, application: Application) -> None:
    change_url = reverse("admin:procedures_application_change", args=[application.pk])
    assert client.get(reverse("admin:procedures_application_changelist")).status_code == 200
    assert client.get(change_url).status_code == 200
    revealed = client.post(reverse("admin:procedures_application_reveal", args=[application.pk]), {"reveal": "__all__"})
    assert NAME in revealed.content.decode()  # shown to the permitted member, never logged
    to_status = next_statuses(application=application)[0][0]
    moved = client.post(
        reverse("admin:procedures_application_status", args=[application.pk]),
        {"to_status": to_status.pk, "status_note": "確認します"},
    )
    assert moved.status_code == 302
    export = client.get(reverse("procedures:application_export"), {"procedure": application.procedure_id, "download": "1"})
    assert export.status_code == 200 and NAME in b"".join(export.streaming_content).decode("utf-8-sig")


def test_a_whole_application_leaves_no_answer_in_the_logs(client, fake_line, settings):
    with time_machine.travel(dt.datetime(2026, 5, 11, 9, 0, tzinfo=dt.UTC), tick=False), all_logs() as logs:
        staff, department = staff_logs_in_with_both_factors(settings)
        procedure = procedure_import(raw=template_bytes(PROCEDURE), max_bytes=1_000_000, department=department)
        version_publish(version=procedure.draft)
        application = resident_applies_over_line(client, fake_line)
        staff_works_on(staff, application)

    assert logs.records, "nothing was captured: the capture itself is broken"
    assert any(record.levelno == logging.DEBUG for record in logs.records)  # DEBUG records are in
    logs.assert_absent(NAME, ADDRESS, PHONE, NOTE)


@pytest.mark.parametrize("name", ["django.template", "django.db.backends"])
def test_loggers_that_would_write_answers_at_debug_are_kept_above_it(name):
    """django.template logs a whole template context when a variable is missing; django.db.backends
    logs each query with its parameters (when DEBUG is on). LOG_LEVEL=DEBUG must not reach them."""
    assert logging.getLevelName(django_settings.LOGGING["loggers"][name]["level"]) > logging.DEBUG
    assert logging.getLogger(name).getEffectiveLevel() > logging.DEBUG


def test_sql_and_its_parameters_are_never_logged():
    assert not django_settings.DEBUG
    with all_logs() as logs:
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s", [NAME])
    assert not [record for record in logs.records if record.name == "django.db.backends"]
    logs.assert_absent(NAME)
