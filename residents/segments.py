"""Segments: groups of residents described by a tree of rules, evaluated in the database.

Rule tree (the JSON stored in Segment.rules)
============================================

A *group* combines rules; the top of the tree is always a group::

    {"match": "all" | "any", "rules": [<group or leaf>, ...], "negate": false}

"all" = every rule holds (AND), "any" = at least one holds (OR). `negate` (optional, on groups and
leaves) turns the node into its opposite (NOT). Groups nest up to MAX_DEPTH levels (the top group
is level 1) and hold at least one rule; a tree has at most MAX_LEAVES leaves.

Leaves (`type` says which):

attribute – a resident's attribute (residents.models.Attribute), by its key::

    {"type": "attribute", "attribute": "<key>", "op": <op>, "value": <value>}

    single_choice    equals (value: a choice value), in (value: [choice values]), set, not_set
    multiple_choice  equals (chose this option), in (chose at least one of them), set, not_set
    number           eq, lt, lte, gt, gte (value: a JSON number), between (value: [low, high],
                     both included), set, not_set
    date             the same operators as number; values are "YYYY-MM-DD"
    text             equals (the whole text), contains (value: a part of it), set, not_set

    `set` / `not_set` take no value: the resident has / has no value for the attribute.

category – receive settings (受信設定)::

    {"type": "category", "op": "receives", "category": "<key>"}   receives this category
    {"type": "category", "op": "chose", "category": "<key>"}      explicitly chose this category
    {"type": "category", "op": "never_chose"}                     never made receive settings

    A resident who never made receive settings (receive_settings_at is None) receives every
    category, so `receives` includes them; `chose` counts only residents who ticked the category.

follow – the resident's LINE friendship (messaging.models.LineUser / LineFollowEvent)::

    {"type": "follow", "op": "following"}                        currently a friend
    {"type": "follow", "op": "blocked"}                          has blocked the account
    {"type": "follow", "op": "first_followed_before", "value": "YYYY-MM-DD"}     day < value
    {"type": "follow", "op": "first_followed_since", "value": "YYYY-MM-DD"}      day >= value
    {"type": "follow", "op": "first_followed_between", "value": ["YYYY-MM-DD", "YYYY-MM-DD"]}

    The first follow is the earliest follow event; days are local days (settings.TIME_ZONE).

application – application history (procedures.models.Application), test applications excluded::

    {"type": "application", "op": "has", "procedure": <procedure id>, "status": "<status code>",
     "submitted_from": "YYYY-MM-DD", "submitted_to": "YYYY-MM-DD"}

    has an application of the procedure; `status` (the ApplicationStatus code), `submitted_from`
    and `submitted_to` (local days, both included) are optional narrowings.

Membership
==========

A segment is a set of residents, nothing more: it does not drop residents who blocked the account
(a broadcast counts those as skipped when it sends); use the follow leaf to select on friendship.

segment_residents() compiles the tree without reading the database (every leaf is an EXISTS
subquery joined on keys), so the queryset it returns runs as one query. It checks the tree's
shape and raises InvalidSegmentRules when that is wrong; it does not check that the attributes,
categories and procedures named still exist. A missing one behaves like one nobody has a value
for (an attribute can only be deleted while nobody has a value, an application's procedure not
at all). rules_problems() checks everything, against the database, for people editing rules.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from messaging.models import LineFollowEvent, LineUser
from procedures.models import Application, ApplicationStatus, Procedure
from residents.models import Attribute, Category, Resident, ResidentAttributeValue, ResidentCategory, Segment

MAX_DEPTH = 5
MAX_LEAVES = 100

MATCH_ALL = "all"
MATCH_ANY = "any"
MATCHES = (MATCH_ALL, MATCH_ANY)

LEAF_TYPES = ("attribute", "category", "follow", "application")

# Operators of attribute leaves by attribute kind.
SET_OPS = ("set", "not_set")
COMPARISON_OPS = ("eq", "lt", "lte", "gt", "gte", "between")
ATTRIBUTE_OPS: dict[str, tuple[str, ...]] = {
    Attribute.Kind.SINGLE_CHOICE: ("equals", "in", *SET_OPS),
    Attribute.Kind.MULTIPLE_CHOICE: ("equals", "in", *SET_OPS),
    Attribute.Kind.NUMBER: (*COMPARISON_OPS, *SET_OPS),
    Attribute.Kind.DATE: (*COMPARISON_OPS, *SET_OPS),
    Attribute.Kind.TEXT: ("equals", "contains", *SET_OPS),
}
CATEGORY_OPS = ("receives", "chose", "never_chose")
APPLICATION_OPS = ("has",)
FOLLOW_OPS = ("following", "blocked", "first_followed_before", "first_followed_since", "first_followed_between")
TEXT_VALUE_MAX = 200


class InvalidSegmentRules(ValueError):
    """The rule tree cannot be evaluated; `problems` says why, in words for people."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def segment_residents(segment_or_rules: Segment | dict) -> QuerySet[Resident]:
    """The residents in a segment (or matching a rule tree), as one lazily evaluated query.

    Raises InvalidSegmentRules when the tree's shape is wrong (see the module docstring).
    """
    rules = segment_or_rules.rules if isinstance(segment_or_rules, Segment) else segment_or_rules
    problems = list(_shape_problems(rules))
    if problems:
        raise InvalidSegmentRules(problems)
    return Resident.objects.filter(_compile(rules))


def segment_count(rules: dict) -> int:
    """How many residents match the rule tree (one query)."""
    return segment_residents(rules).count()


def _compile(node: dict) -> Q:
    if "match" in node:
        parts = [_compile(child) for child in node["rules"]]
        combined = Q()
        for part in parts:
            combined = combined & part if node["match"] == MATCH_ALL else combined | part
        if node["match"] == MATCH_ANY and not parts:
            combined = Q(pk__in=[])
    else:
        combined = _LEAF_COMPILERS[node["type"]](node)
    return ~combined if node.get("negate") else combined


def _resident_has(queryset: QuerySet, path: str = "resident") -> Q:
    return Q(Exists(queryset.filter(**{path: OuterRef("pk")})))


def _attribute_q(leaf: dict) -> Q:
    op, value = leaf["op"], leaf.get("value")
    rows = ResidentAttributeValue.objects.filter(attribute__key=leaf["attribute"])
    if op == "not_set":
        return ~_resident_has(rows)
    if op == "set":
        return _resident_has(rows)
    if op == "equals":
        return _resident_has(rows.filter(value_text=value))
    if op == "in":
        return _resident_has(rows.filter(value_text__in=list(value)))
    if op == "contains":
        return _resident_has(rows.filter(value_text__icontains=value))
    # Comparisons: the value's JSON type says which column (a date is "YYYY-MM-DD", a number is a number).
    bounds = value if op == "between" else [value]
    column = "value_date" if isinstance(bounds[0], str) else "value_number"
    typed = [_parse_date(bound) if column == "value_date" else Decimal(str(bound)) for bound in bounds]
    lookup = {"eq": "exact", "lt": "lt", "lte": "lte", "gt": "gt", "gte": "gte", "between": "range"}[op]
    return _resident_has(rows.filter(**{f"{column}__{lookup}": typed if op == "between" else typed[0]}))


def _category_q(leaf: dict) -> Q:
    if leaf["op"] == "never_chose":
        return Q(receive_settings_at__isnull=True)
    chose = _resident_has(ResidentCategory.objects.filter(category__key=leaf["category"]))
    if leaf["op"] == "chose":
        return chose
    return Q(receive_settings_at__isnull=True) | chose


def _follow_q(leaf: dict) -> Q:
    op = leaf["op"]
    if op in ("following", "blocked"):
        return _resident_has(LineUser.objects.filter(is_following=op == "following"))
    follows = LineFollowEvent.objects.filter(kind=LineFollowEvent.Kind.FOLLOW)
    path = "line_user__resident"
    # "The first follow falls in [start, end)" is "a follow in [start, end) and none before start".
    if op == "first_followed_before":
        return _resident_has(follows.filter(occurred_at__lt=_day_start(leaf["value"])), path)
    start = _day_start(leaf["value"] if op == "first_followed_since" else leaf["value"][0])
    in_range = follows.filter(occurred_at__gte=start)
    if op == "first_followed_between":
        in_range = in_range.filter(occurred_at__lt=_day_start(leaf["value"][1], next_day=True))
    return _resident_has(in_range, path) & ~_resident_has(follows.filter(occurred_at__lt=start), path)


def _application_q(leaf: dict) -> Q:
    applications = Application.objects.filter(procedure_id=leaf["procedure"], is_test=False)
    if leaf.get("status"):
        applications = applications.filter(status__code=leaf["status"])
    if leaf.get("submitted_from"):
        applications = applications.filter(submitted_at__gte=_day_start(leaf["submitted_from"]))
    if leaf.get("submitted_to"):
        applications = applications.filter(submitted_at__lt=_day_start(leaf["submitted_to"], next_day=True))
    return _resident_has(applications)


_LEAF_COMPILERS = {
    "attribute": _attribute_q,
    "category": _category_q,
    "follow": _follow_q,
    "application": _application_q,
}


def _parse_date(value) -> datetime.date:
    return datetime.date.fromisoformat(value)


def _day_start(value: str, *, next_day: bool = False) -> datetime.datetime:
    day = _parse_date(value) + datetime.timedelta(days=1 if next_day else 0)
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def rules_problems(rules, *, procedures: QuerySet[Procedure] | None = None) -> list[str]:
    """What is wrong with a rule tree, in words for the staff member editing it (empty: nothing).

    `procedures`: the procedures the rules may name (e.g. those the editing user may view); by
    default every procedure. A procedure outside it reads exactly like one that does not exist.
    """
    problems = list(_shape_problems(rules))
    if problems:
        return problems
    leaves = list(_leaves(rules))
    problems.extend(_attribute_problems([leaf for leaf in leaves if leaf["type"] == "attribute"]))
    problems.extend(_category_problems([leaf for leaf in leaves if leaf["type"] == "category"]))
    problems.extend(_application_problems([leaf for leaf in leaves if leaf["type"] == "application"], procedures))
    return problems


PROFILE_LEAF_TYPES = ("attribute", "category")


def rules_read_profiles(rules: dict) -> bool:
    """Whether a (well-formed) rule tree selects residents by their profiles: attributes, categories."""
    return any(leaf.get("type") in PROFILE_LEAF_TYPES for leaf in _leaves(rules))


def _leaves(node: dict) -> Iterator[dict]:
    if "match" in node:
        for child in node["rules"]:
            yield from _leaves(child)
    else:
        yield node


def _shape_problems(rules) -> Iterator[str]:
    """Problems visible without the database: structure, operators, value types."""
    if not isinstance(rules, dict) or "match" not in rules:
        yield _("条件の形式が正しくありません。「すべて」か「いずれか」のグループから始めてください。")
        return
    leaf_count = 0

    def walk(node, depth: int, where: str) -> Iterator[str]:
        nonlocal leaf_count
        if not isinstance(node, dict):
            yield _("%(where)s: 条件の形式が正しくありません。") % {"where": where}
            return
        if not isinstance(node.get("negate", False), bool):
            yield _("%(where)s: 「否定」は true か false で指定してください。") % {"where": where}
        if "match" in node:
            if depth > MAX_DEPTH:
                yield _("%(where)s: グループの入れ子は%(max)d段までです。") % {"where": where, "max": MAX_DEPTH}
                return
            if node["match"] not in MATCHES:
                yield _("%(where)s: グループは「すべて」か「いずれか」を指定してください。") % {"where": where}
            children = node.get("rules")
            if not isinstance(children, list):
                yield _("%(where)s: グループの条件の形式が正しくありません。") % {"where": where}
                return
            if not children:
                yield _("%(where)s: 空のグループがあります。条件を追加するか、グループを削除してください。") % {
                    "where": where
                }
            for index, child in enumerate(children, start=1):
                yield from walk(child, depth + 1, f"{where}{'-' if depth > 1 else ''}{index}")
            return
        leaf_count += 1
        yield from (f"{where}: {problem}" for problem in _leaf_shape_problems(node))

    yield from walk(rules, 1, _("条件"))
    if leaf_count > MAX_LEAVES:
        yield _("条件は%(max)d個までです（%(count)d個あります）。") % {"max": MAX_LEAVES, "count": leaf_count}


def _leaf_shape_problems(leaf: dict) -> Iterator[str]:
    kind = leaf.get("type")
    op = leaf.get("op")
    if kind not in LEAF_TYPES:
        yield _("条件の種類が正しくありません。")
        return
    if kind == "attribute":
        if not _is_text(leaf.get("attribute")):
            yield _("属性を選んでください。")
        all_ops = {each for ops in ATTRIBUTE_OPS.values() for each in ops}
        if op not in all_ops:
            yield _("属性の条件の比べ方が正しくありません。")
        else:
            yield from _attribute_value_shape_problems(op, leaf.get("value"))
    elif kind == "category":
        if op not in CATEGORY_OPS:
            yield _("受信設定の条件の比べ方が正しくありません。")
        elif op != "never_chose" and not _is_text(leaf.get("category")):
            yield _("配信カテゴリを選んでください。")
    elif kind == "follow":
        if op not in FOLLOW_OPS:
            yield _("友だちの条件の比べ方が正しくありません。")
        elif op in ("first_followed_before", "first_followed_since"):
            if not _is_date(leaf.get("value")):
                yield _("日付を YYYY-MM-DD の形で入力してください。")
        elif op == "first_followed_between":
            yield from _date_range_problems(leaf.get("value"))
    else:
        if op not in APPLICATION_OPS:
            yield _("申請の条件の比べ方が正しくありません。")
        procedure = leaf.get("procedure")
        if isinstance(procedure, bool) or not isinstance(procedure, int):
            yield _("手続きを選んでください。")
        if leaf.get("status") not in (None, "") and not _is_text(leaf.get("status")):
            yield _("申請の状態が正しくありません。")
        dates = [leaf.get(name) for name in ("submitted_from", "submitted_to")]
        if any(value not in (None, "") and not _is_date(value) for value in dates):
            yield _("申請日を YYYY-MM-DD の形で入力してください。")
        elif all(dates) and _parse_date(dates[0]) > _parse_date(dates[1]):
            yield _("申請日の期間は、始まりを終わり以前にしてください。")


def _attribute_value_shape_problems(op: str, value) -> Iterator[str]:
    if op in SET_OPS:
        return
    if op in ("equals", "contains"):
        if not _is_text(value) or len(value) > TEXT_VALUE_MAX:
            yield _("値を入力してください（%(max)d文字まで）。") % {"max": TEXT_VALUE_MAX}
    elif op == "in":
        if not isinstance(value, list) or not value or not all(_is_text(each) for each in value):
            yield _("選択肢を1つ以上選んでください。")
    elif op == "between":
        if not isinstance(value, list) or len(value) != 2:
            yield _("「範囲」には下限と上限の2つの値を入力してください。")
        elif all(_is_number(each) for each in value):
            if Decimal(str(value[0])) > Decimal(str(value[1])):
                yield _("範囲の下限を上限以下にしてください。")
        else:
            yield from _date_range_problems(value)
    elif not (_is_number(value) or _is_date(value)):
        yield _("数値か日付（YYYY-MM-DD）を入力してください。")


def _date_range_problems(value) -> Iterator[str]:
    if not isinstance(value, list) or len(value) != 2 or not all(_is_date(each) for each in value):
        yield _("期間の始まりと終わりを YYYY-MM-DD の形で入力してください。")
    elif _parse_date(value[0]) > _parse_date(value[1]):
        yield _("期間の始まりを終わり以前にしてください。")


def _is_text(value) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 10**11


def _is_date(value) -> bool:
    if not isinstance(value, str) or len(value) != 10:
        return False
    try:
        _parse_date(value)
    except ValueError:
        return False
    return True


def _attribute_problems(leaves: list[dict]) -> Iterator[str]:
    if not leaves:
        return
    attributes = {
        attribute.key: attribute
        for attribute in Attribute.objects.filter(key__in={leaf["attribute"] for leaf in leaves})
    }
    for leaf in leaves:
        attribute = attributes.get(leaf["attribute"])
        if attribute is None:
            yield _("属性「%(key)s」はありません。") % {"key": leaf["attribute"]}
            continue
        op, value = leaf["op"], leaf.get("value")
        if op not in ATTRIBUTE_OPS.get(attribute.kind, ()):
            yield _("属性「%(label)s」（%(kind)s）には、この比べ方は使えません。") % {
                "label": attribute.label,
                "kind": attribute.get_kind_display(),
            }
            continue
        if op in SET_OPS:
            continue
        values = value if isinstance(value, list) else [value]
        if attribute.kind == Attribute.Kind.NUMBER and not all(_is_number(each) for each in values):
            yield _("属性「%(label)s」は数値です。数値を入力してください。") % {"label": attribute.label}
        elif attribute.kind == Attribute.Kind.DATE and not all(_is_date(each) for each in values):
            yield _("属性「%(label)s」は日付です。YYYY-MM-DD の形で入力してください。") % {"label": attribute.label}
        elif attribute.kind in (Attribute.Kind.SINGLE_CHOICE, Attribute.Kind.MULTIPLE_CHOICE):
            known = {choice.get("value") for choice in attribute.choices if isinstance(choice, dict)}
            for each in values:
                if each not in known:
                    yield _("属性「%(label)s」に選択肢「%(value)s」はありません。") % {
                        "label": attribute.label,
                        "value": each,
                    }


def _category_problems(leaves: list[dict]) -> Iterator[str]:
    keys = {leaf["category"] for leaf in leaves if leaf["op"] != "never_chose"}
    if not keys:
        return
    known = set(Category.objects.filter(key__in=keys).values_list("key", flat=True))
    for key in sorted(keys - known):
        yield _("配信カテゴリ「%(key)s」はありません。") % {"key": key}


def _application_problems(leaves: list[dict], procedures: QuerySet[Procedure] | None) -> Iterator[str]:
    if not leaves:
        return
    ids = {leaf["procedure"] for leaf in leaves}
    available = Procedure.objects.all() if procedures is None else procedures
    known = set(available.filter(pk__in=ids).values_list("pk", flat=True))
    for procedure_id in sorted(ids - known):
        yield _("手続き（ID %(id)s）が見つかりません。") % {"id": procedure_id}
    wanted = {
        (leaf["procedure"], leaf["status"]) for leaf in leaves if leaf.get("status") and leaf["procedure"] in known
    }
    if not wanted:
        return
    existing = set(
        ApplicationStatus.objects.filter(
            procedure_id__in={procedure_id for procedure_id, _code in wanted},
            code__in={code for _procedure_id, code in wanted},
        ).values_list("procedure_id", "code")
    )
    for procedure_id, code in sorted(wanted - existing):
        yield _("手続き（ID %(id)s）に状態「%(code)s」はありません。") % {"id": procedure_id, "code": code}
