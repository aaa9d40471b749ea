"""The staff inbox: filters, answer columns, assignment, 要対応, bulk actions, timeline, 管理項目, print page.

Department A (環境課) runs 粗大ごみ; department B (福祉課) has its own staff. Staff of A may process,
a viewer of A may only look, staff of B belong elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from audit import actions as audit_actions
from audit.models import AuditEntry
from procedures import exports
from procedures.engine.types import Event, Submit
from procedures.models import Application, ApplicationStatus, Procedure, StaffField
from procedures.services import (
    InboxRefused,
    application_needs_action_clear,
    application_needs_action_set,
    application_staff_values_update,
    application_status_change_by_staff,
    application_submit,
)
from procedures.tests.factories import (
    ApplicationFactory,
    CompletionStepFactory,
    ConfirmationStepFactory,
    DepartmentFactory,
    ImageStepFactory,
    ProcedureFactory,
    ProcedureVersionFactory,
    ShortTextStepFactory,
    SingleChoiceStepFactory,
    StaffUserFactory,
    published_version,
)
from procedures.texts import render_message
from procedures.timeline import application_timeline
from procedures.workflow import notice_render, resident_status_reply
from staff.models import Role, StaffMembership

JST = ZoneInfo("Asia/Tokyo")
NAME = "山田花子"
MASK = "●●●●"
FEE_MEMO = "窓口で現金受領-秘密のメモ"
LIST_URL = reverse("admin:procedures_application_changelist")


@dataclass
class Inbox:
    procedure: Procedure
    other_procedure: Procedure
    first: Application
    second: Application
    users: dict
    clients: dict


def _member(username: str, role: str, department) -> tuple:
    user = StaffUserFactory(username=username, is_superuser=False)
    StaffMembership.objects.create(user=user, role=role, department=department)
    client = Client()
    client.force_login(user)
    return user, client


@pytest.fixture
def inbox(db):
    department_a = DepartmentFactory(name="環境課", code="env")
    department_b = DepartmentFactory(name="福祉課", code="welfare")
    draft = ProcedureVersionFactory(procedure=ProcedureFactory(
        name="粗大ごみ", department=department_a, receipt_prefix="SODAI"))
    SingleChoiceStepFactory(version=draft, key="item", label="品目", choices=[("tansu", "タンス"), ("bed", "ベッド")])
    ShortTextStepFactory(version=draft, key="name", label="お名前", sensitive=True)
    ImageStepFactory(version=draft, key="photo", label="品物の写真")
    ConfirmationStepFactory(version=draft, key="confirm")
    CompletionStepFactory(version=draft, key="done")
    version = published_version(draft)
    procedure = Procedure.objects.get(pk=version.procedure_id)
    other = published_version(department=department_a, receipt_prefix="OTHER", name="犬の登録")
    answers = {"item": "tansu", "name": NAME, "photo": {"ref": "x.png", "content_type": "image/png", "size": 3}}
    first = ApplicationFactory(version=version, receipt_number="SODAI-2026-000001", answers=answers,
                               needs_action=True, line_user_id="U" + "1" * 32,
                               submitted_at=datetime(2026, 4, 1, 9, 0, tzinfo=JST))
    second = ApplicationFactory(version=version, receipt_number="SODAI-2026-000002", answers={"item": "bed"},
                                submitted_at=datetime(2026, 4, 20, 9, 0, tzinfo=JST))
    users, clients = {}, {}
    for name, role, department in (
        ("staff_a", Role.DEPARTMENT_STAFF, department_a),
        ("colleague_a", Role.DEPARTMENT_STAFF, department_a),
        ("viewer_a", Role.DEPARTMENT_VIEWER, department_a),
        ("staff_b", Role.DEPARTMENT_STAFF, department_b),
    ):
        users[name], clients[name] = _member(name, role, department)
    return Inbox(procedure, other.procedure, first, second, users, clients)


def _page(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _change_url(application) -> str:
    return reverse("admin:procedures_application_change", args=[application.pk])


def _url(name: str, application) -> str:
    return reverse(f"admin:procedures_application_{name}", args=[application.pk])


# --------------------------------------------------------------------------
# 要対応 on submission, and the services other parts call
# --------------------------------------------------------------------------


def test_a_new_application_needs_action_but_a_test_application_does_not(inbox):
    version = inbox.procedure.current_version
    submit = Submit(procedure_id=inbox.procedure.pk, version_id=version.pk, submission_key="k1",
                    answers={"item": "tansu"}, computed={})
    with time_machine.travel(datetime(2027, 1, 5, 9, 0, tzinfo=JST)):
        real = application_submit(submit=submit, line_user_id="U" + "2" * 32)
        test = application_submit(submit=submit, line_user_id="sim-1", is_test=True)
    assert real.needs_action is True
    assert test.needs_action is False


def test_needs_action_set_and_clear_are_recorded_with_a_reason(inbox):
    application = inbox.second
    assert application_needs_action_set(application=application, reason="message") is True
    assert application_needs_action_set(application=application, reason="message") is False  # already
    assert Application.objects.get(pk=application.pk).needs_action is True
    assert application_needs_action_clear(application=application, actor=inbox.users["staff_a"]) is True
    assert Application.objects.get(pk=application.pk).needs_action is False
    details = [entry.details for entry in AuditEntry.objects.filter(action=audit_actions.APPLICATION_NEEDS_ACTION)]
    assert [(d["needs_action"], d["reason"]) for d in details] == [(False, "handled"), (True, "message")]
    with pytest.raises(ValueError):
        application_needs_action_set(application=application, reason="住民が何か言った")


def test_viewer_cannot_mark_an_application_handled(inbox):
    with pytest.raises(InboxRefused):
        application_needs_action_clear(application=inbox.first, actor=inbox.users["viewer_a"])
    response = inbox.clients["viewer_a"].post(_url("handled", inbox.first))
    assert response.status_code == 403
    assert Application.objects.get(pk=inbox.first.pk).needs_action is True


def test_staff_marks_an_application_handled_from_its_page(inbox):
    page = _page(inbox.clients["staff_a"].get(_change_url(inbox.first)))
    assert "対応済みにする" in page
    response = inbox.clients["staff_a"].post(_url("handled", inbox.first))
    assert response.status_code == 302
    assert Application.objects.get(pk=inbox.first.pk).needs_action is False
    assert "対応済みにしました。" in _messages(response)


def test_a_status_change_by_staff_clears_needs_action(inbox):
    reviewing = ApplicationStatus.objects.get(procedure=inbox.procedure, code="reviewing")
    response = inbox.clients["staff_a"].post(_url("status", inbox.first), {"to_status": reviewing.pk})
    assert response.status_code == 302
    application = Application.objects.get(pk=inbox.first.pk)
    assert application.status_id == reviewing.pk
    assert application.needs_action is False


# --------------------------------------------------------------------------
# The list: filters, columns
# --------------------------------------------------------------------------


def _listed(response) -> set[str]:
    page = _page(response)
    return {number for number in ("SODAI-2026-000001", "SODAI-2026-000002") if number in page}


def test_list_filters_by_needs_action_assignee_and_procedure(inbox):
    client = inbox.clients["staff_a"]
    Application.objects.filter(pk=inbox.second.pk).update(assignee=inbox.users["colleague_a"])
    assert _listed(client.get(LIST_URL, {"needs_action__exact": "1"})) == {"SODAI-2026-000001"}
    assert _listed(client.get(LIST_URL, {"assignee": "none"})) == {"SODAI-2026-000001"}
    assert _listed(client.get(LIST_URL, {"assignee": "me"})) == set()
    assert _listed(client.get(LIST_URL, {"assignee": str(inbox.users["colleague_a"].pk)})) == {"SODAI-2026-000002"}
    assert _listed(client.get(LIST_URL, {"procedure__id__exact": inbox.other_procedure.pk})) == set()
    page = _page(client.get(LIST_URL))
    assert "要対応" in page and "colleague_a" in page  # the columns and the assignee choices


def test_assignee_choices_are_only_staff_who_may_process_in_the_users_scope(inbox):
    page = _page(inbox.clients["staff_a"].get(LIST_URL))
    assert "colleague_a" in page
    assert "staff_b" not in page  # another department
    assert "viewer_a" not in page  # may not process


def test_list_filters_by_a_submitted_date_range(inbox):
    client = inbox.clients["staff_a"]
    assert _listed(client.get(LIST_URL, {"submitted_from": "2026-04-01", "submitted_to": "2026-04-01"})) == {
        "SODAI-2026-000001"}
    assert _listed(client.get(LIST_URL, {"submitted_from": "2026/04/10"})) == {"SODAI-2026-000002"}
    assert _listed(client.get(LIST_URL, {"submitted_to": "2026-04-19"})) == {"SODAI-2026-000001"}


def test_a_bad_date_in_the_range_gets_a_clear_message_and_is_not_used(inbox):
    response = inbox.clients["staff_a"].get(LIST_URL, {"submitted_from": "4月1日ごろ"})
    assert _listed(response) == {"SODAI-2026-000001", "SODAI-2026-000002"}
    text = " ".join(_messages(response))
    assert "「4月1日ごろ」は日付として読めません" in text and "2026-04-01" in text

    response = inbox.clients["staff_a"].get(LIST_URL, {"submitted_from": "2026-05-01", "submitted_to": "2026-04-01"})
    assert _listed(response) == {"SODAI-2026-000001", "SODAI-2026-000002"}
    assert any("終わりの日付を始まりの日付と同じか後に" in message for message in _messages(response))


def test_chosen_answer_columns_show_for_one_procedure_with_sensitive_ones_masked(inbox):
    inbox.procedure.list_columns = ["item", "name", "photo"]
    inbox.procedure.save()
    client = inbox.clients["staff_a"]
    page = _page(client.get(LIST_URL, {"procedure__id__exact": inbox.procedure.pk}))
    assert "品目" in page and "タンス" in page and "ベッド" in page
    assert "お名前" in page and MASK in page and NAME not in page
    assert "画像あり" in page
    unfiltered = _page(client.get(LIST_URL))
    assert "タンス" not in unfiltered and "画像あり" not in unfiltered


def test_staff_choose_the_answer_columns_in_the_procedure_admin(inbox):
    admin_client = Client()
    admin_client.force_login(StaffUserFactory(username="root"))
    url = reverse("admin:procedures_procedure_change", args=[inbox.procedure.pk])
    page = _page(admin_client.get(url))
    assert 'name="list_columns"' in page and "お名前" in page and "確認" not in page.split("list_columns")[1][:300]
    from procedures.admin import list_columns_field

    field = list_columns_field(inbox.procedure)
    assert [key for key, _label in field.choices] == ["item", "name", "photo"]
    assert field.clean(["item"]) == ["item"]


# --------------------------------------------------------------------------
# Assignment
# --------------------------------------------------------------------------


def test_staff_assign_themselves_and_a_colleague_and_it_is_audited(inbox):
    client, application = inbox.clients["staff_a"], inbox.first
    response = client.post(_url("assign", application), {"assign": "me"})
    assert response.status_code == 302
    assert Application.objects.get(pk=application.pk).assignee == inbox.users["staff_a"]
    colleague = inbox.users["colleague_a"]
    client.post(_url("assign", application), {"assign": "selected", "assignee": colleague.pk})
    application.refresh_from_db()
    assert application.assignee == colleague
    assert application.needs_action is True  # assigning clears nothing else
    entries = AuditEntry.objects.filter(action=audit_actions.APPLICATION_ASSIGN).order_by("id")
    assert [(e.details["from"], e.details["to"]) for e in entries] == [
        (None, inbox.users["staff_a"].pk), (inbox.users["staff_a"].pk, colleague.pk)]
    client.post(_url("assign", application), {"assign": "none"})
    assert Application.objects.get(pk=application.pk).assignee is None


def test_staff_of_another_department_cannot_be_made_the_assignee(inbox):
    response = inbox.clients["staff_a"].post(
        _url("assign", inbox.first), {"assign": "selected", "assignee": inbox.users["staff_b"].pk})
    assert Application.objects.get(pk=inbox.first.pk).assignee is None
    assert any("staff_b さんはこの申請を処理できないため" in message for message in _messages(response))
    response = inbox.clients["staff_a"].post(
        _url("assign", inbox.first), {"assign": "selected", "assignee": inbox.users["viewer_a"].pk})
    assert Application.objects.get(pk=inbox.first.pk).assignee is None


def test_viewer_cannot_assign_an_application(inbox):
    response = inbox.clients["viewer_a"].post(_url("assign", inbox.first), {"assign": "me"})
    assert response.status_code == 403
    assert "この職員を担当にする" not in _page(inbox.clients["viewer_a"].get(_change_url(inbox.first)))
    assert Application.objects.get(pk=inbox.first.pk).assignee is None


def test_staff_of_another_department_guessing_the_id_finds_nothing(inbox):
    client = inbox.clients["staff_b"]
    for name in ("assign", "handled", "staff_fields", "status"):
        assert client.post(_url(name, inbox.first), {"assign": "me"}).status_code == 404
    assert client.get(_url("print", inbox.first)).status_code == 404
    application = Application.objects.get(pk=inbox.first.pk)
    assert application.assignee is None and application.needs_action is True


def test_an_unreadable_assignee_gets_a_message(inbox):
    response = inbox.clients["staff_a"].post(_url("assign", inbox.first), {"assign": "selected", "assignee": "abc"})
    assert "担当にする職員を選んでください。" in _messages(response)


# --------------------------------------------------------------------------
# Bulk actions
# --------------------------------------------------------------------------


def _bulk(client, action: str, applications, **extra):
    data = {"action": action, "_selected_action": [a.pk for a in applications], "index": "0", **extra}
    return client.post(LIST_URL, data)


def test_bulk_assign_to_me_and_mark_handled(inbox):
    client = inbox.clients["staff_a"]
    _bulk(client, "assign_to_me", [inbox.first, inbox.second])
    assert set(Application.objects.values_list("assignee__username", flat=True)) == {"staff_a"}
    assert AuditEntry.objects.filter(action=audit_actions.APPLICATION_ASSIGN).count() == 2
    _bulk(client, "mark_handled", [inbox.first, inbox.second])
    assert not Application.objects.filter(needs_action=True).exists()


def test_bulk_assign_to_a_chosen_colleague_and_refusal_of_another_departments_staff(inbox):
    client = inbox.clients["staff_a"]
    _bulk(client, "assign_to_chosen", [inbox.first], assignee=str(inbox.users["colleague_a"].pk))
    assert Application.objects.get(pk=inbox.first.pk).assignee == inbox.users["colleague_a"]
    response = _bulk(client, "assign_to_chosen", [inbox.second], assignee=str(inbox.users["staff_b"].pk))
    assert Application.objects.get(pk=inbox.second.pk).assignee is None
    assert any("SODAI-2026-000002：行いませんでした。" in message for message in _messages(response))
    response = _bulk(client, "assign_to_chosen", [inbox.second])
    assert any("「担当にする職員」で職員を選んでから" in message for message in _messages(response))


def test_bulk_status_change_reports_what_was_done_and_what_was_refused(inbox):
    completed = ApplicationStatus.objects.get(procedure=inbox.procedure, code="completed")
    Application.objects.filter(pk=inbox.second.pk).update(status=completed)
    response = _bulk(inbox.clients["staff_a"], "change_status", [inbox.first, inbox.second], to_status="reviewing")
    assert Application.objects.get(pk=inbox.first.pk).status.code == "reviewing"
    assert Application.objects.get(pk=inbox.second.pk).status.code == "completed"
    messages = _messages(response)
    assert any("状態を変更しました：SODAI-2026-000001" in message for message in messages)
    assert any(
        "SODAI-2026-000002：行いませんでした。" in message and "「完了」から「確認中」には変更できません" in message
        for message in messages
    )


def test_bulk_actions_are_not_offered_to_a_viewer_and_do_nothing(inbox):
    client = inbox.clients["viewer_a"]
    assert "assign_to_me" not in _page(client.get(LIST_URL))
    _bulk(client, "assign_to_me", [inbox.first])
    _bulk(client, "mark_handled", [inbox.first])
    application = Application.objects.get(pk=inbox.first.pk)
    assert application.assignee is None and application.needs_action is True


def test_bulk_action_including_an_application_the_user_cannot_process_does_nothing(inbox):
    department_b = StaffMembership.objects.get(user=inbox.users["staff_b"]).department
    department_b_app = ApplicationFactory(
        version=published_version(department=department_b, receipt_prefix="WELF"),
        receipt_number="WELF-2026-000001",
    )
    boss = StaffUserFactory(username="boss", is_superuser=False)
    StaffMembership.objects.create(user=boss, role=Role.DEPARTMENT_STAFF, department=inbox.procedure.department)
    StaffMembership.objects.create(user=boss, role=Role.DEPARTMENT_VIEWER,
                                   department=department_b_app.procedure.department)
    client = Client()
    client.force_login(boss)
    response = _bulk(client, "assign_to_me", [inbox.first, department_b_app])
    assert not Application.objects.filter(assignee=boss).exists()
    assert any("権限のない対象が含まれている" in message for message in _messages(response))


# --------------------------------------------------------------------------
# Detail page: other applications, timeline
# --------------------------------------------------------------------------


def test_detail_page_lists_the_residents_other_applications_the_viewer_may_see(inbox):
    line_user_id = inbox.first.line_user_id
    same_department = ApplicationFactory(version=inbox.other_procedure.current_version,
                                         receipt_number="OTHER-2026-000001", line_user_id=line_user_id)
    elsewhere = ApplicationFactory(
        version=published_version(department=DepartmentFactory(name="税務課", code="tax"), receipt_prefix="TAX"),
        receipt_number="TAX-2026-000001", line_user_id=line_user_id)
    page = _page(inbox.clients["staff_a"].get(_change_url(inbox.first)))
    assert _change_url(same_department) in page and "犬の登録" in page
    assert elsewhere.receipt_number not in page
    assert "SODAI-2026-000002" not in page  # another resident


def test_timeline_has_everything_that_happened_in_order(inbox):
    staff = inbox.users["staff_a"]
    application = inbox.first
    StaffField.objects.create(procedure=inbox.procedure, key="fee_received_on", label="手数料受領日",
                              kind=StaffField.Kind.DATE)
    client = inbox.clients["staff_a"]
    start = datetime(2026, 4, 2, 10, 0, tzinfo=JST)
    with time_machine.travel(start, tick=False) as clock:
        client.get(_change_url(application))
        clock.shift(60)
        client.post(_url("assign", application), {"assign": "me"})
        clock.shift(60)
        client.post(_url("staff_fields", application), {"sf-fee_received_on": "2026-04-02"})
        clock.shift(60)
        reviewing = ApplicationStatus.objects.get(procedure=inbox.procedure, code="reviewing")
        application_status_change_by_staff(application=application, to_status=reviewing, actor=staff)
        clock.shift(60)
        application_needs_action_set(application=application, reason="message")
        clock.shift(60)
        page = _page(client.get(_change_url(application)))
    entries = application_timeline(Application.objects.get(pk=application.pk))
    assert [(entry.kind, entry.actor) for entry in entries] == [
        ("submitted", "住民"),
        ("view", "staff_a"),
        ("assign", "staff_a"),
        ("staff_fields", "staff_a"),
        ("status", "staff_a"),
        ("needs_action", "staff_a"),  # handled by the status change
        ("needs_action", "システム"),
        ("view", "staff_a"),
    ]
    texts = [entry.text for entry in entries]
    assert "担当：staff_a" in texts
    assert "手数料受領日" in texts and "2026-04-02" not in " ".join(texts)
    assert "「受付」→「確認中」" in texts[4]
    assert "要対応になりました（住民からのメッセージ）" in texts
    assert "経過" in page and "要対応になりました（住民からのメッセージ）" in page


def test_timeline_sources_can_be_extended(inbox, monkeypatch):
    from procedures import timeline

    extra = timeline.TimelineEntry(datetime(2026, 4, 1, 8, 0, tzinfo=JST), "message", "メッセージ", "住民", "")
    monkeypatch.setattr(timeline, "SOURCES", [*timeline.SOURCES, lambda application: [extra]])
    assert timeline.application_timeline(inbox.first)[0] == extra


# --------------------------------------------------------------------------
# 管理項目 (staff-only fields)
# --------------------------------------------------------------------------


@pytest.fixture
def staff_fields(inbox):
    procedure = inbox.procedure
    return {
        "memo": StaffField.objects.create(procedure=procedure, key="memo", label="内部メモ", kind=StaffField.Kind.LONG_TEXT, order=1),
        "fee_on": StaffField.objects.create(procedure=procedure, key="fee_on", label="手数料受領日", kind=StaffField.Kind.DATE, order=2),
        "amount": StaffField.objects.create(procedure=procedure, key="amount", label="受領額", kind=StaffField.Kind.NUMBER, order=3),
        "paid": StaffField.objects.create(procedure=procedure, key="paid", label="支払済み", kind=StaffField.Kind.YES_NO, order=4),
        "place": StaffField.objects.create(procedure=procedure, key="place", label="受領場所", kind=StaffField.Kind.CHOICE,
                                           choices="窓口\n郵送", order=5),
        "clerk": StaffField.objects.create(procedure=procedure, key="clerk", label="受付者", kind=StaffField.Kind.TEXT, order=6),
    }


def test_staff_fields_are_saved_per_kind_and_audited_without_values(inbox, staff_fields):
    response = inbox.clients["staff_a"].post(_url("staff_fields", inbox.first), {
        "sf-memo": FEE_MEMO, "sf-fee_on": "2026/04/02",
        "sf-amount": "１，２００", "sf-paid": "yes", "sf-place": "窓口", "sf-clerk": "",
    })
    assert response.status_code == 302
    assert "管理項目を保存しました。" in _messages(response)
    values = Application.objects.get(pk=inbox.first.pk).staff_values
    assert values == {"memo": FEE_MEMO, "fee_on": "2026-04-02", "amount": "1200", "paid": True, "place": "窓口"}
    entry = AuditEntry.objects.get(action=audit_actions.APPLICATION_STAFF_FIELDS)
    assert sorted(entry.details["keys"]) == ["amount", "fee_on", "memo", "paid", "place"]
    assert FEE_MEMO not in str(entry.details) and "1200" not in str(entry.details)
    page = _page(inbox.clients["staff_a"].get(_change_url(inbox.first)))
    assert FEE_MEMO in page and 'value="2026-04-02"' in page


def test_bad_staff_field_values_get_clear_messages_and_nothing_is_saved(inbox, staff_fields):
    response = inbox.clients["staff_a"].post(_url("staff_fields", inbox.first), {
        "sf-memo": "保存されないメモ", "sf-fee_on": "4月2日", "sf-amount": "千二百", "sf-paid": "maybe",
        "sf-place": "電話", "sf-clerk": "あ" * 201,
    })
    messages = _messages(response)
    assert "管理項目は保存していません。次の点を直してください。" in messages
    assert any(m.startswith("「手数料受領日」：") and "年-月-日" in m for m in messages)
    assert any(m.startswith("「受領額」：") and "半角数字" in m for m in messages)
    assert any(m.startswith("「支払済み」：") for m in messages)
    assert any(m.startswith("「受領場所」：") and "選択肢から" in m for m in messages)
    assert any(m.startswith("「受付者」：") and "200文字以内" in m for m in messages)
    assert Application.objects.get(pk=inbox.first.pk).staff_values == {}
    assert not AuditEntry.objects.filter(action=audit_actions.APPLICATION_STAFF_FIELDS).exists()
    with pytest.raises(InboxRefused) as refused:
        application_staff_values_update(application=inbox.first, values={"nope": "1"}, actor=inbox.users["staff_a"])
    assert "この手続きにない管理項目です：nope" in refused.value.messages


def test_viewer_sees_staff_fields_but_cannot_change_them(inbox, staff_fields):
    application_staff_values_update(application=inbox.first, values={"memo": FEE_MEMO}, actor=inbox.users["staff_a"])
    client = inbox.clients["viewer_a"]
    page = _page(client.get(_change_url(inbox.first)))
    assert FEE_MEMO in page and "管理項目を保存する" not in page
    assert client.post(_url("staff_fields", inbox.first), {"sf-memo": "改ざん"}).status_code == 403
    assert Application.objects.get(pk=inbox.first.pk).staff_values == {"memo": FEE_MEMO}


def test_staff_field_key_cannot_change_and_choice_fields_need_options(inbox):
    from procedures.admin import StaffFieldForm

    field = StaffField.objects.create(procedure=inbox.procedure, key="memo", label="メモ")
    form = StaffFieldForm(instance=field)
    assert form.fields["key"].disabled
    choice = StaffField(procedure=inbox.procedure, key="place", label="場所", kind=StaffField.Kind.CHOICE)
    with pytest.raises(Exception) as error:
        choice.full_clean()
    assert "選択肢を1行に1つ" in str(error.value)


def test_residents_never_see_staff_fields(inbox, staff_fields):
    application_staff_values_update(application=inbox.first, values={"memo": FEE_MEMO, "clerk": "受付者X"},
                                    actor=inbox.users["staff_a"])
    application = Application.objects.get(pk=inbox.first.pk)
    reply = resident_status_reply(line_user_id=application.line_user_id, event=Event(type="text", text="申請状況"),
                                  state={})
    shown = "\n".join(render_message(message) for message in reply)
    assert application.receipt_number in shown
    assert FEE_MEMO not in shown and "受付者X" not in shown and "内部メモ" not in shown
    status = ApplicationStatus.objects.get(procedure=inbox.procedure, code="reviewing")
    notice = notice_render(template=status.notify_template + "{memo}{内部メモ}", application=application, status=status)
    assert FEE_MEMO not in notice and "受付者X" not in notice


def test_staff_fields_are_exported_after_the_answers_with_their_labels(inbox, staff_fields):
    application_staff_values_update(application=inbox.first, values={"memo": FEE_MEMO, "paid": "no"},
                                    actor=inbox.users["staff_a"])
    Application.objects.filter(pk=inbox.first.pk).update(assignee=inbox.users["staff_a"])
    export = exports.build_export(user=inbox.users["staff_a"], filters=exports.ExportFilters(procedure=inbox.procedure))
    rows = list(export.rows())
    header = rows[0]
    assert header[-6:] == ["内部メモ", "手数料受領日", "受領額", "支払済み", "受領場所", "受付者"]
    assert header.index("品目") < header.index("内部メモ")
    first = next(row for row in rows[1:] if row[0] == inbox.first.receipt_number)
    assert first[-6:] == [FEE_MEMO, "", "", "いいえ", "", ""]
    assert first[header.index("担当")] == "staff_a"


# --------------------------------------------------------------------------
# The print page
# --------------------------------------------------------------------------


def test_print_page_is_masked_not_cached_and_audited(inbox, staff_fields):
    application_staff_values_update(application=inbox.first, values={"memo": FEE_MEMO}, actor=inbox.users["staff_a"])
    response = inbox.clients["viewer_a"].get(_url("print", inbox.first))
    page = _page(response)
    assert "no-store" in response["Cache-Control"]
    assert "@media print" in page and "SODAI-2026-000001" in page and "粗大ごみ" in page and "第1版" in page
    assert MASK in page and NAME not in page
    assert FEE_MEMO in page and "状態の履歴" in page and "（未割当）" in page
    entry = AuditEntry.objects.get(action=audit_actions.APPLICATION_PRINT)
    assert entry.actor == inbox.users["viewer_a"] and entry.object_id == str(inbox.first.pk)


def test_print_page_refuses_other_departments_and_anonymous_visitors(inbox):
    assert inbox.clients["staff_b"].get(_url("print", inbox.first)).status_code == 404
    response = Client().get(_url("print", inbox.first))
    assert response.status_code == 302 and "login" in response["Location"]
    assert not AuditEntry.objects.filter(action=audit_actions.APPLICATION_PRINT).exists()
