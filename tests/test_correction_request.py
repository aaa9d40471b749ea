"""Correction requests (修正依頼) end to end over the fake LINE.

Staff mark answers and a reason on the application's correction page; the application moves to
修正依頼中 and the resident gets a notice with a signed 修正する button. The conversation asks only
the marked steps (and what a changed answer brings), confirms, and resubmits: the old answers stay
in a revision, the new ones are stored, the status returns to the one staff chose, 要対応.
"""

from __future__ import annotations

import io
import json

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image

from audit import actions as audit_actions
from audit.models import AuditEntry
from messaging import services as messaging_services
from messaging.line import postback
from messaging.models import OutboxMessage
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    LinePhone,
    actions_in,
    line_channel,
    postback_event,
    user_id,
    wakeups,
)
from procedures.correspondence import (
    COMMAND_CORRECTION_START,
    CorrespondenceRefused,
    correction_cancel,
    correction_request_create,
)
from procedures.engine.types import Event
from procedures.models import (
    Application,
    ApplicationRevision,
    ApplicationStatus,
    CorrectionRequest,
    StatusTransition,
)
from procedures.services import procedure_import, version_publish
from procedures.tests.engine_fixtures import spec_data, step_dict
from procedures.tests.factories import ApplicationFactory, StaffUserFactory
from procedures.tests.spec_data import template_bytes
from procedures.timeline import application_timeline

pytestmark = pytest.mark.django_db

NAME = "佐賀花子"
OLD_PHOTO = {"ref": "line-images/2026/06/old.jpg", "content_type": "image/jpeg", "size": 1234}
ANSWERS = {"item": "tansu", "name": NAME, "photo": OLD_PHOTO}
REASON = "品目と写真をもう一度確認させてください。"


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def staff():
    return StaffUserFactory()


@pytest.fixture
def phone(client, fake_line, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return LinePhone(client, fake_line, user_id(7777))


@pytest.fixture
def application(phone) -> Application:
    data = spec_data(
        step_dict("item", "single_choice", "品目", choices=[
            {"value": "tansu", "label": "タンス"}, {"value": "other", "label": "その他"}]),
        step_dict("other_item", "short_text", "品目の説明", condition={"step": "item", "op": "equals", "value": "other"}),
        step_dict("name", "short_text", "お名前", sensitive=True),
        step_dict("photo", "image", "写真"),
        name="粗大ごみ収集申込", keywords=("粗大ごみ",), receipt_prefix="SODAI",
    )
    version = version_publish(version=procedure_import(raw=template_bytes(data), max_bytes=1_000_000).draft)
    return ApplicationFactory(version=version, line_user_id=phone.user, answers=dict(ANSWERS),
                              receipt_number="SODAI-2026-000042")


def status(application, code: str) -> ApplicationStatus:
    return ApplicationStatus.objects.get(procedure=application.procedure, code=code)


def receive_pushes(phone: LinePhone) -> list[dict]:
    messaging_services.outbox_send()
    received = phone.fake.messages_sent_to(phone.user)
    phone.last, phone.seen = received[phone.seen :], len(received)
    return phone.last


def staff_browser(staff) -> Client:
    browser = Client()
    browser.force_login(staff)
    return browser


def request_from_page(staff, application, **data):
    url = reverse("admin:procedures_application_correction", args=[application.pk])
    browser = staff_browser(staff)
    page = browser.get(url)
    assert page.status_code == 200
    assert "個人情報は書かないでください" in page.content.decode()
    form = {"keys": ["item", "photo"], "reason": REASON, "return_status": status(application, "reviewing").pk}
    form.update(data)
    return browser.post(url, form)


def test_correction_over_line_asks_only_marked_steps_and_keeps_old_and_new_answers(staff, application, phone, tmp_path):
    response = request_from_page(staff, application)
    assert response.status_code == 302
    correction = CorrectionRequest.objects.get()
    assert correction.keys == ["item", "photo"] and correction.state == CorrectionRequest.State.OPEN
    application.refresh_from_db()
    assert application.status.code == "correction_requested"

    pushed = receive_pushes(phone)
    text = json.dumps(pushed, ensure_ascii=False)
    assert "SODAI-2026-000042" in text and REASON in text and "粗大ごみ収集申込" in text
    assert NAME not in text and OLD_PHOTO["ref"] not in text
    button = phone.action("修正する")
    assert button["type"] == "postback"

    received = phone.tap("修正する")
    assert "修正を始めます" in phone.texts() and "修正する項目：品目、写真" in phone.texts()
    assert "品目" in received[-1]["text"]
    phone.tap("その他")  # the changed answer brings a question that was not asked before
    assert "品目の説明" in phone.texts()
    phone.say("古いミシン台")
    assert "写真" in phone.texts()  # お名前 was not marked: not asked
    received = phone.send_image(jpeg())
    summary = received[-1]
    card = json.dumps(summary, ensure_ascii=False)
    assert summary["type"] == "flex" and "古いミシン台" in card and NAME not in card
    assert "この内容で再提出する" in card
    changeable = [a for message in received for a in actions_in(message) if a["label"] == "変更"]
    assert len(changeable) == 3  # 品目, 品目の説明 (new), 写真 – not お名前

    phone.tap("この内容で再提出する")
    assert "修正内容を受け付けました" in phone.texts()

    application.refresh_from_db()
    assert application.answers["item"] == "other" and application.answers["other_item"] == "古いミシン台"
    assert application.answers["name"] == NAME
    assert application.answers["photo"]["ref"] != OLD_PHOTO["ref"]
    assert application.answers["photo"]["content_type"] == "image/jpeg"
    assert (tmp_path / application.answers["photo"]["ref"]).read_bytes() == jpeg()
    assert application.status.code == "reviewing" and application.needs_action is True
    revision = ApplicationRevision.objects.get()
    assert revision.old_answers == ANSWERS and revision.new_answers == application.answers
    correction.refresh_from_db()
    assert correction.state == CorrectionRequest.State.ANSWERED and correction.answered_at is not None
    assert AuditEntry.objects.filter(action=audit_actions.APPLICATION_RESUBMIT).exists()
    timeline = [(entry.label, entry.text) for entry in application_timeline(application)]
    assert ("修正依頼", f"項目：品目、写真　理由：{REASON}") in timeline
    assert ("修正された申請の再提出", "再提出後の状態：確認中") in timeline
    assert not any(label == "修正依頼" and text == "" for label, text in timeline)  # no duplicate from the audit log

    # Staff see the old and new answers side by side; the sensitive name stays masked.
    detail = staff_browser(staff).get(reverse("admin:procedures_application_change", args=[application.pk]))
    page = detail.content.decode()
    assert "修正前" in page and "修正後" in page and "タンス" in page and "古いミシン台" in page
    assert NAME not in page

    # The old button again: a clear answer, nothing changes.
    phone.send(postback_event(phone.user, button["data"], reply_token=phone.token()))
    assert "すでに受け付けています" in phone.texts()
    assert ApplicationRevision.objects.count() == 1


def test_a_second_tap_during_the_correction_keeps_the_conversation(staff, application, phone):
    correction_request_create(application=application, keys=["name"], reason=REASON,
                              return_status=status(application, "reviewing"), actor=staff)
    receive_pushes(phone)
    button = phone.action("修正する")
    phone.tap("修正する")
    phone.send(postback_event(phone.user, button["data"], reply_token=phone.token()))
    assert "修正の入力中です" in phone.texts() and "お名前" in phone.texts()
    phone.say("佐賀 花子")
    phone.tap("この内容で再提出する")
    application.refresh_from_db()
    assert application.answers["name"] == "佐賀 花子"


def test_a_cancelled_correction_button_says_so_and_changes_nothing(staff, application, phone):
    correction = correction_request_create(application=application, keys=["name"], reason=REASON,
                                           return_status=status(application, "reviewing"), actor=staff)
    receive_pushes(phone)
    correction_cancel(correction=correction, actor=staff)
    phone.tap("修正する")
    assert "取り消されました" in phone.texts()
    application.refresh_from_db()
    assert application.answers == ANSWERS and not ApplicationRevision.objects.exists()


def test_a_correction_cancelled_while_the_resident_types_is_not_applied(staff, application, phone):
    correction = correction_request_create(application=application, keys=["name"], reason=REASON,
                                           return_status=status(application, "reviewing"), actor=staff)
    receive_pushes(phone)
    phone.tap("修正する")
    phone.say("別の名前")
    correction_cancel(correction=correction, actor=staff)
    phone.tap("この内容で再提出する")
    assert "修正内容は反映されていません" in phone.texts()
    application.refresh_from_db()
    assert application.answers == ANSWERS and application.status.code == "correction_requested"
    assert not ApplicationRevision.objects.exists()


def test_a_forged_or_foreign_correction_button_is_refused(staff, application, phone, client, fake_line):
    correction = correction_request_create(application=application, keys=["name"], reason=REASON,
                                           return_status=status(application, "reviewing"), actor=staff)
    wrong_token = postback.encode(Event(type="command", name=COMMAND_CORRECTION_START, value=f"{correction.pk}:nope"))
    phone.send(postback_event(phone.user, wrong_token, reply_token=phone.token()))
    assert "見つかりませんでした" in phone.texts()
    # The real button tapped by someone else.
    real = postback.encode(
        Event(type="command", name=COMMAND_CORRECTION_START, value=f"{correction.pk}:{correction.token}")
    )
    other = LinePhone(client, fake_line, user_id(8888))
    other.send(postback_event(other.user, real, reply_token=other.token()))
    assert "見つかりませんでした" in other.texts()
    # Unsigned data never reaches the correction at all.
    phone.send(postback_event(phone.user, "1.forged.[\"m\",\"1:x\",\"\",\"correction_start\",\"\"]",
                              reply_token=phone.token()))
    correction.refresh_from_db()
    assert correction.state == CorrectionRequest.State.OPEN
    application.refresh_from_db()
    assert application.answers == ANSWERS


def test_refused_requests_say_why_and_write_nothing(staff, application):
    response = request_from_page(staff, application, keys=[], reason="")
    page = response.content.decode()
    assert "修正してもらう項目を1つ以上選んでください。" in page and "理由を入力してください" in page
    response = request_from_page(staff, application, reason=f"{NAME}さんの写真が暗いです")
    assert "「お名前」" in response.content.decode()
    response = request_from_page(staff, application, keys=["nope"])
    assert "一覧から選んでください" in response.content.decode()
    assert not CorrectionRequest.objects.exists()
    assert OutboxMessage.objects.count() == 0
    application.refresh_from_db()
    assert application.status.code == "received"


def test_an_application_not_made_on_line_cannot_get_a_correction_request(staff, application):
    Application.objects.filter(pk=application.pk).update(channel=Application.Channel.PROXY, line_user_id="proxy-1")
    response = request_from_page(staff, application)
    assert "LINE から受け付けたものではない" in response.content.decode()
    assert not CorrectionRequest.objects.exists()


def test_a_missing_status_rule_is_explained_to_staff(staff, application):
    StatusTransition.objects.filter(
        from_status=status(application, "received"), to_status=status(application, "correction_requested")
    ).delete()
    response = request_from_page(staff, application)
    page = response.content.decode()
    assert "「受付」から「修正依頼中」への変更が許可されていません" in page and "状態の変更ルール" in page
    assert not CorrectionRequest.objects.exists()


def test_only_one_open_correction_at_a_time(staff, application):
    reviewing = status(application, "reviewing")
    correction_request_create(application=application, keys=["name"], reason=REASON, return_status=reviewing,
                              actor=staff)
    with pytest.raises(CorrespondenceRefused, match="取り消してください"):
        correction_request_create(application=application, keys=["photo"], reason=REASON, return_status=reviewing,
                                  actor=staff)
    assert CorrectionRequest.objects.count() == 1


def test_cancelling_twice_is_refused(staff, application):
    correction = correction_request_create(application=application, keys=["name"], reason=REASON,
                                           return_status=status(application, "reviewing"), actor=staff)
    correction_cancel(correction=correction, actor=staff)
    with pytest.raises(CorrespondenceRefused, match="取り消せません"):
        correction_cancel(correction=correction, actor=staff)
