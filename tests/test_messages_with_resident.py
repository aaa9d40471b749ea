"""Messages with the resident about an application, end to end over the fake LINE.

Staff write on the application's message page; the message is stored and pushed through the
outbox. The resident's text within RESIDENT_REPLY_WINDOW_HOURS is stored on that application and
marks it 要対応; outside the window, or inside a procedure, the conversation behaves as always.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit import actions as audit_actions
from audit.models import AuditEntry
from messaging import services as messaging_services
from messaging.models import OutboxMessage
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    LinePhone,
    line_channel,
    user_id,
    wakeups,
)
from procedures.correspondence import CorrespondenceRefused, application_message_send, resident_input_intercept
from procedures.engine.types import Event
from procedures.models import Application, ApplicationMessage
from procedures.tests.factories import ApplicationFactory, DepartmentFactory, StaffUserFactory, published_version
from procedures.timeline import application_timeline
from staff.models import Role, StaffMembership

pytestmark = pytest.mark.django_db

NAME = "佐賀花子"
ANSWERS = {"item": "other", "reason": "押し入れの奥の古い桐箪笥", "count": 2, "name": NAME}
STAFF_TEXT = "収集日の前日までに、品目の大きさを教えてください。"


@pytest.fixture
def staff():
    return StaffUserFactory()


@pytest.fixture
def phone(client, fake_line):
    return LinePhone(client, fake_line, user_id(4242))


@pytest.fixture
def application(phone) -> Application:
    version = published_version(name="粗大ごみ収集申込", keywords="粗大ごみ")
    return ApplicationFactory(version=version, line_user_id=phone.user, answers=dict(ANSWERS),
                              receipt_number="SODAI-2026-000007")


def receive_pushes(phone: LinePhone) -> list[dict]:
    """Run the sender and return what newly arrived on the resident's phone."""
    messaging_services.outbox_send()
    received = phone.fake.messages_sent_to(phone.user)
    phone.last, phone.seen = received[phone.seen :], len(received)
    return phone.last


def send_from_page(staff, application, text: str, **extra):
    browser = Client()
    browser.force_login(staff)
    url = reverse("admin:procedures_application_message", args=[application.pk])
    page = browser.get(url)
    assert page.status_code == 200
    assert "個人情報は書かないでください" in page.content.decode()
    key = page.context["form"].initial["client_key"]
    return browser.post(url, {"text": text, "client_key": key, **extra})


def test_staff_message_is_stored_pushed_and_audited_without_answers(staff, application, phone):
    response = send_from_page(staff, application, STAFF_TEXT)
    assert response.status_code == 302
    message = ApplicationMessage.objects.get()
    assert message.direction == ApplicationMessage.Direction.TO_RESIDENT
    assert message.text == STAFF_TEXT and message.sender == staff
    assert message.delivery == ApplicationMessage.Delivery.QUEUED
    [text] = [m["text"] for m in receive_pushes(phone)]
    assert "SODAI-2026-000007" in text and STAFF_TEXT in text and "返信すると" in text
    assert NAME not in text and ANSWERS["reason"] not in text
    entry = AuditEntry.objects.get(action=audit_actions.APPLICATION_MESSAGE)
    assert entry.details["direction"] == "to_resident" and STAFF_TEXT not in json.dumps(entry.details, ensure_ascii=False)


def test_the_same_form_sent_twice_sends_one_message(staff, application):
    application_message_send(application=application, text=STAFF_TEXT, sender=staff, client_key="k1")
    application_message_send(application=application, text=STAFF_TEXT, sender=staff, client_key="k1")
    assert ApplicationMessage.objects.count() == 1
    assert OutboxMessage.objects.filter(line_user_id=application.line_user_id).count() == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "メッセージを入力してください。"),
        ("   \n  ", "メッセージを入力してください。"),
        ("あ" * 1001, "1000文字以内"),
        (f"{NAME}様、ご連絡ください。", "「お名前」"),
        ("佐賀 花子 様へ", "「お名前」"),  # spaces do not hide an answer
        ("押し入れの奥の古い桐箪笥について", "「品目の説明」"),
    ],
)
def test_a_bad_or_personal_message_is_refused_in_words_and_nothing_is_sent(staff, application, text, expected):
    response = send_from_page(staff, application, text)
    assert response.status_code == 200
    assert expected in response.content.decode()
    assert ApplicationMessage.objects.count() == 0
    assert OutboxMessage.objects.count() == 0
    assert not AuditEntry.objects.filter(action=audit_actions.APPLICATION_MESSAGE).exists()


def test_a_resident_reply_within_the_window_is_kept_on_the_application_and_needs_action(staff, application, phone):
    application_message_send(application=application, text=STAFF_TEXT, sender=staff)
    receive_pushes(phone)
    with time_machine.travel(timezone.now() + timedelta(hours=71)):
        received = phone.say("幅は120センチくらいです。")
    assert "担当者にメッセージを送りました" in phone.texts() and "SODAI-2026-000007" in phone.texts()
    assert len(received) == 1  # no menu: the engine was not asked
    reply = ApplicationMessage.objects.get(direction=ApplicationMessage.Direction.FROM_RESIDENT)
    assert reply.application == application and reply.text == "幅は120センチくらいです。"
    assert reply.delivery == ApplicationMessage.Delivery.RECEIVED and reply.sender is None
    application.refresh_from_db()
    assert application.needs_action is True
    # Staff see the reply on the message page and in the timeline.
    browser = Client()
    browser.force_login(staff)
    page = browser.get(reverse("admin:procedures_application_message", args=[application.pk])).content.decode()
    assert "幅は120センチくらいです。" in page
    detail = browser.get(reverse("admin:procedures_application_change", args=[application.pk])).content.decode()
    assert "住民からのメッセージ" in detail
    timeline = [(entry.label, entry.actor, entry.text) for entry in application_timeline(application)]
    assert ("住民へのメッセージ", staff.get_username(), STAFF_TEXT) in timeline
    assert ("住民からのメッセージ", "住民", "幅は120センチくらいです。") in timeline
    assert not any(label == "住民とのメッセージ" for label, _actor, _text in timeline)  # not again from the audit log


def test_a_text_after_the_window_is_an_ordinary_conversation(staff, application, phone):
    application_message_send(application=application, text=STAFF_TEXT, sender=staff)
    receive_pushes(phone)
    with time_machine.travel(timezone.now() + timedelta(hours=73)):
        phone.say("幅は120センチくらいです。")
    assert "担当者にメッセージを送りました" not in phone.texts()
    assert "ご利用になる手続きを選んでください。" in phone.texts()
    assert not ApplicationMessage.objects.filter(direction=ApplicationMessage.Direction.FROM_RESIDENT).exists()
    application.refresh_from_db()
    assert application.needs_action is False


def test_the_window_is_configurable(staff, application, phone, settings):
    settings.RESIDENT_REPLY_WINDOW_HOURS = 1
    application_message_send(application=application, text=STAFF_TEXT, sender=staff)
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        phone.say("遅れてすみません")
    assert not ApplicationMessage.objects.filter(direction=ApplicationMessage.Direction.FROM_RESIDENT).exists()


def test_inside_a_procedure_or_with_a_keyword_the_text_goes_to_the_conversation(staff, application, phone):
    application_message_send(application=application, text=STAFF_TEXT, sender=staff)
    phone.say("粗大ごみ")  # the keyword starts the procedure, even within the window
    assert "手続きを始めます" in phone.texts()
    phone.say("その他")  # an answer, not a reply to staff
    assert not ApplicationMessage.objects.filter(direction=ApplicationMessage.Direction.FROM_RESIDENT).exists()


def test_another_residents_text_is_not_a_reply(staff, application, client, fake_line):
    application_message_send(application=application, text=STAFF_TEXT, sender=staff)
    LinePhone(client, fake_line, user_id(5555)).say("こんにちは")
    assert not ApplicationMessage.objects.filter(direction=ApplicationMessage.Direction.FROM_RESIDENT).exists()


def test_a_message_to_a_resident_line_cannot_reach_is_kept_and_staff_are_told(staff):
    application = ApplicationFactory(line_user_id="sim-123", answers=dict(ANSWERS))
    message = application_message_send(application=application, text=STAFF_TEXT, sender=staff)
    assert message.delivery == ApplicationMessage.Delivery.UNREACHABLE
    assert OutboxMessage.objects.count() == 0


def test_a_text_from_a_partner_line_never_reached_is_not_a_reply(staff):
    proxied = ApplicationFactory(line_user_id="proxy-1", channel=Application.Channel.PROXY, answers=dict(ANSWERS))
    application_message_send(application=proxied, text=STAFF_TEXT, sender=staff)
    event = Event(type="text", text="（職員の代理入力）")
    assert resident_input_intercept(line_user_id="proxy-1", event=event, state={}, now=timezone.now()) is None


def test_a_viewer_may_not_send_a_message(application):
    department = DepartmentFactory()
    application.procedure.department = department
    application.procedure.save()
    viewer = StaffUserFactory(is_superuser=False)
    StaffMembership.objects.create(user=viewer, role=Role.DEPARTMENT_VIEWER, department=department)
    with pytest.raises(CorrespondenceRefused):
        application_message_send(application=application, text=STAFF_TEXT, sender=viewer)
    browser = Client()
    browser.force_login(viewer)
    url = reverse("admin:procedures_application_message", args=[application.pk])
    assert browser.post(url, {"text": STAFF_TEXT}).status_code == 403
    assert ApplicationMessage.objects.count() == 0
