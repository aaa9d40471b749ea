"""Segments: the rule tree evaluated in the database (residents/segments.py)."""

from __future__ import annotations

import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from messaging.models import LineFollowEvent, LineUser
from procedures.models import ApplicationStatus
from procedures.tests.factories import ApplicationFactory, published_version
from residents.models import Attribute, Category, Resident, ResidentAttributeValue, ResidentCategory, Segment
from residents.segments import (
    MAX_DEPTH,
    InvalidSegmentRules,
    rules_problems,
    segment_count,
    segment_residents,
)

pytestmark = pytest.mark.django_db

TOKYO = ZoneInfo("Asia/Tokyo")


def _resident(name: str, **fields) -> Resident:
    return Resident.objects.create(line_user_id=f"U-{name}", display_name=name, **fields)


def _attribute(key: str, kind: str, choices=()) -> Attribute:
    return Attribute.objects.create(
        key=key, label=key, kind=kind, choices=[{"value": value, "label": value} for value in choices]
    )


def _value(resident: Resident, attribute: Attribute, value) -> None:
    column = {
        Attribute.Kind.NUMBER: "value_number",
        Attribute.Kind.DATE: "value_date",
    }.get(attribute.kind, "value_text")
    ResidentAttributeValue.objects.create(resident=resident, attribute=attribute, **{column: value})


def _names(rules) -> set[str]:
    return set(segment_residents(rules).values_list("display_name", flat=True))


def _all(*rules, negate=False) -> dict:
    return {"match": "all", "rules": list(rules), **({"negate": True} if negate else {})}


def _any(*rules, negate=False) -> dict:
    return {"match": "any", "rules": list(rules), **({"negate": True} if negate else {})}


def _leaf(leaf_type: str, op: str, **fields) -> dict:
    return {"type": leaf_type, "op": op, **fields}


# --------------------------------------------------------------------------
# Attribute leaves
# --------------------------------------------------------------------------


@pytest.fixture
def district():
    attribute = _attribute("district", Attribute.Kind.SINGLE_CHOICE, ["north", "south", "east"])
    _value(_resident("north-1"), attribute, "north")
    _value(_resident("south-1"), attribute, "south")
    _value(_resident("east-1"), attribute, "east")
    _resident("unknown-1")
    return attribute


def test_single_choice_equals_in_set_and_not_set(district):
    assert _names(_all(_leaf("attribute", "equals", attribute="district", value="north"))) == {"north-1"}
    assert _names(_all(_leaf("attribute", "in", attribute="district", value=["north", "east"]))) == {
        "north-1",
        "east-1",
    }
    assert _names(_all(_leaf("attribute", "set", attribute="district"))) == {"north-1", "south-1", "east-1"}
    assert _names(_all(_leaf("attribute", "not_set", attribute="district"))) == {"unknown-1"}


def test_multiple_choice_equals_means_chose_that_option_and_in_means_chose_one_of_them():
    interests = _attribute("interests", Attribute.Kind.MULTIPLE_CHOICE, ["sports", "music", "books"])
    both = _resident("both")
    _value(both, interests, "sports")
    _value(both, interests, "music")
    _value(_resident("books"), interests, "books")
    _resident("none")

    assert _names(_all(_leaf("attribute", "equals", attribute="interests", value="music"))) == {"both"}
    assert _names(_all(_leaf("attribute", "in", attribute="interests", value=["music", "books"]))) == {
        "both",
        "books",
    }
    # Every chosen option is its own row: a resident is counted once.
    assert segment_count(_all(_leaf("attribute", "in", attribute="interests", value=["sports", "music"]))) == 1
    assert _names(_all(_leaf("attribute", "not_set", attribute="interests"))) == {"none"}


@pytest.fixture
def children():
    attribute = _attribute("children", Attribute.Kind.NUMBER)
    for count in (0, 1, 2, 3):
        _value(_resident(f"kids-{count}"), attribute, Decimal(count))
    _value(_resident("kids-1.5"), attribute, Decimal("1.5"))
    _resident("kids-unknown")
    return attribute


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", 2, {"kids-2"}),
        ("lt", 1, {"kids-0"}),
        ("lte", 1, {"kids-0", "kids-1"}),
        ("gt", 2, {"kids-3"}),
        ("gte", 2, {"kids-2", "kids-3"}),
        ("between", [1, 2], {"kids-1", "kids-1.5", "kids-2"}),
        ("gt", 1.2, {"kids-1.5", "kids-2", "kids-3"}),
        ("set", None, {"kids-0", "kids-1", "kids-1.5", "kids-2", "kids-3"}),
        ("not_set", None, {"kids-unknown"}),
    ],
)
def test_number_operators_compare_in_the_database(children, op, value, expected):
    assert _names(_all(_leaf("attribute", op, attribute="children", value=value))) == expected


@pytest.fixture
def birthday():
    attribute = _attribute("birthday", Attribute.Kind.DATE)
    for day in ("1950-01-01", "1980-06-15", "2000-12-31"):
        _value(_resident(f"born-{day}"), attribute, datetime.date.fromisoformat(day))
    _resident("born-unknown")
    return attribute


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "1980-06-15", {"born-1980-06-15"}),
        ("lt", "1980-06-15", {"born-1950-01-01"}),
        ("lte", "1980-06-15", {"born-1950-01-01", "born-1980-06-15"}),
        ("gt", "1980-06-15", {"born-2000-12-31"}),
        ("gte", "1980-06-15", {"born-1980-06-15", "born-2000-12-31"}),
        ("between", ["1950-01-01", "1980-06-15"], {"born-1950-01-01", "born-1980-06-15"}),
        ("not_set", None, {"born-unknown"}),
    ],
)
def test_date_operators_compare_in_the_database(birthday, op, value, expected):
    assert _names(_all(_leaf("attribute", op, attribute="birthday", value=value))) == expected


def test_text_equals_is_the_whole_text_and_contains_is_a_part_of_it():
    workplace = _attribute("workplace", Attribute.Kind.TEXT)
    _value(_resident("hall"), workplace, "市役所本庁舎")
    _value(_resident("branch"), workplace, "市役所北支所")
    _value(_resident("school"), workplace, "North School")
    _resident("blank")

    assert _names(_all(_leaf("attribute", "equals", attribute="workplace", value="市役所本庁舎"))) == {"hall"}
    assert _names(_all(_leaf("attribute", "equals", attribute="workplace", value="市役所"))) == set()
    assert _names(_all(_leaf("attribute", "contains", attribute="workplace", value="市役所"))) == {
        "hall",
        "branch",
    }
    assert _names(_all(_leaf("attribute", "contains", attribute="workplace", value="school"))) == {"school"}
    assert _names(_all(_leaf("attribute", "not_set", attribute="workplace"))) == {"blank"}


# --------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------


def test_nested_all_any_and_negate(district, children):
    north_with_kids = _resident("north-kids-2")
    _value(north_with_kids, district, "north")
    _value(north_with_kids, children, Decimal(2))
    south_with_kids = _resident("south-kids-3")
    _value(south_with_kids, district, "south")
    _value(south_with_kids, children, Decimal(3))
    north = _leaf("attribute", "equals", attribute="district", value="north")
    south = _leaf("attribute", "equals", attribute="district", value="south")
    many_kids = _leaf("attribute", "gte", attribute="children", value=2)

    assert _names(_all(many_kids, _any(north, south))) == {"north-kids-2", "south-kids-3"}
    assert _names(_all(many_kids, _any(north, south, negate=True))) == {"kids-2", "kids-3"}
    assert _names(_all(many_kids, {**north, "negate": True})) == {"kids-2", "kids-3", "south-kids-3"}
    # NOT (north OR many kids): residents with neither.
    assert _names(_any(north, many_kids, negate=True)) == {
        "south-1",
        "east-1",
        "unknown-1",
        "kids-0",
        "kids-1",
        "kids-1.5",
        "kids-unknown",
    }
    assert _names(_any(_all(north, many_kids), _all(south, many_kids))) == {"north-kids-2", "south-kids-3"}


def test_a_saved_segment_and_its_rules_give_the_same_residents(district):
    rules = _all(_leaf("attribute", "equals", attribute="district", value="south"))
    segment = Segment.objects.create(name="南地区", rules=rules)

    assert list(segment_residents(segment)) == list(segment_residents(rules))
    assert _names(rules) == {"south-1"}


def test_evaluation_is_one_query_however_many_leaves(district, children, django_assert_num_queries):
    rules = _any(
        _all(
            _leaf("attribute", "in", attribute="district", value=["north", "south"]),
            _leaf("attribute", "between", attribute="children", value=[1, 3], negate=True),
        ),
        _leaf("category", "receives", category="bousai"),
        _leaf("follow", "first_followed_between", value=["2025-01-01", "2025-12-31"]),
        _leaf("follow", "following"),
        _leaf("application", "has", procedure=1, status="completed", submitted_from="2025-01-01"),
    )

    with django_assert_num_queries(1):
        members = list(segment_residents(rules))
    with django_assert_num_queries(1):
        assert segment_count(rules) == len(members)


def test_a_badly_shaped_tree_is_refused_rather_than_evaluated():
    with pytest.raises(InvalidSegmentRules) as error:
        segment_residents({"match": "all", "rules": []})

    assert "空のグループ" in error.value.problems[0]


# --------------------------------------------------------------------------
# Categories
# --------------------------------------------------------------------------


@pytest.fixture
def receivers():
    bousai = Category.objects.create(key="bousai", name="防災")
    events = Category.objects.create(key="events", name="イベント")
    chose_bousai = _resident("chose-bousai", receive_settings_at=datetime.datetime(2025, 5, 1, tzinfo=TOKYO))
    ResidentCategory.objects.create(resident=chose_bousai, category=bousai)
    chose_events = _resident("chose-events", receive_settings_at=datetime.datetime(2025, 5, 1, tzinfo=TOKYO))
    ResidentCategory.objects.create(resident=chose_events, category=events)
    _resident("chose-nothing", receive_settings_at=datetime.datetime(2025, 5, 1, tzinfo=TOKYO))
    _resident("never-chose")


def test_residents_who_never_chose_receive_every_category(receivers):
    assert _names(_all(_leaf("category", "receives", category="bousai"))) == {"chose-bousai", "never-chose"}
    assert _names(_all(_leaf("category", "receives", category="events"))) == {"chose-events", "never-chose"}


def test_chose_counts_only_residents_who_ticked_the_category(receivers):
    assert _names(_all(_leaf("category", "chose", category="bousai"))) == {"chose-bousai"}
    assert _names(_all(_leaf("category", "never_chose"))) == {"never-chose"}


def test_not_receiving_a_category_leaves_out_those_who_never_chose(receivers):
    rules = _all(_leaf("category", "receives", category="bousai", negate=True))

    assert _names(rules) == {"chose-events", "chose-nothing"}


# --------------------------------------------------------------------------
# Follow
# --------------------------------------------------------------------------


def _line_user(resident: Resident, *, following=True, follows=()) -> LineUser:
    user = LineUser.objects.create(line_user_id=resident.line_user_id, resident=resident, is_following=following)
    for moment in follows:
        LineFollowEvent.objects.create(line_user=user, kind=LineFollowEvent.Kind.FOLLOW, occurred_at=moment)
    return user


@pytest.fixture
def friends():
    # 2025-04-01 00:30 in Tokyo is still 2025-03-31 in UTC: days are local days.
    _line_user(_resident("march"), follows=[datetime.datetime(2025, 3, 15, 12, 0, tzinfo=TOKYO)])
    _line_user(_resident("april-first"), follows=[datetime.datetime(2025, 4, 1, 0, 30, tzinfo=TOKYO)])
    _line_user(
        _resident("refollowed"),
        follows=[datetime.datetime(2024, 1, 10, tzinfo=TOKYO), datetime.datetime(2025, 4, 20, tzinfo=TOKYO)],
    )
    blocked = _line_user(
        _resident("blocked"), following=False, follows=[datetime.datetime(2025, 4, 30, 23, 59, tzinfo=TOKYO)]
    )
    LineFollowEvent.objects.create(
        line_user=blocked, kind=LineFollowEvent.Kind.UNFOLLOW, occurred_at=datetime.datetime(2025, 5, 2, tzinfo=TOKYO)
    )
    _resident("no-line-user")


def test_following_and_blocked(friends):
    assert _names(_all(_leaf("follow", "following"))) == {"march", "april-first", "refollowed"}
    assert _names(_all(_leaf("follow", "blocked"))) == {"blocked"}
    assert _names(_all(_leaf("follow", "following", negate=True))) == {"blocked", "no-line-user"}


def test_first_follow_date_is_the_earliest_follow_on_local_days(friends):
    assert _names(_all(_leaf("follow", "first_followed_before", value="2025-04-01"))) == {"march", "refollowed"}
    assert _names(_all(_leaf("follow", "first_followed_since", value="2025-04-01"))) == {"april-first", "blocked"}
    assert _names(_all(_leaf("follow", "first_followed_between", value=["2025-04-01", "2025-04-30"]))) == {
        "april-first",
        "blocked",
    }
    assert _names(_all(_leaf("follow", "first_followed_between", value=["2025-03-01", "2025-03-31"]))) == {"march"}


def test_a_segment_keeps_blocked_residents_the_broadcast_skips_them(friends):
    assert "blocked" in _names(_all(_leaf("follow", "first_followed_since", value="2025-01-01")))


# --------------------------------------------------------------------------
# Application history
# --------------------------------------------------------------------------


@pytest.fixture
def applicants():
    version = published_version()
    procedure = version.procedure
    completed = ApplicationStatus.objects.get(procedure=procedure, code="completed")
    other_procedure = published_version().procedure

    def apply(name, *, when, status=None, test=False, to=procedure):
        ApplicationFactory(
            version=version if to == procedure else to.current_version,
            resident=_resident(name),
            submitted_at=when,
            status=status,
            is_test=test,
        )

    apply("april-received", when=datetime.datetime(2025, 4, 10, tzinfo=TOKYO))
    apply("april-completed", when=datetime.datetime(2025, 4, 30, 23, 0, tzinfo=TOKYO), status=completed)
    apply("may-received", when=datetime.datetime(2025, 5, 1, 0, 10, tzinfo=TOKYO))
    apply("simulator", when=datetime.datetime(2025, 4, 10, tzinfo=TOKYO), test=True)
    apply("other-procedure", when=datetime.datetime(2025, 4, 10, tzinfo=TOKYO), to=other_procedure)
    _resident("never-applied")
    return procedure


def test_has_an_application_of_a_procedure_test_applications_excluded(applicants):
    rules = _all(_leaf("application", "has", procedure=applicants.pk))

    assert _names(rules) == {"april-received", "april-completed", "may-received"}


def test_application_with_status_and_submitted_within_local_days(applicants):
    with_status = _leaf("application", "has", procedure=applicants.pk, status="completed")
    in_april = _leaf(
        "application", "has", procedure=applicants.pk, submitted_from="2025-04-01", submitted_to="2025-04-30"
    )
    since_may = _leaf("application", "has", procedure=applicants.pk, submitted_from="2025-05-01")

    assert _names(_all(with_status)) == {"april-completed"}
    assert _names(_all(in_april)) == {"april-received", "april-completed"}
    assert _names(_all(since_may)) == {"may-received"}
    assert "never-applied" in _names(_all({**in_april, "negate": True}))


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def test_valid_rules_have_no_problems(district, children, receivers, applicants):
    rules = _all(
        _leaf("attribute", "in", attribute="district", value=["north"]),
        _any(
            _leaf("attribute", "between", attribute="children", value=[1, 2.5]),
            _leaf("category", "receives", category="bousai"),
            _leaf("category", "never_chose"),
            _leaf("follow", "first_followed_between", value=["2025-01-01", "2025-02-01"], negate=True),
            negate=True,
        ),
        _leaf("application", "has", procedure=applicants.pk, status="completed", submitted_to="2025-12-31"),
    )

    assert rules_problems(rules) == []


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([], "「すべて」か「いずれか」のグループから始めてください"),
        ({"match": "all", "rules": []}, "条件: 空のグループがあります"),
        ({"match": "some", "rules": [{"type": "follow", "op": "following"}]}, "「すべて」か「いずれか」を指定"),
        (_all(_leaf("weather", "sunny")), "条件1: 条件の種類が正しくありません。"),
        (_all(_leaf("attribute", "equals", value="north")), "条件1: 属性を選んでください。"),
        (_all(_leaf("attribute", "like", attribute="district", value="n")), "比べ方が正しくありません"),
        (_all(_leaf("attribute", "in", attribute="district", value=[])), "選択肢を1つ以上選んでください"),
        (_all(_leaf("attribute", "between", attribute="children", value=[3, 1])), "下限を上限以下に"),
        (_all(_leaf("attribute", "between", attribute="children", value=[1])), "下限と上限の2つ"),
        (_all(_leaf("attribute", "gt", attribute="children", value=True)), "数値か日付"),
        (_all(_leaf("follow", "first_followed_before", value="2025/01/01")), "YYYY-MM-DD"),
        (
            _all(_leaf("follow", "first_followed_between", value=["2025-02-01", "2025-01-01"])),
            "期間の始まりを終わり以前に",
        ),
        (_all(_leaf("category", "receives")), "配信カテゴリを選んでください"),
        (_all(_leaf("application", "has", procedure="1")), "手続きを選んでください"),
        (
            _all(_any(_leaf("follow", "following"), {"type": "follow", "op": "following", "negate": "yes"})),
            "条件1-2: 「否定」は",
        ),
    ],
)
def test_shape_problems_are_explained_in_japanese(rules, expected):
    problems = rules_problems(rules)

    assert any(expected in problem for problem in problems), problems


def test_depth_is_limited():
    rules = _all(_leaf("follow", "following"))
    for _level in range(MAX_DEPTH):
        rules = _all(rules)

    assert any(f"入れ子は{MAX_DEPTH}段まで" in problem for problem in rules_problems(rules))


def test_unknown_attributes_choices_categories_procedures_and_statuses_are_named(district, children, applicants):
    rules = _all(
        _leaf("attribute", "equals", attribute="hobby", value="x"),
        _leaf("attribute", "equals", attribute="district", value="west"),
        _leaf("attribute", "in", attribute="district", value=["north", "central"]),
        _leaf("attribute", "gt", attribute="children", value="2025-01-01"),
        _leaf("attribute", "contains", attribute="children", value="1"),
        _leaf("category", "chose", category="gomi"),
        _leaf("application", "has", procedure=999999),
        _leaf("application", "has", procedure=applicants.pk, status="archived"),
    )

    assert rules_problems(rules) == [
        "属性「hobby」はありません。",
        "属性「district」に選択肢「west」はありません。",
        "属性「district」に選択肢「central」はありません。",
        "属性「children」は数値です。数値を入力してください。",
        "属性「children」（数値）には、この比べ方は使えません。",
        "配信カテゴリ「gomi」はありません。",
        "手続き（ID 999999）が見つかりません。",
        f"手続き（ID {applicants.pk}）に状態「archived」はありません。",
    ]


def test_a_date_attribute_wants_dates(birthday):
    problems = rules_problems(_all(_leaf("attribute", "between", attribute="birthday", value=[1, 2])))

    assert problems == ["属性「birthday」は日付です。YYYY-MM-DD の形で入力してください。"]


def test_a_procedure_outside_the_given_ones_reads_as_missing(applicants):
    rules = _all(_leaf("application", "has", procedure=applicants.pk))

    assert rules_problems(rules, procedures=applicants.__class__.objects.none()) == [
        f"手続き（ID {applicants.pk}）が見つかりません。"
    ]
