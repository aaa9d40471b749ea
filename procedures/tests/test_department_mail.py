"""E-mail to a department about new applications: one per application, or a daily digest."""

from __future__ import annotations

import datetime as dt
import logging
import smtplib

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string
from django_q.models import Schedule

from procedures import notifications, tasks
from procedures import simulator as channel
from procedures.engine.types import Event
from procedures.models import Application
from procedures.services import conversation_handle
from procedures.tests.factories import ApplicationFactory, DepartmentFactory, published_version
from staff.models import NotificationMode

pytestmark = pytest.mark.django_db

LINE_USER = "U" + "a" * 32
JST = dt.timezone(dt.timedelta(hours=9))


@pytest.fixture
def queued(monkeypatch):
    """Tasks the code enqueued, as (dotted function name, args); run them with run_queued()."""
    calls: list[tuple[str, tuple]] = []
    monkeypatch.setattr(notifications, "async_task", lambda func, *args, **kwargs: calls.append((func, args)))
    return calls


def run_queued(calls):
    results = [import_string(func)(*args) for func, args in calls]
    calls.clear()
    return results


@pytest.fixture
def department():
    return DepartmentFactory(
        name="環境課", code="env", notification_email="kankyo@city.example.jp", notification_mode=NotificationMode.EACH
    )


def _submit_on_line(version, line_user_id=LINE_USER, **kwargs):
    """A resident goes through valid_draft(): item → count → name → confirm; returns the last reply."""

    def send(event):
        return conversation_handle(line_user_id=line_user_id, event=event, **kwargs)

    def tap(reply, label):
        actions = [a for m in channel.messages_to_dicts(reply.messages) for a in m["actions"] if a["label"] == label]
        return send(channel.event_from_dict(actions[0]["event"]))

    tap(send(Event(type="start", value=version.procedure_id)), "タンス")
    send(Event(type="text", text="2"))
    return tap(send(Event(type="text", text="山田太郎")), "この内容で申し込む")


@time_machine.travel(dt.datetime(2026, 12, 1, 10, 30, tzinfo=JST), tick=False)
def test_each_application_sends_one_mail_without_personal_data(
    department, queued, django_capture_on_commit_callbacks, settings
):
    settings.GOVTECH_BASE_URL = "https://city.example.jp/"
    version = published_version(name="粗大ごみの収集", department=department)
    with django_capture_on_commit_callbacks(execute=True):
        reply = _submit_on_line(version)
    application = reply.applications[0]
    assert queued == [("procedures.tasks.send_application_mail", (application.pk,))]

    assert run_queued(queued) == [True]
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["kankyo@city.example.jp"]
    assert application.receipt_number in message.subject and "粗大ごみの収集" in message.subject
    assert application.receipt_number in message.body
    assert "2026-12-01 10:30" in message.body
    assert "受付方法：LINE" in message.body
    assert f"https://city.example.jp/admin/procedures/application/{application.pk}/change/" in message.body
    for personal in ("山田太郎", "tansu", "タンス", LINE_USER):
        assert personal not in message.body and personal not in message.subject


def test_nothing_is_queued_before_the_submission_commits(department, queued, django_capture_on_commit_callbacks):
    version = published_version(department=department)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _submit_on_line(version)
    assert queued == []  # a rolled-back submission would never have sent anything
    for callback in callbacks:
        callback()
    assert [func for func, _args in queued] == ["procedures.tasks.send_application_mail"]


def test_test_applications_and_departments_without_mail_send_nothing(
    department, queued, django_capture_on_commit_callbacks
):
    version = published_version(department=department)
    quiet = published_version(department=DepartmentFactory(code="quiet"))
    without = published_version()  # no department at all
    with django_capture_on_commit_callbacks(execute=True):
        _submit_on_line(version, line_user_id="sim-1", is_test=True)
        _submit_on_line(quiet)
        _submit_on_line(without, line_user_id="U" + "b" * 32)
    assert Application.objects.count() == 3
    assert queued == []


def test_an_application_entered_by_staff_sends_a_mail_too(
    department, queued, django_capture_on_commit_callbacks, admin_user
):
    version = published_version(department=department)
    with django_capture_on_commit_callbacks(execute=True):
        _submit_on_line(version, line_user_id="proxy-1", entered_by=admin_user)
    run_queued(queued)
    assert "受付方法：代理入力（電話）" in mail.outbox[0].body


def test_a_failed_send_raises_for_the_task_retry_and_logs_no_personal_data(department, settings, caplog):
    settings.EMAIL_BACKEND = "procedures.tests.test_department_mail.FailingBackend"
    application = ApplicationFactory(
        version=published_version(name="粗大ごみの収集", department=department), answers={"name": "山田太郎"}
    )
    with caplog.at_level(logging.WARNING, logger="procedures.notifications"), pytest.raises(smtplib.SMTPException):
        tasks.send_application_mail(application.pk)
    logged = caplog.text
    assert f"application {application.pk}" in logged and "SMTPRecipientsRefused" in logged
    for personal in ("山田太郎", "kankyo@city.example.jp", application.receipt_number):
        assert personal not in logged


class FailingBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise smtplib.SMTPRecipientsRefused({"kankyo@city.example.jp": (550, b"no such user")})


def test_a_department_needs_an_address_to_get_mail():
    department = DepartmentFactory.build(name="税務課", code="tax", notification_mode=NotificationMode.DAILY)
    with pytest.raises(ValidationError) as error:
        department.full_clean()
    assert error.value.message_dict["notification_email"] == [
        "メール通知を送るには、通知先メールアドレスを入力してください。"
    ]


# --------------------------------------------------------------------------
# Daily digest
# --------------------------------------------------------------------------


def _at(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, 0, tzinfo=JST)


@pytest.fixture
def digest_world():
    daily = DepartmentFactory(
        name="環境課", code="env", notification_email="kankyo@city.example.jp", notification_mode=NotificationMode.DAILY
    )
    other = DepartmentFactory(
        name="市民課", code="civic", notification_email="shimin@city.example.jp", notification_mode=NotificationMode.DAILY
    )
    sodai = published_version(name="粗大ごみの収集", department=daily)
    inu = published_version(name="犬の登録", department=daily)
    civic = published_version(name="住民票の写し", department=other)
    made = {
        "sodai_1": ApplicationFactory(version=sodai, submitted_at=_at(1, 0), answers={"name": "山田太郎"}),
        "sodai_2": ApplicationFactory(version=sodai, submitted_at=_at(1, 23)),
        "inu": ApplicationFactory(version=inu, submitted_at=_at(1, 12)),
        "before": ApplicationFactory(version=sodai, submitted_at=_at(1, 0) - dt.timedelta(seconds=1)),
        "today": ApplicationFactory(version=sodai, submitted_at=_at(2, 0)),
        "test": ApplicationFactory(version=sodai, submitted_at=_at(1, 9), is_test=True),
        "civic": ApplicationFactory(version=civic, submitted_at=_at(1, 8)),
    }
    return daily, other, made


@time_machine.travel(dt.datetime(2026, 12, 2, 7, 0, tzinfo=JST), tick=False)
def test_the_digest_lists_the_previous_days_applications_per_department(digest_world, settings):
    settings.GOVTECH_BASE_URL = "https://city.example.jp"
    _daily, _other, made = digest_world

    assert tasks.send_department_digests() == 2

    by_address = {message.to[0]: message for message in mail.outbox}
    assert set(by_address) == {"kankyo@city.example.jp", "shimin@city.example.jp"}
    message = by_address["kankyo@city.example.jp"]
    assert "2026-12-01" in message.subject and "3件" in message.subject
    assert "■ 粗大ごみの収集：2件" in message.body and "■ 犬の登録：1件" in message.body
    for key in ("sodai_1", "sodai_2", "inu"):
        assert made[key].receipt_number in message.body
    for key in ("before", "today", "test", "civic"):
        assert made[key].receipt_number not in message.body
    assert "https://city.example.jp/admin/procedures/application/?submitted_at__gte=2026-12-01" in message.body
    assert "山田太郎" not in message.body
    assert made["civic"].receipt_number in by_address["shimin@city.example.jp"].body


@time_machine.travel(dt.datetime(2026, 12, 2, 7, 0, tzinfo=JST), tick=False)
def test_a_repeated_digest_run_sends_nothing_twice(digest_world):
    tasks.send_department_digests()
    tasks.send_department_digests()
    assert len(mail.outbox) == 2


@time_machine.travel(dt.datetime(2026, 12, 5, 7, 0, tzinfo=JST), tick=False)
def test_a_day_without_applications_sends_no_digest(digest_world):
    assert tasks.send_department_digests() == 0
    assert mail.outbox == []


@time_machine.travel(dt.datetime(2026, 12, 2, 7, 0, tzinfo=JST), tick=False)
def test_a_failed_digest_is_sent_on_the_retry_and_the_others_only_once(digest_world, monkeypatch):
    real_send = notifications.send_mail

    def flaky(subject, body, sender, to):
        if to == ["kankyo@city.example.jp"]:
            raise ConnectionRefusedError("smtp down")
        return real_send(subject, body, sender, to)

    monkeypatch.setattr(notifications, "send_mail", flaky)
    with pytest.raises(notifications.DigestNotSent):
        tasks.send_department_digests()
    assert [message.to for message in mail.outbox] == [["shimin@city.example.jp"]]

    monkeypatch.setattr(notifications, "send_mail", real_send)
    tasks.send_department_digests()  # the task system presents the task again
    assert [message.to for message in mail.outbox] == [["shimin@city.example.jp"], ["kankyo@city.example.jp"]]


def test_the_digest_is_scheduled_daily():
    schedule = Schedule.objects.get(func="procedures.tasks.send_department_digests")
    assert schedule.schedule_type == Schedule.DAILY and schedule.repeats == -1


def test_a_procedure_nobody_reviews_neither_waits_in_the_inbox_nor_mails(
    department, queued, django_capture_on_commit_callbacks
):
    version = published_version(department=department)
    version.procedure.needs_staff_review = False
    version.procedure.save()
    reviewed = published_version(department=department)
    with django_capture_on_commit_callbacks(execute=True):
        quiet = _submit_on_line(version).applications[0]
        waiting = _submit_on_line(reviewed, line_user_id="U" + "c" * 32).applications[0]
    assert (quiet.needs_action, waiting.needs_action) == (False, True)
    assert queued == [("procedures.tasks.send_application_mail", (waiting.pk,))]


@time_machine.travel(dt.datetime(2026, 12, 2, 7, 0, tzinfo=JST), tick=False)
def test_the_digest_leaves_out_procedures_nobody_reviews_and_campaign_answers(digest_world):
    daily, _other, made = digest_world
    records = published_version(name="受信設定", department=daily)
    records.procedure.needs_staff_review = False
    records.procedure.save()
    ApplicationFactory(version=records, submitted_at=_at(1, 10))
    campaign_yes = ApplicationFactory(version=made["inu"].version, submitted_at=_at(1, 11))
    Application.objects.filter(pk=campaign_yes.pk).update(channel=Application.Channel.CAMPAIGN)

    tasks.send_department_digests()

    body = next(message.body for message in mail.outbox if message.to == ["kankyo@city.example.jp"])
    assert "受信設定" not in body and campaign_yes.receipt_number not in body
    assert "■ 犬の登録：1件" in body
