"""Residents in the admin (list, page, personal message) and the category / attribute definitions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from messaging.models import LineFollowEvent, LineUser, OutboxMessage
from messaging.tests.test_webhook import line_channel, user_id, wakeups  # noqa: F401 (autouse fixtures)
from procedures.tests.factories import ApplicationFactory, DepartmentFactory, StaffUserFactory, published_version
from residents.models import (
    Attribute,
    Category,
    ProfileChange,
    Resident,
    ResidentAttributeValue,
    ResidentCategory,
)
from staff.models import Role, StaffMembership

pytestmark = pytest.mark.django_db

NOTICE_TEXT = "ご依頼の件、窓口で確認できました。"


def member(username: str, role: str, department=None) -> Client:
    user = StaffUserFactory(username=username, is_superuser=False)
    StaffMembership.objects.create(user=user, role=role, department=department)
    client = Client()
    client.force_login(user)
    return client


@dataclass
class Town:
    resident: Resident  # a friend with an application in department A, attributes, a category, messages
    other: Resident  # only an application in department B
    application_a: object
    application_b: object
    department_a: object
    admin: Client
    staff_a: Client
    viewer_a: Client
    staff_b: Client


@pytest.fixture
def town(db) -> Town:
    department_a = DepartmentFactory(name="環境課", code="env")
    department_b = DepartmentFactory(name="福祉課", code="welfare")
    resident = Resident.objects.create(
        line_user_id=user_id(1),
        display_name="山田花子",
        picture_url="https://profile.line-scdn.net/0h-picture",
        receive_settings_at=timezone.now(),
    )
    other = Resident.objects.create(line_user_id=user_id(2), display_name="別の住民")
    line_user = LineUser.objects.create(line_user_id=resident.line_user_id, resident=resident)
    first = timezone.now() - timedelta(days=30)
    for kind, days in (("follow", 0), ("unfollow", 10), ("follow", 20)):
        LineFollowEvent.objects.create(line_user=line_user, kind=kind, occurred_at=first + timedelta(days=days))
    district = Attribute.objects.create(
        key="district", label="地区", kind="single_choice", choices=[{"value": "north", "label": "北地区"}]
    )
    ResidentAttributeValue.objects.create(resident=resident, attribute=district, value_text="north")
    ResidentCategory.objects.create(resident=resident, category=Category.objects.create(key="bousai", name="防災情報"))
    OutboxMessage.objects.create(
        line_user_id=resident.line_user_id,
        kind="push",
        payload=[{"type": "text", "text": "粗大ごみの収集日のお知らせ"}],
        next_attempt_at=timezone.now(),
        status="sent",
    )
    application_a = ApplicationFactory(version=published_version(department=department_a), resident=resident)
    application_b = ApplicationFactory(version=published_version(department=department_b), resident=other)
    admin = member("sysadmin", Role.SYSTEM_ADMIN)
    return Town(
        resident=resident,
        other=other,
        application_a=application_a,
        application_b=application_b,
        department_a=department_a,
        admin=admin,
        staff_a=member("staff_a", Role.DEPARTMENT_STAFF, department_a),
        viewer_a=member("viewer_a", Role.DEPARTMENT_VIEWER, department_a),
        staff_b=member("staff_b", Role.DEPARTMENT_STAFF, department_b),
    )


def page(resident: Resident) -> str:
    return reverse("admin:residents_resident_change", args=[resident.pk])


def message_page(resident: Resident) -> str:
    return reverse("admin:residents_resident_send_message", args=[resident.pk])


# --------------------------------------------------------------------------
# The list and the page
# --------------------------------------------------------------------------


def test_system_admin_lists_residents_with_follow_state_search_and_filters(town):
    LineUser.objects.create(line_user_id=town.other.line_user_id, resident=town.other, is_following=False)
    changelist = reverse("admin:residents_resident_changelist")
    listed = town.admin.get(changelist).content.decode()
    assert town.resident.line_user_id in listed and town.other.line_user_id in listed
    assert "ブロック中" in listed and 'src="https://profile.line-scdn.net/0h-picture"' in listed
    found = town.admin.get(changelist, {"q": "山田"}).content.decode()
    assert town.resident.line_user_id in found and town.other.line_user_id not in found
    blocked = town.admin.get(changelist, {"follow": "blocked"}).content.decode()
    assert town.other.line_user_id in blocked and town.resident.line_user_id not in blocked
    category = Category.objects.get(key="bousai")
    chose = town.admin.get(changelist, {"categories__id__exact": category.pk}).content.decode()
    assert town.resident.line_user_id in chose and town.other.line_user_id not in chose


def test_system_admin_sees_the_whole_resident_page(town):
    response = town.admin.get(page(town.resident))
    assert response.status_code == 200
    content = response.content.decode()
    first_follow = LineFollowEvent.objects.filter(kind="follow").order_by("occurred_at").first().occurred_at
    assert timezone.localtime(first_follow).strftime("%Y-%m-%d %H:%M") in content
    assert content.count("<td>ブロック</td>") == 1  # the unfollow in the history
    assert "北地区" in content and "防災情報" in content
    application_url = reverse("admin:procedures_application_change", args=[town.application_a.pk])
    assert f'href="{application_url}"' in content
    assert "粗大ごみの収集日のお知らせ" in content and "送信済み" in content
    assert message_page(town.resident) in content  # the 個別メッセージを送る button


def test_department_staff_see_their_residents_without_texts_profile_or_other_departments(town):
    ApplicationFactory(
        version=published_version(department=town.application_b.procedure.department), resident=town.resident
    )
    hidden_receipt = town.resident.applications.exclude(pk=town.application_a.pk).get().receipt_number
    response = town.staff_a.get(page(town.resident))
    assert response.status_code == 200
    content = response.content.decode()
    assert town.application_a.receipt_number in content and hidden_receipt not in content
    assert "送信済み" in content and "粗大ごみの収集日のお知らせ" not in content
    assert "北地区" not in content and "防災情報" not in content


def test_staff_who_may_not_read_profiles_cannot_list_or_select_residents_by_category(town):
    changelist = reverse("admin:residents_resident_changelist")
    category = Category.objects.get(key="bousai")
    listed = town.staff_a.get(changelist)
    assert listed.status_code == 200 and "防災情報" not in listed.content.decode()
    assert town.staff_a.get(changelist, {"categories__id__exact": category.pk}).status_code == 400
    assert "防災情報" in town.admin.get(changelist).content.decode()  # system administrators keep the filter


def test_a_city_wide_auditor_sees_the_resident_but_not_their_profile(town):
    auditor = member("auditor", Role.AUDITOR)
    response = auditor.get(page(town.resident))
    assert response.status_code == 200
    content = response.content.decode()
    assert town.application_a.receipt_number in content
    assert "北地区" not in content and "防災情報" not in content
    assert reverse("admin:residents_profilechange_changelist") not in content


def test_department_staff_without_an_application_of_the_resident_cannot_see_them(town):
    assert town.staff_b.get(page(town.resident)).status_code == 404
    listed = town.staff_b.get(reverse("admin:residents_resident_changelist")).content.decode()
    assert town.resident.line_user_id not in listed and town.other.line_user_id in listed


def test_nobody_adds_or_edits_residents(town):
    assert town.admin.get(reverse("admin:residents_resident_add")).status_code == 403
    town.admin.post(page(town.resident), {"display_name": "書き換え", "line_user_id": "U-changed"})
    town.resident.refresh_from_db()
    assert (town.resident.display_name, town.resident.line_user_id) == ("山田花子", user_id(1))


# --------------------------------------------------------------------------
# 個別メッセージ
# --------------------------------------------------------------------------


def test_a_personal_message_goes_through_the_outbox_is_audited_and_listed(town):
    response = town.admin.post(message_page(town.resident), {"text": NOTICE_TEXT})
    assert response.status_code == 302 and response.url == page(town.resident)
    row = OutboxMessage.objects.filter(line_user_id=town.resident.line_user_id).order_by("-pk").first()
    assert (row.kind, row.status, row.payload) == ("push", "pending", [{"type": "text", "text": NOTICE_TEXT}])
    entry = AuditEntry.objects.get(action="resident.message")
    assert (entry.object_id, entry.actor_display, entry.department_id) == (str(town.resident.pk), "sysadmin", None)
    assert entry.details == {"outbox": [row.pk], "length": len(NOTICE_TEXT)}  # never the text
    content = town.admin.get(page(town.resident)).content.decode()
    assert NOTICE_TEXT in content and "sysadmin" in content and "送信待ち" in content


def test_staff_see_who_wrote_to_a_resident_for_their_own_department_only(town):
    ApplicationFactory(
        version=published_version(department=town.application_b.procedure.department), resident=town.resident
    )
    assert town.staff_b.post(message_page(town.resident), {"text": "福祉課からのお知らせ"}).status_code == 302
    assert town.staff_a.post(message_page(town.resident), {"text": NOTICE_TEXT}).status_code == 302
    seen_by_a = town.staff_a.get(page(town.resident)).content.decode()
    assert "staff_a" in seen_by_a and "staff_b" not in seen_by_a
    seen_by_admin = town.admin.get(page(town.resident)).content.decode()
    assert "staff_a" in seen_by_admin and "staff_b" in seen_by_admin


def test_department_staff_write_to_residents_of_their_applications_only(town):
    assert town.staff_a.post(message_page(town.resident), {"text": NOTICE_TEXT}).status_code == 302
    assert AuditEntry.objects.get(action="resident.message").department_id == town.department_a.pk
    assert town.staff_a.post(message_page(town.other), {"text": NOTICE_TEXT}).status_code == 404
    assert town.viewer_a.get(page(town.resident)).status_code == 200
    assert message_page(town.resident) not in town.viewer_a.get(page(town.resident)).content.decode()
    assert town.viewer_a.post(message_page(town.resident), {"text": NOTICE_TEXT}).status_code == 403
    assert OutboxMessage.objects.filter(payload__isnull=False).count() == 2  # the fixture's and staff A's


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("佐藤一郎様、収集日が決まりました", "申請の回答（「お名前」）と同じ内容が含まれています"),
        ("ご本人確認のため 1234 5678 9018 を控えました", "マイナンバー（個人番号）と思われる12桁の数字"),
    ],
)
def test_a_personal_message_repeating_personal_data_is_refused_and_nothing_is_sent(town, text, error):
    town.application_a.answers = {"name": "佐藤一郎"}
    town.application_a.save()
    before = OutboxMessage.objects.count()
    response = town.staff_a.post(message_page(town.resident), {"text": text})
    assert response.status_code == 200 and error in response.content.decode()
    assert OutboxMessage.objects.count() == before and not AuditEntry.objects.filter(action="resident.message").exists()


def test_a_blocked_resident_gets_no_message_and_staff_are_told_why(town):
    LineUser.objects.filter(resident=town.resident).update(is_following=False)
    before = OutboxMessage.objects.count()
    assert "ブロックしているため" in town.admin.get(message_page(town.resident)).content.decode()
    response = town.admin.post(message_page(town.resident), {"text": NOTICE_TEXT})
    assert response.status_code == 200
    assert "ブロックしているため、メッセージを送れません" in response.content.decode()
    assert OutboxMessage.objects.count() == before and not AuditEntry.objects.filter(action="resident.message").exists()


@pytest.mark.parametrize(("text", "error"), [("  \n ", "メッセージを入力してください"), ("あ" * 1001, "1000文字以内")])
def test_an_empty_or_too_long_message_is_refused(town, text, error):
    before = OutboxMessage.objects.count()
    response = town.admin.post(message_page(town.resident), {"text": text})
    assert response.status_code == 200 and error in response.content.decode()
    assert OutboxMessage.objects.count() == before


# --------------------------------------------------------------------------
# Categories and attributes
# --------------------------------------------------------------------------


def category_form(**changes) -> dict:
    return {"name": "子育て", "key": "child_care", "description": "", "position": "0", "is_active": "on", **changes}


def attribute_form(**changes) -> dict:
    return {
        "label": "地区2",
        "key": "district2",
        "kind": "single_choice",
        "choices_text": "",
        "position": "0",
        **changes,
    }


def test_a_category_key_is_a_slug_and_never_changes(town):
    add = reverse("admin:residents_category_add")
    refused = town.admin.post(add, category_form(key="子育て"))
    assert refused.status_code == 200 and "半角英小文字・数字・_" in refused.content.decode()
    assert town.admin.post(add, category_form()).status_code == 302
    category = Category.objects.get(key="child_care")
    change = reverse("admin:residents_category_change", args=[category.pk])
    assert town.admin.post(change, category_form(key="renamed", name="子育て支援")).status_code == 302
    category.refresh_from_db()
    assert (category.key, category.name) == ("child_care", "子育て支援")


def test_attribute_choices_are_written_one_per_line(town):
    response = town.admin.post(
        reverse("admin:residents_attribute_add"), attribute_form(choices_text="north:北地区\r\n\r\nsouth：南地区\r\n")
    )
    assert response.status_code == 302
    attribute = Attribute.objects.get(key="district2")
    assert attribute.choices == [{"value": "north", "label": "北地区"}, {"value": "south", "label": "南地区"}]
    shown = town.admin.get(reverse("admin:residents_attribute_change", args=[attribute.pk])).content.decode()
    assert "north:北地区\nsouth:南地区" in shown


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"choices_text": "north"}, "1行目：「値:ラベル」の形で"),
        ({"choices_text": "a:A\nNorth Side:北"}, "2行目：値「North Side」は半角英小文字"),
        ({"choices_text": "a:A\na:B"}, "2行目：値「a」が重複しています"),
        ({"choices_text": ""}, "選択肢を1つ以上書いてください"),
        ({"kind": "number", "choices_text": "a:A"}, "選択肢は「単一選択」「複数選択」のときだけ"),
        ({"key": "District-2", "choices_text": "a:A"}, "半角英小文字・数字・_"),
    ],
)
def test_bad_attribute_definitions_are_refused_with_a_reason(town, fields, error):
    response = town.admin.post(reverse("admin:residents_attribute_add"), attribute_form(**fields))
    assert response.status_code == 200 and error in response.content.decode()
    assert not Attribute.objects.filter(label="地区2").exists()


def test_a_choice_residents_chose_cannot_be_removed_but_its_label_can_change(town):
    district = Attribute.objects.get(key="district")
    change = reverse("admin:residents_attribute_change", args=[district.pk])
    form = {"label": "地区", "key": "renamed", "choices_text": "south:南地区", "position": "0"}
    refused = town.admin.post(change, form)
    assert refused.status_code == 200
    assert "選択肢「north:北地区」は住民1人が選んでいるため、削除・変更できません" in refused.content.decode()
    assert town.admin.post(change, {**form, "choices_text": "north:北部\nsouth:南地区"}).status_code == 302
    district.refresh_from_db()
    assert district.key == "district"
    assert district.choices == [{"value": "north", "label": "北部"}, {"value": "south", "label": "南地区"}]
    assert town.admin.post(change, {**form, "choices_text": "north:北部"}).status_code == 302  # unused: removable


def test_the_attribute_page_links_its_change_history(town):
    district = Attribute.objects.get(key="district")
    ProfileChange.objects.create(
        resident=town.resident,
        attribute=district,
        previous=None,
        value="north",
        source="staff",
        changed_at=timezone.now(),
    )
    content = town.admin.get(reverse("admin:residents_attribute_change", args=[district.pk])).content.decode()
    history = reverse("admin:residents_profilechange_changelist") + f"?attribute__id__exact={district.pk}"
    assert f'href="{history}"' in content and "1件" in content
    assert town.admin.get(history).status_code == 200


def test_department_staff_cannot_open_the_profile_definitions(town):
    for name in ("category", "attribute", "profilechange"):
        assert town.staff_a.get(reverse(f"admin:residents_{name}_changelist")).status_code == 403
