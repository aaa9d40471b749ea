"""The status workflow: statuses per procedure, staff changes, LINE notices, 申請状況 and withdrawal.

Notices leave only through the messaging outbox and carry status, receipt number and link, never
an answer; residents see and withdraw only their own applications.
"""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse

from messaging import services as messaging_services
from messaging.models import LineUser, OutboxMessage
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    LinePhone,
    line_channel,
    postback_event,
    user_id,
    wakeups,
)
from procedures import workflow
from procedures.demo import load_demo
from procedures.engine.types import Event
from procedures.models import (
    DEFAULT_STATUSES,
    DEFAULT_TRANSITIONS,
    Application,
    ApplicationStatus,
    ApplicationStatusChange,
    StatusTransition,
)
from procedures.services import conversation_handle
from procedures.tests.factories import (
    ApplicationFactory,
    DepartmentFactory,
    ProcedureFactory,
    StaffUserFactory,
    published_version,
)
from procedures.texts import render_action_label, render_message
from procedures.workflow import (
    AlreadyWithdrawn,
    TransitionNotAllowed,
    WithdrawalNotAllowed,
    application_status_change,
    application_status_list,
    application_withdraw,
    notice_template_problems,
)
from staff.models import Role, StaffMembership

pytestmark = pytest.mark.django_db

PROCEDURE_NAME = "粗大ごみ収集申込"
# Answers that cannot appear in a notice by chance (the receipt number has no 4, nor the name).
ANSWERS = {"item": "other", "reason": "押し入れの奥の古い桐箪笥", "count": 4, "name": "佐賀花子"}


def make_application(*, line_user_id: str | None = None, version=None, **fields) -> Application:
    version = version or published_version(name=PROCEDURE_NAME)
    if line_user_id is not None:
        fields["line_user_id"] = line_user_id
    fields.setdefault("answers", dict(ANSWERS))
    return ApplicationFactory(version=version, **fields)


def status(application: Application, code: str) -> ApplicationStatus:
    return ApplicationStatus.objects.get(procedure=application.procedure, code=code)


def outbox_text(line_user_id: str) -> str:
    rows = OutboxMessage.objects.filter(line_user_id=line_user_id).values_list("payload", flat=True)
    return json.dumps(list(rows), ensure_ascii=False)


def reply(line_user_id: str, event: Event):
    return conversation_handle(line_user_id=line_user_id, event=event).messages


def say(line_user_id: str, text: str):
    return reply(line_user_id, Event(type="text", text=text))


# --------------------------------------------------------------------------
# Statuses of a procedure
# --------------------------------------------------------------------------


def test_a_new_procedure_gets_the_default_statuses_and_transitions():
    procedure = ProcedureFactory()
    statuses = list(procedure.statuses.order_by("order"))
    assert [s.label for s in statuses] == ["受付", "確認中", "修正依頼中", "完了", "却下", "取下げ"]
    assert [s.label for s in statuses if s.is_initial] == ["受付"]
    assert {s.label for s in statuses if s.is_final} == {"完了", "却下", "取下げ"}
    assert {s.label for s in statuses if s.allows_withdrawal} == {"受付", "確認中"}
    pairs = set(StatusTransition.objects.filter(procedure=procedure).values_list("from_status__code", "to_status__code"))
    assert pairs == set(DEFAULT_TRANSITIONS)
    for item in DEFAULT_STATUSES:  # every default template passes its own check
        assert notice_template_problems(item["notify_template"], procedure=procedure) == []


def test_demo_procedures_have_statuses_and_new_applications_start_in_the_initial_one():
    for result in load_demo():
        assert result.procedure.statuses.filter(is_initial=True, label="受付").exists()
    application = make_application()
    assert application.status.label == "受付"


def test_an_application_submitted_by_the_engine_starts_in_the_initial_status():
    version = published_version(name=PROCEDURE_NAME)
    user = user_id(11)
    for text in [version.procedure.keyword_list[0], "タンス", "2", "佐賀花子"]:
        messages = say(user, text)
    submit = next(a for a in messages[-1].actions if a.code == "action.submit")
    conversation_handle(line_user_id=user, event=submit.event)
    assert Application.objects.get(line_user_id=user).status.code == "received"


# --------------------------------------------------------------------------
# Staff changes and notices
# --------------------------------------------------------------------------


def test_allowed_change_is_recorded_and_notified_once_through_the_outbox_without_answers():
    staff = StaffUserFactory()
    application = make_application(receipt_number="WF-2026-000111")
    change = application_status_change(
        application=application, to_status=status(application, "reviewing"), actor=staff, note="書類を確認します"
    )
    application.refresh_from_db()
    assert application.status.code == "reviewing"
    assert (change.from_status.code, change.to_status.code, change.actor, change.via, change.note, change.notified) == (
        "received", "reviewing", staff, "staff", "書類を確認します", True
    )
    rows = list(OutboxMessage.objects.filter(line_user_id=application.line_user_id))
    assert len(rows) == 1 and rows[0].kind == OutboxMessage.Kind.PUSH and rows[0].retry_key
    text = outbox_text(application.line_user_id)
    assert "WF-2026-000111" in text and "確認中" in text and PROCEDURE_NAME in text
    for value in ANSWERS.values():
        assert str(value) not in text
    assert "書類を確認します" not in text  # the staff note stays inside

    # The same change again (a double click) is refused and sends nothing more.
    with pytest.raises(TransitionNotAllowed, match="すでに「確認中」です"):
        application_status_change(application=application, to_status=status(application, "reviewing"), actor=staff)
    assert OutboxMessage.objects.filter(line_user_id=application.line_user_id).count() == 1
    assert ApplicationStatusChange.objects.filter(application=application).count() == 1


def test_forbidden_change_is_refused_in_japanese_and_changes_nothing():
    staff = StaffUserFactory()
    application = make_application()
    application_status_change(application=application, to_status=status(application, "completed"), actor=staff)
    with pytest.raises(TransitionNotAllowed) as refused:
        application_status_change(application=application, to_status=status(application, "reviewing"), actor=staff)
    assert "「完了」から「確認中」には変更できません。" in refused.value.message
    other = make_application()
    with pytest.raises(TransitionNotAllowed, match="この手続きにはその状態がありません"):
        application_status_change(application=application, to_status=status(other, "reviewing"), actor=staff)
    application.refresh_from_db()
    assert application.status.code == "completed"
    assert ApplicationStatusChange.objects.filter(application=application).count() == 1
    assert OutboxMessage.objects.filter(line_user_id=application.line_user_id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_clicks_at_once_change_and_notify_once(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite serialises writers instead)")
    application = make_application()
    reviewing = status(application, "reviewing")
    staff = StaffUserFactory()
    real_notice = workflow._notice_queue

    def slow_notice(*args, **kwargs):
        time.sleep(0.3)  # hold the application's lock while the other click arrives
        return real_notice(*args, **kwargs)

    monkeypatch.setattr(workflow, "_notice_queue", slow_notice)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def click():
        try:
            start.wait(timeout=10)
            application_status_change(application=application, to_status=reviewing, actor=staff)
            outcomes.append("changed")
        except TransitionNotAllowed:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["changed", "refused"]
    assert ApplicationStatusChange.objects.filter(application=application).count() == 1
    assert OutboxMessage.objects.filter(line_user_id=application.line_user_id).count() == 1


def test_history_lists_every_change_in_order():
    staff = StaffUserFactory()
    application = make_application()
    for code in ("reviewing", "correction_requested", "reviewing", "completed"):
        application_status_change(application=application, to_status=status(application, code), actor=staff)
    history = list(
        ApplicationStatusChange.objects.filter(application=application)
        .order_by("created_at", "id")
        .values_list("from_status__code", "to_status__code")
    )
    assert history == [
        ("received", "reviewing"),
        ("reviewing", "correction_requested"),
        ("correction_requested", "reviewing"),
        ("reviewing", "completed"),
    ]


def test_a_transition_without_notice_or_an_empty_template_sends_nothing():
    application = make_application()
    StatusTransition.objects.filter(
        from_status=status(application, "received"), to_status=status(application, "reviewing")
    ).update(notify=False)
    change = application_status_change(application=application, to_status=status(application, "reviewing"), actor=None)
    assert (change.notified, change.via) == (False, "system")
    ApplicationStatus.objects.filter(pk=status(application, "completed").pk).update(notify_template="  ")
    assert not application_status_change(
        application=application, to_status=status(application, "completed"), actor=None
    ).notified
    assert not OutboxMessage.objects.exists()


def test_simulator_runs_get_no_push_but_a_test_application_of_a_line_user_does():
    staff = StaffUserFactory()
    simulated = make_application(line_user_id="sim-7", is_test=True)
    change = application_status_change(application=simulated, to_status=status(simulated, "reviewing"), actor=staff)
    assert change.notified is False
    assert not OutboxMessage.objects.exists()
    line_test = make_application(line_user_id=user_id(77), is_test=True)
    assert application_status_change(
        application=line_test, to_status=status(line_test, "reviewing"), actor=staff
    ).notified
    assert list(OutboxMessage.objects.values_list("line_user_id", flat=True)) == [user_id(77)]


def test_a_resident_who_blocked_the_account_gets_no_push():
    application = make_application()
    LineUser.objects.create(line_user_id=application.line_user_id, is_following=False)
    change = application_status_change(application=application, to_status=status(application, "reviewing"), actor=None)
    assert change.notified is False and not OutboxMessage.objects.exists()


def test_link_placeholder_and_english_aliases_are_filled():
    application = make_application(receipt_number="WF-2026-000222")
    reviewing = status(application, "reviewing")
    reviewing.notify_template = "{receipt_number} / {procedure} / {status} / ｛リンク｝"
    reviewing.notify_link = "https://www.city.example.jp/sodai"
    reviewing.full_clean()
    reviewing.save()
    application_status_change(application=application, to_status=reviewing, actor=None)
    payload = OutboxMessage.objects.get().payload
    assert payload == [
        {"type": "text", "text": f"WF-2026-000222 / {PROCEDURE_NAME} / 確認中 / https://www.city.example.jp/sodai"}
    ]


# --------------------------------------------------------------------------
# Notice templates
# --------------------------------------------------------------------------


def test_templates_refuse_anything_but_the_placeholders_and_name_the_answer_they_point_to():
    procedure = published_version(name=PROCEDURE_NAME).procedure
    assert notice_template_problems("受付番号 {受付番号}（{手続き名}）は {状態} です。", procedure=procedure) == []
    assert notice_template_problems("{receipt_number} {procedure} {status}", procedure=procedure) == []

    assert notice_template_problems("{氏名} 様", procedure=procedure) == [
        "「{氏名}」は使えません。使える差し込み項目：{受付番号} {手続き名} {状態} {リンク}"
    ]
    (problem,) = notice_template_problems("{name} 様", procedure=procedure)  # a step key
    assert "申請の回答（「お名前」）" in problem
    (problem,) = notice_template_problems("{お名前} 様", procedure=procedure)  # a step label
    assert "申請の回答（「お名前」）" in problem
    assert "申請の回答" in notice_template_problems("｛reason｝", procedure=procedure)[0]
    assert notice_template_problems("{fee}円", procedure=procedure)  # a computed value
    assert notice_template_problems("{answers[name]}", procedure=procedure)
    assert notice_template_problems("{受付番号", procedure=procedure)
    assert notice_template_problems("%(name)s 様", procedure=procedure)
    assert notice_template_problems("{{受付番号}}", procedure=procedure)
    assert "「お知らせのリンク」" in notice_template_problems("{リンク}", procedure=procedure)[0]
    assert notice_template_problems("{リンク}", procedure=procedure, link="https://example.jp/") == []


def test_a_status_with_an_answer_in_its_template_cannot_be_saved():
    application = make_application()
    reviewing = status(application, "reviewing")
    for template in ("{氏名} 様の申請を確認中です", "{name} 様", "{お名前} 様"):
        reviewing.notify_template = template
        with pytest.raises(ValidationError) as refused:
            reviewing.full_clean()
        assert "notify_template" in refused.value.message_dict


# --------------------------------------------------------------------------
# Residents: 申請状況 and withdrawal
# --------------------------------------------------------------------------


def test_status_list_shows_only_the_residents_own_applications():
    mine = user_id(1)
    first = make_application(line_user_id=mine)
    second = make_application(line_user_id=mine, version=first.version)
    theirs = make_application(line_user_id=user_id(2), version=first.version)
    someone_testing = make_application(line_user_id="sim-9", is_test=True, version=first.version)
    application_status_change(application=second, to_status=status(second, "completed"), actor=None)

    (message,) = say(mine, "申請状況")
    assert message.code == "status.list"
    listed = {item["receipt_number"]: item for item in message.params["applications"]}
    assert set(listed) == {first.receipt_number, second.receipt_number}
    assert listed[first.receipt_number]["status"] == "受付" and listed[first.receipt_number]["can_withdraw"]
    assert listed[second.receipt_number]["status"] == "完了" and not listed[second.receipt_number]["can_withdraw"]
    text = render_message(message)
    assert first.receipt_number in text and "状態：完了" in text and PROCEDURE_NAME in text
    assert theirs.receipt_number not in text and someone_testing.receipt_number not in text
    assert ANSWERS["reason"] not in text and ANSWERS["name"] not in text
    assert [render_action_label(action) for action in message.actions] == [
        f"{[i['receipt_number'] for i in message.params['applications']].index(first.receipt_number) + 1}番を取り下げる"
    ]

    # A simulator run sees its own test applications, never a resident's.
    simulated = {item["receipt_number"] for item in application_status_list(line_user_id="sim-9").applications}
    assert simulated == {someone_testing.receipt_number}
    assert say(user_id(3), "申請状況を確認")[0].code == "status.empty"


def test_withdrawal_in_an_early_status_after_confirming_and_a_second_tap_changes_nothing():
    resident = user_id(5)
    application = make_application(line_user_id=resident)
    (listing,) = say(resident, "申請状況")
    (confirm,) = reply(resident, listing.actions[0].event)
    assert confirm.code == "status.confirm_withdraw" and confirm.layout == "confirm"
    assert application.receipt_number in render_message(confirm)
    assert [render_action_label(a) for a in confirm.actions] == ["はい、取り下げます", "いいえ、取り下げません"]
    (kept,) = reply(resident, confirm.actions[1].event)
    assert kept.code == "status.withdraw_kept"
    application.refresh_from_db()
    assert application.status.code == "received"

    (done,) = reply(resident, confirm.actions[0].event)
    assert done.code == "status.withdrawn" and "取り下げました" in render_message(done)
    application.refresh_from_db()
    assert application.status.code == "withdrawn"
    change = ApplicationStatusChange.objects.get(application=application)
    assert (change.via, change.actor, change.notified) == ("resident", None, False)

    (again,) = reply(resident, confirm.actions[0].event)  # the old button, tapped twice
    assert again.code == "status.already_withdrawn"
    assert ApplicationStatusChange.objects.filter(application=application).count() == 1
    (late_list_tap,) = reply(resident, listing.actions[0].event)
    assert late_list_tap.code == "status.already_withdrawn"
    assert not OutboxMessage.objects.exists()  # answered in the conversation itself


def test_withdrawal_in_a_late_status_is_refused_with_a_clear_message():
    resident = user_id(6)
    application = make_application(line_user_id=resident)
    application_status_change(application=application, to_status=status(application, "correction_requested"), actor=None)
    with pytest.raises(WithdrawalNotAllowed) as refused:
        application_withdraw(application=application, line_user_id=resident)
    assert "現在の状態（修正依頼中）では LINE から取り下げできません" in refused.value.message
    (listing,) = say(resident, "申請状況")
    assert listing.actions == () and listing.layout == "text"
    forged = Event(type="command", name="status_withdraw_confirm", value=application.receipt_number)
    (message,) = reply(resident, forged)
    assert message.code == "status.withdraw_not_allowed"
    assert "担当課へお問い合わせください" in render_message(message)
    application.refresh_from_db()
    assert application.status.code == "correction_requested"


def test_nobody_withdraws_someone_elses_application():
    application = make_application(line_user_id=user_id(7))
    forged = Event(type="command", name="status_withdraw_confirm", value=application.receipt_number)
    assert reply(user_id(8), forged)[0].code == "status.not_found"
    with pytest.raises(WithdrawalNotAllowed):
        application_withdraw(application=application, line_user_id=user_id(8))
    application_withdraw(application=application, line_user_id=user_id(7))
    with pytest.raises(AlreadyWithdrawn):
        application_withdraw(application=application, line_user_id=user_id(7))
    application.refresh_from_db()
    assert ApplicationStatusChange.objects.filter(application=application).count() == 1


def test_status_words_leave_a_procedure_in_progress_as_it_was():
    version = published_version(name=PROCEDURE_NAME)
    resident = user_id(9)
    started = say(resident, version.procedure.keyword_list[0])
    assert started[-1].code == "question"
    messages = say(resident, "申請状況")
    assert [m.code for m in messages] == ["status.empty", "status.session_continues"]
    assert PROCEDURE_NAME in render_message(messages[-1])
    # The next answer goes on where the resident was.
    assert "個数" in render_message(say(resident, "タンス")[-1])


# --------------------------------------------------------------------------
# Over the fake LINE
# --------------------------------------------------------------------------


def quick_labels(messages: list[dict]) -> list[str]:
    return [item["action"]["label"] for item in messages[-1].get("quickReply", {}).get("items", [])]


def test_status_list_withdrawal_and_notice_over_the_fake_line(client, fake_line):
    resident = user_id(4242)
    application = make_application(line_user_id=resident, receipt_number="WF-2026-000333")
    phone = LinePhone(client, fake_line, resident)

    received = phone.say("申請状況")
    assert "受付番号：WF-2026-000333" in phone.texts() and "状態：受付" in phone.texts()
    assert quick_labels(received) == ["1番を取り下げる"]
    received = phone.tap("1番を取り下げる")
    assert received[-1]["type"] == "template" and received[-1]["template"]["type"] == "confirm"
    assert "WF-2026-000333" in received[-1]["template"]["text"]
    phone.tap("はい、取り下げます")
    assert "を取り下げました" in phone.texts()
    yes = phone.action_in_history("はい、取り下げます")
    phone.send(postback_event(resident, yes["data"], reply_token=phone.token()))
    assert "すでに取り下げられています" in phone.texts()
    assert ApplicationStatusChange.objects.filter(application=application).count() == 1

    # A staff change reaches the resident by push, with the receipt number and the status only.
    other = make_application(line_user_id=resident, version=application.version, receipt_number="WF-2026-000555")
    application_status_change(application=other, to_status=status(other, "reviewing"), actor=StaffUserFactory())
    messaging_services.outbox_send()
    notice = fake_line.messages_sent_to(resident)[-1]
    assert notice["type"] == "text" and "WF-2026-000555" in notice["text"] and "確認中" in notice["text"]
    for value in ANSWERS.values():
        assert str(value) not in notice["text"]
    everything = json.dumps(fake_line.messages_sent_to(resident), ensure_ascii=False)  # postback data has digits
    assert ANSWERS["reason"] not in everything and ANSWERS["name"] not in everything
    assert OutboxMessage.objects.filter(line_user_id=resident, kind=OutboxMessage.Kind.PUSH).get().status == "sent"
    assert fake_line.invalid_calls() == []


# --------------------------------------------------------------------------
# Admin
# --------------------------------------------------------------------------


def _procedure_post(procedure, **changes) -> dict:
    data = {
        "name": procedure.name,
        "description": procedure.description,
        "keywords": procedure.keywords,
        "receipt_prefix": procedure.receipt_prefix,
        "department": procedure.department_id or "",
        "_save": "保存",
    }
    statuses = list(procedure.statuses.order_by("order", "id"))
    data.update({"statuses-TOTAL_FORMS": len(statuses), "statuses-INITIAL_FORMS": len(statuses),
                 "statuses-MIN_NUM_FORMS": 0, "statuses-MAX_NUM_FORMS": 1000})
    for index, item in enumerate(statuses):
        prefix = f"statuses-{index}-"
        data.update({prefix + "id": item.pk, prefix + "procedure": procedure.pk, prefix + "label": item.label,
                     prefix + "order": item.order, prefix + "notify_template": item.notify_template,
                     prefix + "notify_link": item.notify_link})
        for flag in ("is_initial", "is_final", "allows_withdrawal"):
            if getattr(item, flag):
                data[prefix + flag] = "on"
        for field, value in changes.get(item.code, {}).items():
            if value is False:
                data.pop(prefix + field, None)
            else:
                data[prefix + field] = value
    transitions = list(StatusTransition.objects.filter(procedure=procedure))
    data.update({"status_transitions-TOTAL_FORMS": len(transitions), "status_transitions-INITIAL_FORMS": len(transitions),
                 "status_transitions-MIN_NUM_FORMS": 0, "status_transitions-MAX_NUM_FORMS": 1000})
    for index, item in enumerate(transitions):
        prefix = f"status_transitions-{index}-"
        data.update({prefix + "id": item.pk, prefix + "procedure": procedure.pk,
                     prefix + "from_status": item.from_status_id, prefix + "to_status": item.to_status_id})
        if item.notify:
            data[prefix + "notify"] = "on"
    return data


def test_statuses_are_edited_on_the_procedure_page_and_answers_in_templates_refused(admin_client):
    procedure = published_version(name=PROCEDURE_NAME).procedure
    url = reverse("admin:procedures_procedure_change", args=[procedure.pk])
    page = admin_client.get(url).content.decode()
    assert "申請の状態" in page and "状態の変更ルール" in page and "修正依頼中" in page

    response = admin_client.post(url, _procedure_post(procedure, reviewing={"notify_template": "{氏名} 様"}))
    assert response.status_code == 200
    assert "「{氏名}」は使えません。" in response.content.decode()
    response = admin_client.post(url, _procedure_post(procedure, reviewing={"notify_template": "{name} 様"}))
    assert "申請の回答（「お名前」）を指しています" in response.content.decode()
    assert status(make_application(version=procedure.current_version), "reviewing").notify_template.startswith("「{手続き名}」")

    response = admin_client.post(url, _procedure_post(procedure, reviewing={"is_initial": "on"}))
    assert "「最初の状態」は1つだけ選んでください" in response.content.decode()

    template = "{受付番号} は {状態} になりました。"
    response = admin_client.post(
        url, _procedure_post(procedure, reviewing={"notify_template": template, "label": "審査中"})
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    reviewing = procedure.statuses.get(code="reviewing")
    assert (reviewing.label, reviewing.notify_template) == ("審査中", template)


def test_a_status_in_use_cannot_be_deleted_from_the_procedure_page(admin_client):
    application = make_application()
    procedure = application.procedure
    data = _procedure_post(procedure)
    index = list(procedure.statuses.order_by("order", "id")).index(application.status)
    data[f"statuses-{index}-DELETE"] = "on"
    response = admin_client.post(reverse("admin:procedures_procedure_change", args=[procedure.pk]), data)
    (statuses,) = [item.formset for item in response.context["inline_admin_formsets"] if item.formset.prefix == "statuses"]
    refusal = " ".join(statuses.non_form_errors())
    assert "受付" in refusal and "削除" in refusal  # Django's own protection, or ours when only history uses it
    assert procedure.statuses.count() == len(DEFAULT_STATUSES)


def test_staff_move_an_application_on_its_page_and_see_the_history(admin_client, admin_user):
    application = make_application()
    url = reverse("admin:procedures_application_change", args=[application.pk])
    page = admin_client.get(url).content.decode()
    status_url = reverse("admin:procedures_application_status", args=[application.pk])
    assert f'formaction="{status_url}"' in page
    assert "「確認中」にする（LINE でお知らせ）" in page and "（変更はまだありません）" in page

    reviewing = status(application, "reviewing")
    response = admin_client.post(status_url, {"to_status": reviewing.pk, "status_note": "電話で確認"})
    assert response.status_code == 302 and response.url == url
    assert "状態を「確認中」に変更しました。住民に LINE でお知らせを送ります。" in [
        str(m) for m in get_messages(response.wsgi_request)
    ]
    application.refresh_from_db()
    assert application.status == reviewing
    change = ApplicationStatusChange.objects.get(application=application)
    assert (change.actor, change.note) == (admin_user, "電話で確認")

    response = admin_client.post(status_url, {"to_status": reviewing.pk})  # the same button again
    assert "この申請はすでに「確認中」です。" in [str(m) for m in get_messages(response.wsgi_request)]
    assert OutboxMessage.objects.filter(line_user_id=application.line_user_id).count() == 1

    page = admin_client.get(url).content.decode()
    assert "電話で確認" in page and "「完了」にする" in page and "「確認中」にする" not in page
    assert admin_client.get(status_url).status_code == 405

    listing = admin_client.get(reverse("admin:procedures_application_changelist"), {"status": "reviewing"})
    assert application.receipt_number in listing.content.decode()
    listing = admin_client.get(reverse("admin:procedures_application_changelist"), {"status": "completed"})
    assert application.receipt_number not in listing.content.decode()


def test_the_buttons_post_with_the_pages_own_csrf_token(admin_user):
    application = make_application()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    page = browser.get(reverse("admin:procedures_application_change", args=[application.pk])).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    status_url = reverse("admin:procedures_application_status", args=[application.pk])
    reviewing = status(application, "reviewing")
    assert browser.post(status_url, {"to_status": reviewing.pk}).status_code == 403  # no token: refused
    response = browser.post(status_url, {"to_status": reviewing.pk, "status_note": "", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    application.refresh_from_db()
    assert application.status == reviewing


def test_a_viewer_sees_the_status_but_cannot_change_it(client):
    department = DepartmentFactory()
    application = make_application(version=published_version(name=PROCEDURE_NAME, department=department))
    viewer = StaffUserFactory(is_superuser=False)
    StaffMembership.objects.create(user=viewer, department=department, role=Role.DEPARTMENT_VIEWER)
    client.force_login(viewer)
    page = client.get(reverse("admin:procedures_application_change", args=[application.pk])).content.decode()
    assert "受付" in page and "formaction" not in page
    status_url = reverse("admin:procedures_application_status", args=[application.pk])
    assert client.post(status_url, {"to_status": status(application, "reviewing").pk}).status_code == 403
    outsider = StaffUserFactory(is_superuser=False)
    StaffMembership.objects.create(user=outsider, department=DepartmentFactory(), role=Role.DEPARTMENT_STAFF)
    client.force_login(outsider)
    assert client.post(status_url, {"to_status": status(application, "reviewing").pk}).status_code == 404
    application.refresh_from_db()
    assert application.status.code == "received"


# --------------------------------------------------------------------------
# Migrations: add nullable -> fill -> constrain
# --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_migrations_give_existing_applications_their_procedures_initial_status():
    before = [("procedures", "0002_application_status_add")]
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Procedure = old.get_model("procedures", "Procedure")
    Version = old.get_model("procedures", "ProcedureVersion")
    OldApplication = old.get_model("procedures", "Application")
    OldStatus = old.get_model("procedures", "ApplicationStatus")
    plain = Procedure.objects.create(name="旧手続き", receipt_prefix="OLD")
    custom = Procedure.objects.create(name="独自の状態の手続き", receipt_prefix="OWN")
    OldStatus.objects.create(procedure=custom, code="new", label="新規", order=1, is_initial=True)
    applications = []
    for number, procedure in enumerate([plain, plain, custom], start=1):
        version = Version.objects.get_or_create(procedure=procedure, number=1, defaults={"status": "published"})[0]
        applications.append(
            OldApplication.objects.create(
                procedure=procedure, version=version, receipt_number=f"OLD-2025-{number:06d}",
                line_user_id=user_id(number), submission_key=f"s{number}", submitted_at="2025-04-01T09:00:00+09:00",
            ).pk
        )
    assert OldApplication.objects.filter(status__isnull=True).count() == 3

    executor = MigrationExecutor(connection)
    executor.migrate(leaves)

    first, second, third = (Application.objects.select_related("status").get(pk=pk) for pk in applications)
    assert first.status.code == second.status.code == "received"
    assert ApplicationStatus.objects.filter(procedure_id=plain.pk).count() == len(DEFAULT_STATUSES)
    assert StatusTransition.objects.filter(procedure_id=plain.pk).count() == len(DEFAULT_TRANSITIONS)
    assert (third.status.code, third.status.label) == ("new", "新規")
    assert ApplicationStatus.objects.filter(procedure_id=custom.pk).count() == 1
    field = Application._meta.get_field("status")
    assert not field.null
