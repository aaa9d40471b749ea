"""代理入力: staff type in a resident's application (a phone request) through the engine's conversation."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
import time_machine
from django.urls import reverse

from audit import actions as audit_actions
from audit.models import AuditEntry
from procedures import simulator as channel
from procedures.engine.types import Event
from procedures.models import Application, ConversationSession
from procedures.services import conversation_handle, draft_get_or_create, procedure_close
from procedures.tests.factories import DepartmentFactory, published_version, valid_draft
from staff.models import Role, StaffMembership

pytestmark = pytest.mark.django_db

PAGE = reverse("procedures:proxy_entry")
SEND = reverse("procedures:proxy_entry_send")
RESET = reverse("procedures:proxy_entry_reset")
LINE_USER = "U" + "0" * 31 + "1"
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


class ProxyChat:
    """Drives the 代理入力 endpoints the way the page does: only events it was handed are sent back."""

    def __init__(self, client, version):
        self.client = client
        self.ids = {"procedure": version.procedure_id, "version": version.pk}
        self.last: dict = {}

    def post(self, event: dict, expect: int = 200) -> dict:
        response = self.client.post(SEND, {**self.ids, "event": event}, content_type="application/json")
        assert response.status_code == expect, response.content.decode()
        if expect == 200:
            self.last = response.json()
        return response.json()

    def start(self) -> dict:
        assert self.client.post(RESET, self.ids, content_type="application/json").status_code == 200
        return self.post({"type": "start", "value": self.ids["procedure"]})

    def say(self, text: str, expect: int = 200) -> dict:
        return self.post({"type": "text", "text": text}, expect)

    def tap(self, label: str) -> dict:
        actions = [a for m in self.last["messages"] for a in m["actions"] if a["label"] == label]
        assert actions, [m["text"] for m in self.last["messages"]]
        return self.post(actions[0]["event"])

    def texts(self) -> list[str]:
        return [message["text"] for message in self.last["messages"]]


def _line_messages(event: Event) -> list[dict]:
    """What a LINE resident is told (the webhook workers call the same service with the resident's id)."""
    return channel.messages_to_dicts(conversation_handle(line_user_id=LINE_USER, event=event).messages)


def _staff(department, role=Role.DEPARTMENT_STAFF, username="clerk"):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, password=None, is_staff=True)
    StaffMembership.objects.create(user=user, role=role, department=department)
    return user


@time_machine.travel(NOW, tick=False)
def test_a_wrong_answer_gets_the_same_message_as_on_line(admin_client):
    version = published_version(name="粗大ごみの収集")
    chat = ProxyChat(admin_client, version)
    chat.start()
    chat.tap("タンス")
    chat.say("9")  # the count allows 1 to 5

    messages = _line_messages(Event(type="start", value=version.procedure_id))
    tap = next(a["event"] for m in messages for a in m["actions"] if a["label"] == "タンス")
    _line_messages(channel.event_from_dict(tap))
    expected = [m["text"] for m in _line_messages(Event(type="text", text="9"))]
    assert chat.texts() == expected
    assert any("5" in text for text in expected)  # the engine's range message, not something of its own
    assert not Application.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_a_completed_entry_is_a_real_application_marked_as_entered_by_staff(admin_client, admin_user):
    version = published_version(name="粗大ごみの収集")
    chat = ProxyChat(admin_client, version)
    chat.start()
    chat.tap("タンス")
    chat.say("2")
    chat.say("山田太郎")
    data = chat.tap("この内容で申し込む")

    application = Application.objects.get()
    assert application.is_test is False
    assert application.channel == Application.Channel.PROXY
    assert application.get_channel_display() == "代理入力（電話）"
    assert application.entered_by == admin_user
    assert application.line_user_id == ""  # no LINE user: nobody gets LINE notices for it
    assert not application.receipt_number.startswith("TEST-")
    assert application.answers == {"item": "tansu", "count": 2, "name": "山田太郎"}
    assert data["applications"][0]["receipt_number"] == application.receipt_number
    assert data["applications"][0]["is_test"] is False
    entry = AuditEntry.objects.get(action=audit_actions.APPLICATION_PROXY_ENTRY)
    assert entry.actor == admin_user and entry.object_id == str(application.pk)
    assert entry.details == {"receipt_number": application.receipt_number}


@time_machine.travel(NOW, tick=False)
def test_the_application_list_detail_and_export_show_how_it_arrived(admin_client):
    version = published_version(name="粗大ごみの収集")
    chat = ProxyChat(admin_client, version)
    chat.start()
    chat.tap("タンス")
    chat.say("2")
    chat.say("山田太郎")
    chat.tap("この内容で申し込む")
    application = Application.objects.get()

    listing = admin_client.get(reverse("admin:procedures_application_changelist")).content.decode()
    assert "受付方法" in listing and "代理入力（電話）" in listing
    detail = admin_client.get(reverse("admin:procedures_application_change", args=[application.pk])).content.decode()
    assert "代理入力（電話）" in detail and "代理入力した職員" in detail
    response = admin_client.get(
        reverse("procedures:application_export"), {"procedure": version.procedure_id, "download": "1"}
    )
    assert response.status_code == 200 and response.streaming
    header, row = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert row[header.index("受付方法")] == "代理入力（電話）"


def test_only_the_published_version_of_an_open_procedure_can_be_entered(admin_client):
    version = published_version(name="粗大ごみの収集")
    draft = draft_get_or_create(procedure=version.procedure)
    never_published = valid_draft(name="住民票の写し")

    html = admin_client.get(PAGE).content.decode()
    assert "粗大ごみの収集 第1版（公開中）" in html
    assert "第2版（下書き）" not in html and "住民票の写し" not in html

    for target in (draft, never_published):
        body = {"procedure": target.procedure_id, "version": target.pk, "event": {"type": "sticker"}}
        response = admin_client.post(SEND, body, content_type="application/json")
        assert response.status_code in (400, 404)
        assert response.json()["error"]

    procedure_close(procedure=version.procedure)
    body = {"procedure": version.procedure_id, "version": version.pk, "event": {"type": "sticker"}}
    response = admin_client.post(SEND, body, content_type="application/json")
    assert response.status_code == 400
    assert "受付中の手続きの公開中の版だけ" in response.json()["error"]


@time_machine.travel(NOW, tick=False)
def test_a_keyword_of_another_procedure_is_refused_and_changes_nothing(admin_client):
    version = published_version(name="粗大ごみの収集")
    published_version(name="住民票の写し", keywords="住民票")
    chat = ProxyChat(admin_client, version)
    chat.start()
    chat.say("住民票")  # the engine asks whether to switch, as it would ask a resident
    before = ConversationSession.objects.get(line_user_id__startswith=channel.PROXY_PARTNER_PREFIX).state

    switch = next(a["event"] for m in chat.last["messages"] for a in m["actions"] if a["label"] == "はい、切り替えます")
    data = chat.post(switch, expect=400)

    assert "選んだ手続きだけ" in data["error"]
    assert ConversationSession.objects.get(line_user_id__startswith=channel.PROXY_PARTNER_PREFIX).state == before


def test_a_viewer_and_staff_of_another_department_are_refused(client):
    home = DepartmentFactory(name="環境課", code="env")
    other = DepartmentFactory(name="市民課", code="civic")
    version = published_version(name="粗大ごみの収集", department=home)
    body = {"procedure": version.procedure_id, "version": version.pk, "event": {"type": "sticker"}}

    for user in (_staff(home, Role.DEPARTMENT_VIEWER, "viewer"), _staff(other, username="stranger")):
        client.force_login(user)
        assert "粗大ごみの収集" not in client.get(PAGE, {"procedure": version.procedure_id}).content.decode()
        response = client.post(SEND, body, content_type="application/json")
        assert response.status_code == 404
        assert "見つかりません" in response.json()["error"]

    client.force_login(_staff(home))
    assert client.post(SEND, body, content_type="application/json").status_code == 200


def test_the_procedure_page_links_to_proxy_entry_for_those_who_may_process(admin_client, client):
    home = DepartmentFactory(name="環境課", code="env")
    version = published_version(name="粗大ごみの収集", department=home)
    url = reverse("admin:procedures_procedure_change", args=[version.procedure_id])
    assert f'{PAGE}?procedure={version.procedure_id}' in admin_client.get(url).content.decode()

    client.force_login(_staff(home, Role.DEPARTMENT_VIEWER, "viewer"))
    assert PAGE + "?" not in client.get(url).content.decode()
