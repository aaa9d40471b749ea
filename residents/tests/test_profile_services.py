"""The residents' profile services: typed attribute values, receive categories, and their history."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from residents.models import Attribute, ProfileChange, ResidentAttributeValue, ResidentCategory
from residents.selectors import resident_profile, resident_profile_changes
from residents.services import resident_attributes_set, resident_categories_set
from residents.tests.factories import AttributeFactory, CategoryFactory, ResidentFactory

pytestmark = pytest.mark.django_db

JST = dt.timezone(dt.timedelta(hours=9))
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=JST)
LATER = NOW + dt.timedelta(days=3)
DISTRICTS = [("north", "北地区"), ("south", "南地区")]
HOBBIES = [("sports", "スポーツ"), ("music", "音楽"), ("books", "読書")]


@pytest.fixture
def attributes():
    return {
        "district": AttributeFactory(
            key="district", label="地区", kind=Attribute.Kind.SINGLE_CHOICE, choices=DISTRICTS
        ),
        "hobbies": AttributeFactory(key="hobbies", label="趣味", kind=Attribute.Kind.MULTIPLE_CHOICE, choices=HOBBIES),
        "household": AttributeFactory(key="household", label="世帯人数", kind=Attribute.Kind.NUMBER),
        "moved_in": AttributeFactory(key="moved_in", label="転入日", kind=Attribute.Kind.DATE),
        "school": AttributeFactory(key="school", label="学校", kind=Attribute.Kind.TEXT),
    }


def staff_set(resident, values, now=NOW):
    return resident_attributes_set(resident=resident, values=values, source="staff", source_detail="clerk", now=now)


def test_setting_attributes_writes_typed_rows_and_records_each_change(attributes):
    resident = ResidentFactory()
    changed = staff_set(
        resident,
        {
            "district": "north",
            "hobbies": ["books", "sports", "books"],
            "household": 4,
            "moved_in": "2026-04-01",
            "school": " 北小学校 ",
        },
    )

    assert sorted(changed) == ["district", "hobbies", "household", "moved_in", "school"]
    rows = ResidentAttributeValue.objects.filter(resident=resident)
    assert sorted(rows.filter(attribute__key="hobbies").values_list("value_text", flat=True)) == ["books", "sports"]
    assert rows.get(attribute__key="household").value_number == Decimal(4)
    assert rows.get(attribute__key="moved_in").value_date == dt.date(2026, 4, 1)
    assert rows.get(attribute__key="school").value_text == "北小学校"
    history = {change.attribute.key: change for change in ProfileChange.objects.filter(resident=resident)}
    assert history["hobbies"].previous is None and history["hobbies"].value == ["sports", "books"]  # choice order
    assert history["household"].value == 4 and history["moved_in"].value == "2026-04-01"
    assert {(c.source, c.source_detail, c.changed_at) for c in history.values()} == {("staff", "clerk", NOW)}


def test_setting_the_same_values_again_records_no_history(attributes):
    resident = ResidentFactory()
    values = {"district": "north", "hobbies": ["music", "sports"], "household": 2.5, "moved_in": dt.date(2026, 4, 1)}
    staff_set(resident, values)

    assert staff_set(resident, {**values, "hobbies": ["sports", "music"], "household": "2.50"}, now=LATER) == []
    assert ProfileChange.objects.filter(resident=resident).count() == 4


def test_a_change_records_the_previous_value_and_clearing_removes_the_rows(attributes):
    resident = ResidentFactory()
    staff_set(resident, {"district": "north", "hobbies": ["music"]})

    assert staff_set(resident, {"district": "south", "hobbies": []}, now=LATER) == ["district", "hobbies"]

    district, hobbies = (
        ProfileChange.objects.get(resident=resident, attribute__key=key, changed_at=LATER)
        for key in ("district", "hobbies")
    )
    assert (district.previous, district.value) == ("north", "south")
    assert (hobbies.previous, hobbies.value) == (["music"], None)
    assert not ResidentAttributeValue.objects.filter(resident=resident, attribute__key="hobbies").exists()


def test_invalid_values_are_all_listed_in_japanese_and_nothing_is_written(attributes):
    resident = ResidentFactory()
    with pytest.raises(ValidationError) as caught:
        staff_set(
            resident,
            {
                "district": "east",
                "hobbies": ["music", "golf"],
                "household": "たくさん",
                "moved_in": "2026-13-01",
                "school": "x" * 201,
                "blood_type": "A",
            },
        )

    messages = caught.value.messages
    assert "住民の属性にないキーです：blood_type" in messages
    assert "住民の属性「地区」：「east」は選択肢にありません。" in messages
    assert "住民の属性「趣味」：「golf」は選択肢にありません。" in messages
    assert "住民の属性「世帯人数」：数値で指定してください。" in messages
    assert "住民の属性「転入日」：日付（YYYY-MM-DD）で指定してください。" in messages
    assert "住民の属性「学校」：200文字以内にしてください。" in messages
    assert not ResidentAttributeValue.objects.exists() and not ProfileChange.objects.exists()


def test_numbers_beyond_the_stored_precision_are_refused(attributes):
    resident = ResidentFactory()
    for value, message in (
        (1.23456, "小数点以下は4桁までにしてください。"),
        (10**11, "数値は絶対値が 100,000,000,000 未満にしてください。"),
        (True, "数値で指定してください。"),
    ):
        with pytest.raises(ValidationError) as caught:
            staff_set(resident, {"household": value})
        assert caught.value.messages == [f"住民の属性「世帯人数」：{message}"]


def test_choosing_categories_ends_receiving_everything_and_history_starts_from_never_chosen():
    bousai, kosodate, event = (CategoryFactory(key=key) for key in ("bousai", "kosodate", "event"))
    resident = ResidentFactory()
    assert resident_profile(resident).receives_all_categories

    changed = resident_categories_set(
        resident=resident, category_keys=["event", "bousai"], source="procedure", source_detail="JUSHIN-1", now=NOW
    )

    assert changed
    resident.refresh_from_db()
    assert resident.receive_settings_at == NOW
    assert set(resident.categories.all()) == {bousai, event}
    change = ProfileChange.objects.get(resident=resident)
    assert change.attribute is None and change.previous is None and change.value == ["bousai", "event"]
    assert (change.source, change.source_detail) == ("procedure", "JUSHIN-1")

    assert resident_categories_set(resident=resident, category_keys=["kosodate"], source="staff", now=LATER)
    assert list(resident.categories.all()) == [kosodate]
    latest = resident_profile_changes(resident)[0]
    assert (latest.previous, latest.value) == (["bousai", "event"], ["kosodate"])


def test_choosing_the_same_categories_again_changes_nothing():
    CategoryFactory(key="bousai")
    CategoryFactory(key="gomi")
    resident = ResidentFactory()
    resident_categories_set(resident=resident, category_keys=["gomi", "bousai"], source="staff", now=NOW)

    assert not resident_categories_set(resident=resident, category_keys=["bousai", "gomi"], source="staff", now=LATER)

    resident.refresh_from_db()
    assert resident.receive_settings_at == NOW
    assert ProfileChange.objects.count() == 1


def test_choosing_no_category_is_a_choice_too():
    CategoryFactory(key="bousai")
    resident = ResidentFactory()
    assert resident_categories_set(resident=resident, category_keys=[], source="staff", now=NOW)
    profile = resident_profile(resident)
    assert not profile.receives_all_categories and profile.categories_text == "なし"


def test_an_unknown_category_is_refused_and_nothing_changes():
    CategoryFactory(key="bousai")
    resident = ResidentFactory()
    with pytest.raises(ValidationError) as caught:
        resident_categories_set(resident=resident, category_keys=["bousai", "onsen"], source="staff", now=NOW)
    assert caught.value.messages == ["配信カテゴリにないキーです：onsen"]
    resident.refresh_from_db()
    assert resident.receive_settings_at is None
    assert not ResidentCategory.objects.exists() and not ProfileChange.objects.exists()


def test_an_unknown_source_is_a_programming_error(attributes):
    with pytest.raises(ValueError, match="unknown profile change source"):
        resident_attributes_set(resident=ResidentFactory(), values={"district": "north"}, source="line", now=NOW)


def test_the_profile_shows_choice_labels_and_the_chosen_categories(attributes):
    CategoryFactory(key="bousai", name="防災", position=1)
    CategoryFactory(key="event", name="イベント", position=2)
    resident = ResidentFactory()
    staff_set(resident, {"district": "south", "hobbies": ["music", "books"], "household": 3})
    resident_categories_set(resident=resident, category_keys=["event", "bousai"], source="staff", now=NOW)

    profile = resident_profile(resident)

    assert [(item.attribute.key, item.text) for item in profile.attributes] == [
        ("district", "南地区"),
        ("hobbies", "音楽、読書"),
        ("household", "3"),
    ]
    assert profile.categories_text == "防災、イベント"
