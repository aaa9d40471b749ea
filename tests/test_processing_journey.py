"""Issue 5, done when: the demo bulky-garbage application goes from 受付 through 修正依頼 to 完了.

A resident applies over LINE as the resident simulator plays one (signed webhooks, the inbox, the
workers, the outbox, the fake LINE); a member of 環境衛生課 moves it along on the application's
admin pages and asks for a correction; the resident sees every notice in the simulator, corrects
the one answer and resubmits; the member completes it. Then an auditor of the department exports
the procedure's applications to CSV and reads in the audit log who touched the application.

Everything staff do goes through the pages' URLs; the database is read only to find ids and assert.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import re

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from audit import actions as audit_actions
from messaging import services as messaging_services
from messaging import simulator
from messaging.tests.test_webhook import LinePhone, line_channel, wakeups  # noqa: F401 (autouse fixtures)
from procedures.demo import load_demo
from procedures.models import Application, Procedure
from procedures.tests.factories import StaffUserFactory
from staff.models import Department, Role, StaffMembership

pytestmark = pytest.mark.django_db

NAME, ADDRESS, PHONE = "牛津 ゆかり", "小城市牛津町勝1234番地5", "0952-66-0000"
OLD_PLACE, NEW_PLACE = "玄関前の植え込みの横", "アパート1階の駐輪場の横"
ANSWERS = (NAME, ADDRESS, PHONE, OLD_PLACE, NEW_PLACE)
REASON = "出す場所が分かりにくいため、もう一度お知らせください。"
# A Monday morning in Tokyo: the pickup days (Tuesdays and Fridays) are weeks away from any holiday.
STAFF, AUDITOR = "kankyo-tanaka", "kansa-suzuki"
NOW = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))


def member(username: str, role: str, department: Department) -> Client:
    """A logged-in browser of a staff user holding only `role` in `department`."""
    user = StaffUserFactory(username=username, is_superuser=False)
    StaffMembership.objects.create(user=user, role=role, department=department)
    browser = Client()
    browser.force_login(user)
    return browser


class SimulatorScreen:
    """What the resident simulator page shows its player: it polls the fake LINE for the resident."""

    def __init__(self, browser: Client):
        self.browser, self.cursor = browser, 0
        self.shown: list[dict] = []

    def new_messages(self) -> list[dict]:
        messaging_services.outbox_send()  # the sender task the queue would run after a staff change
        response = self.browser.get(reverse("messaging:resident-simulator-poll"), {"after": self.cursor})
        assert response.status_code == 200, response.content.decode()
        data = response.json()
        self.cursor = data["next"]
        new = [item["message"] for item in data["messages"]]
        self.shown += new
        return new


def texts(messages: list[dict]) -> str:
    return "\n".join(m["text"] for m in messages if m["type"] == "text")


def assert_no_answers(messages: list[dict]) -> None:
    sent = json.dumps(messages, ensure_ascii=False)
    for answer in ANSWERS:
        assert answer not in sent


def resident_applies(phone: LinePhone) -> list[dict]:
    phone.follow()
    phone.say("粗大ごみ")
    phone.tap("はい")
    phone.tap("タンス（1,200円）")
    phone.tap("選択完了")
    phone.tap("日付を選ぶ")
    assert "粗大ごみを出す場所を入力してください。" in phone.texts()
    phone.say(OLD_PLACE)
    phone.say(NAME)
    phone.say(ADDRESS)
    phone.say(PHONE)
    phone.tap("スキップ")  # no photo
    phone.tap("スキップ")  # no location
    return phone.tap("この内容で申し込む")


def status_buttons(page: str) -> dict[str, str]:
    """The application page's status buttons: {target label: the to_status value it posts}."""
    return {
        html.unescape(label): value
        for value, label in re.findall(r'name="to_status" value="(\d+)">「([^」]+)」にする', page)
    }


def change_status(browser: Client, application: Application, label: str) -> str:
    page = browser.get(reverse("admin:procedures_application_change", args=[application.pk]))
    assert page.status_code == 200
    buttons = status_buttons(page.content.decode())
    assert label in buttons, buttons
    response = browser.post(
        reverse("admin:procedures_application_status", args=[application.pk]),
        {"to_status": buttons[label], "status_note": ""},
        follow=True,
    )
    assert response.status_code == 200
    return " ".join(str(message) for message in response.context["messages"])


def request_correction(browser: Client, application: Application) -> None:
    url = reverse("admin:procedures_application_correction", args=[application.pk])
    page = browser.get(url)
    assert page.status_code == 200
    form = page.context["form"]
    keys = {str(label): key for key, label in form.fields["keys"].choices}
    returns = {label: value for value, label in form.fields["return_status"].choices}
    response = browser.post(url, {
        "keys": [keys["粗大ごみを出す場所を入力してください。"]],
        "reason": REASON,
        "return_status": returns["確認中"],
    })
    assert response.status_code == 302, response.context["form"].errors


def csv_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    raw = b"".join(response.streaming_content)
    assert raw.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))


def test_a_bulky_garbage_application_goes_from_received_through_correction_to_completed_and_is_audited(
    client, fake_line
):
    with time_machine.travel(NOW, tick=False):
        load_demo()
        procedure = Procedure.objects.get(receipt_prefix="SODAI")
        kankyo = Department.objects.get(code="kankyo")
        assert procedure.department == kankyo
        office = member(STAFF, Role.DEPARTMENT_STAFF, kankyo)
        audit_office = member(AUDITOR, Role.AUDITOR, kankyo)

        # The resident is the simulator's: whoever plays it sees what the city sends in the page.
        player = StaffUserFactory(username="simulator-player", is_superuser=False)
        screen_browser = Client()
        screen_browser.force_login(player)
        screen = SimulatorScreen(screen_browser)
        phone = LinePhone(client, fake_line, simulator.resident_user_id(player, 0))

        # 受付: the completion reply names the receipt number, never the answers.
        resident_applies(phone)
        application = Application.objects.get()
        receipt = application.receipt_number
        assert receipt.startswith("SODAI-") and application.status.label == "受付"
        received = screen.new_messages()
        accepted = [m for m in received if m["type"] == "text" and f"受付番号：{receipt}" in m["text"]]
        assert accepted, texts(received)
        assert_no_answers(accepted)

        # 確認中, with its LINE notice.
        said = change_status(office, application, "確認中")
        assert "状態を「確認中」に変更しました。" in said and "LINE でお知らせ" in said
        notice = screen.new_messages()
        assert "の内容を確認しています" in texts(notice) and receipt in texts(notice)
        assert "現在の状態：確認中" in texts(notice)
        assert_no_answers(notice)

        # 修正依頼: the status notice, the reason and a 修正する button.
        request_correction(office, application)
        application.refresh_from_db()
        assert application.status.label == "修正依頼中"
        notice = screen.new_messages()
        assert "修正をお願いしたい点があります" in texts(notice) and REASON in texts(notice)
        assert receipt in texts(notice)
        assert_no_answers(notice)
        phone.last, phone.seen = notice, len(fake_line.messages_sent_to(phone.user))
        assert phone.action("修正する")["type"] == "postback"

        # The resident corrects only the marked answer and resubmits.
        phone.tap("修正する")
        assert "修正する項目：粗大ごみを出す場所を入力してください。" in phone.texts()
        assert "粗大ごみを出す場所を入力してください。" in phone.texts()
        summary = phone.say(NEW_PLACE)[-1]
        card = json.dumps(summary, ensure_ascii=False)
        assert summary["type"] == "flex" and NEW_PLACE in card
        assert NAME not in card and ADDRESS not in card and PHONE not in card  # sensitive: masked
        phone.tap("この内容で再提出する")
        assert "修正内容を受け付けました" in phone.texts()
        resubmitted = texts(screen.new_messages())
        assert "修正内容を受け付けました" in resubmitted and "現在の状態：確認中" in resubmitted
        application.refresh_from_db()
        assert application.answers["place"] == NEW_PLACE and application.status.label == "確認中"
        assert application.needs_action

        # 完了.
        said = change_status(office, application, "完了")
        assert "状態を「完了」に変更しました。" in said
        notice = screen.new_messages()
        assert "手続きが完了しました" in texts(notice) and receipt in texts(notice)
        assert "現在の状態：完了" in texts(notice)
        assert_no_answers(notice)

        # Everything the city sent this resident was valid for LINE, and the simulator showed all of it.
        assert fake_line.invalid_calls() == []
        everything = fake_line.messages_sent_to(phone.user)
        assert screen.shown == everything
        for secret in (NAME, ADDRESS, PHONE):
            assert secret not in json.dumps(everything, ensure_ascii=False)

        # The auditor exports the procedure's applications: one row, 完了, the corrected answer.
        export_url = reverse("procedures:application_export")
        assert audit_office.get(export_url).status_code == 200
        rows = csv_rows(audit_office.get(export_url, {"procedure": procedure.pk, "encoding": "utf-8", "download": "1"}))
        assert len(rows) == 1
        row = rows[0]
        assert row["受付番号"] == receipt and row["状態"] == "完了"
        assert row["粗大ごみを出す場所を入力してください。"] == NEW_PLACE
        assert row["出したい粗大ごみを選んでください（いくつでも選べます）。"] == "タンス（1,200円）"
        assert row["手数料合計"] == "1200円"

        # The audit log: who changed the status, who asked for the correction, who exported.
        audit_list = reverse("admin:audit_auditentry_changelist")
        page = audit_office.get(audit_list)
        assert page.status_code == 200
        listed = page.content.decode()
        for shown in (STAFF, AUDITOR, "申請の状態変更", "修正依頼", "申請の書き出し"):
            assert shown in listed
        entries = csv_rows(audit_office.get(reverse("admin:audit_auditentry_export")))

    def about_application(code: str) -> list[dict[str, str]]:
        return [e for e in entries if e["操作コード"] == code and e["対象ID"] == str(application.pk)]

    changes = about_application(audit_actions.APPLICATION_STATUS_CHANGE)
    moves = sorted(
        (e["職員"], json.loads(e["詳細"])["from"], json.loads(e["詳細"])["to"], e["IPアドレス"]) for e in changes
    )
    assert moves == sorted([
        (STAFF, "received", "reviewing", "127.0.0.1"),
        (STAFF, "reviewing", "correction_requested", "127.0.0.1"),
        ("", "correction_requested", "reviewing", ""),  # the resident's resubmission: no staff, no browser
        (STAFF, "reviewing", "completed", "127.0.0.1"),
    ])
    assert [(e["職員"], e["操作"]) for e in about_application(audit_actions.APPLICATION_CORRECTION_REQUEST)] == [
        (STAFF, "修正依頼")
    ]
    assert len(about_application(audit_actions.APPLICATION_RESUBMIT)) == 1
    exports = [e for e in entries if e["操作コード"] == audit_actions.APPLICATION_EXPORT]
    assert [(e["職員"], e["対象ID"], json.loads(e["詳細"])["count"]) for e in exports] == [
        (AUDITOR, str(procedure.pk), 1)
    ]
    assert all(e["部署"] == "環境衛生課" for e in changes + exports)
    log = json.dumps(entries, ensure_ascii=False)
    for answer in ANSWERS + (REASON,):
        assert answer not in log
