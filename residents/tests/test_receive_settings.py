"""The ready-made 受信設定 procedure: made from the categories, started by its keyword, run again to change."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from procedures.engine.types import Event
from procedures.models import Application, Procedure
from procedures.services import COMPLETION_CODE, ProblemsError, conversation_handle
from procedures.spec import parse_spec
from procedures.tests.factories import DepartmentFactory
from residents.models import Attribute, ProfileChange
from residents.receive_settings import RECEIVE_SETTINGS_PREFIX, receive_settings_procedure_create
from residents.tests.factories import AttributeFactory, CategoryFactory, ResidentFactory

pytestmark = pytest.mark.django_db

JST = dt.timezone(dt.timedelta(hours=9))
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=JST)


@pytest.fixture
def city():
    for position, (key, name) in enumerate((("bousai", "防災"), ("kosodate", "子育て"), ("event", "イベント"))):
        CategoryFactory(key=key, name=name, position=position)
    CategoryFactory(key="old", name="終了した分野", is_active=False)
    AttributeFactory(
        key="district",
        label="地区",
        kind=Attribute.Kind.SINGLE_CHOICE,
        choices=[("north", "北地区"), ("south", "南地区")],
    )


class ResidentChat:
    """A resident talking to the city through procedures' conversation service (what LINE calls)."""

    def __init__(self, resident, now=NOW):
        self.resident = resident
        self.now = now
        self.reply = None

    def send(self, event: Event):
        self.now += dt.timedelta(seconds=30)
        self.reply = conversation_handle(
            line_user_id=self.resident.line_user_id, event=event, resident=self.resident, now=self.now
        )
        return self.reply

    def say(self, text: str):
        return self.send(Event(type="text", text=text))

    def tap(self, code: str, label: str | None = None):
        for message in self.reply.messages:
            for action in message.actions:
                if action.code == code and (label is None or action.params.get("label") == label):
                    return self.send(action.event)
        raise AssertionError(f"no {code} {label or ''} in {[m.code for m in self.reply.messages]}")

    def receive_settings(self, categories: list[str], district: str):
        self.say("受信設定")
        for name in categories:
            self.tap("action.toggle", name)
        self.tap("action.done")
        self.tap("action.choice", district)
        self.tap("action.submit")
        return self.reply


def test_the_keyword_starts_it_and_running_it_again_replaces_the_choices_and_keeps_history(city):
    procedure = receive_settings_procedure_create()
    resident = ResidentFactory()
    chat = ResidentChat(resident)

    first = chat.receive_settings(["防災", "イベント"], "北地区")

    completion = next(message for message in first.messages if message.code == COMPLETION_CODE)
    assert "受信設定を保存しました" in completion.params["label"]
    assert sorted(resident.categories.values_list("key", flat=True)) == ["bousai", "event"]

    second = chat.receive_settings(["子育て"], "南地区")

    assert any(message.code == COMPLETION_CODE for message in second.messages)
    assert list(resident.categories.values_list("key", flat=True)) == ["kosodate"]
    assert resident.attribute_values.get().value_text == "south"
    receipts = list(
        Application.objects.filter(procedure=procedure).order_by("pk").values_list("receipt_number", flat=True)
    )
    assert len(receipts) == 2
    # The resident's own settings: nothing waits for staff in the inbox.
    assert not procedure.needs_staff_review
    assert not Application.objects.filter(procedure=procedure, needs_action=True).exists()
    history = [
        (
            change.attribute.key if change.attribute else "categories",
            change.previous,
            change.value,
            change.source_detail,
        )
        for change in ProfileChange.objects.filter(resident=resident).order_by("changed_at", "id")
    ]
    assert history == [
        ("categories", None, ["bousai", "event"], receipts[0]),
        ("district", None, "north", receipts[0]),
        ("categories", ["bousai", "event"], ["kosodate"], receipts[1]),
        ("district", "north", "south", receipts[1]),
    ]


def test_it_is_made_from_the_active_categories_and_the_district_attribute(city):
    procedure = receive_settings_procedure_create()

    assert procedure.is_open and procedure.keyword_list == ["受信設定"] and procedure.receipt_prefix == "JUSHIN"
    spec = parse_spec(procedure.current_version.spec)
    categories = spec.get_step("categories")
    assert [choice.value for choice in categories.choices] == ["bousai", "kosodate", "event"]
    assert categories.profile_target == "categories"
    district = spec.get_step("district")
    assert [(choice.value, choice.label) for choice in district.choices] == [("north", "北地区"), ("south", "南地区")]
    assert district.profile_target == "attribute:district"


def test_without_a_district_attribute_it_asks_only_for_the_categories():
    CategoryFactory(key="bousai", name="防災")
    spec = parse_spec(receive_settings_procedure_create().current_version.spec)
    assert [step.key for step in spec.input_steps] == ["categories"]


def test_it_cannot_be_made_without_categories_nor_twice(city):
    receive_settings_procedure_create()
    with pytest.raises(ProblemsError) as caught:
        receive_settings_procedure_create()
    assert caught.value.messages == [
        "受信設定の手続き（受付番号 JUSHIN）はすでにあります。内容は手続きの編集画面で変更してください。"
    ]


def test_it_needs_an_active_category():
    CategoryFactory(key="old", is_active=False)
    with pytest.raises(ProblemsError) as caught:
        receive_settings_procedure_create()
    assert caught.value.messages == ["受信設定の手続きを作るには、受付中の配信カテゴリを1つ以上作成してください。"]


def test_the_command_creates_it_for_a_department_and_explains_a_refusal(city):
    department = DepartmentFactory(code="kouhou", name="秘書広報課")
    out = StringIO()
    call_command("create_receive_settings_procedure", "--department", "kouhou", stdout=out)
    assert "作成して公開しました: 受信設定（JUSHIN" in out.getvalue()
    from procedures.models import Procedure

    assert Procedure.objects.get(receipt_prefix=RECEIVE_SETTINGS_PREFIX).department == department

    with pytest.raises(CommandError, match="すでにあります"):
        call_command("create_receive_settings_procedure", stdout=StringIO())
    with pytest.raises(CommandError, match="部署コード「nowhere」の部署がありません"):
        call_command("create_receive_settings_procedure", "--department", "nowhere", stdout=StringIO())


def test_the_demo_has_the_categories_attributes_and_a_mapped_receive_settings_procedure():
    from procedures.demo import load_demo

    results = {result.receipt_prefix: result for result in load_demo()}

    spec = parse_spec(results[RECEIVE_SETTINGS_PREFIX].procedure.current_version.spec)
    assert [choice.label for choice in spec.get_step("categories").choices] == [
        "防災",
        "子育て",
        "イベント",
        "ごみ",
        "健康",
    ]
    assert spec.get_step("district").profile_target == "attribute:district"
    assert Attribute.objects.get(key="children").choices == [
        {"value": "yes", "label": "いる"},
        {"value": "no", "label": "いない"},
    ]
    assert not any(result.created for result in load_demo())


def test_a_system_administrator_creates_it_from_the_category_list(city, admin_client):
    page = admin_client.get("/admin/residents/category/").content.decode()
    assert "受信設定の手続きを作成" in page

    response = admin_client.post("/admin/residents/category/receive-settings/")

    procedure = Procedure.objects.get(receipt_prefix=RECEIVE_SETTINGS_PREFIX)
    assert response.status_code == 302 and response["Location"].endswith(f"/procedure/{procedure.pk}/change/")
    assert procedure.is_open and not procedure.needs_staff_review
    assert "受信設定の手続きを開く" in admin_client.get("/admin/residents/category/").content.decode()
    again = admin_client.post("/admin/residents/category/receive-settings/", follow=True)
    assert "すでにあります" in again.content.decode()
    assert Procedure.objects.filter(receipt_prefix=RECEIVE_SETTINGS_PREFIX).count() == 1


def test_department_staff_cannot_create_it(city, client):
    from procedures.tests.factories import StaffUserFactory
    from staff.models import Role, StaffMembership

    user = StaffUserFactory(username="dept-staff", is_superuser=False)
    StaffMembership.objects.create(user=user, role=Role.DEPARTMENT_STAFF, department=DepartmentFactory(code="x"))
    client.force_login(user)
    assert client.post("/admin/residents/category/receive-settings/").status_code == 403
    assert not Procedure.objects.filter(receipt_prefix=RECEIVE_SETTINGS_PREFIX).exists()
