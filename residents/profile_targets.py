"""Which procedure steps may save their answer into the resident's profile (a step's `profile_target`).

Staff map a question to a resident attribute ("attribute:<key>") or to the 受信設定 categories
("categories"). The spec checks what it can alone (procedures.spec.profile_target_problems: no
sensitive step, a kind that has a value); this module checks the mapping against the attributes
and categories that exist, for publishing (procedures.services.version_problems) and for the
builder's step form. Procedures import it, so it stays free of the residents' services (which reach
LINE); the answers are written by residents/procedure_profile.py.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from procedures.spec import (
    PROFILE_TARGET_ATTRIBUTE_PREFIX,
    PROFILE_TARGET_CATEGORIES,
    ProcedureSpec,
    Step,
    profile_target_attribute_key,
    profile_target_problems,
)
from procedures.texts import KIND_NAMES, render_location
from residents.models import Attribute, Category
from residents.selectors import TEXT_VALUE_MAX

# The attribute kind each step kind's answer fits.
ATTRIBUTE_KIND_OF_STEP = {
    "short_text": Attribute.Kind.TEXT,
    "number": Attribute.Kind.NUMBER,
    "date": Attribute.Kind.DATE,
    "single_choice": Attribute.Kind.SINGLE_CHOICE,
    "yes_no": Attribute.Kind.SINGLE_CHOICE,
    "multiple_choice": Attribute.Kind.MULTIPLE_CHOICE,
}
# A yes/no answer is stored as one of these choice values of a single-choice attribute.
YES_NO_VALUES = {True: "yes", False: "no"}


def step_profile_problems(step: Step, *, check_choices: bool = True) -> list[str]:
    """What is wrong with the step's mapping given the attributes and categories that exist now.

    Only called for a mapping the spec accepts (procedures.spec.profile_target_problems).
    `check_choices`: False while the step's choices are being edited alongside (the builder form).
    """
    if step.profile_target == PROFILE_TARGET_CATEGORIES:
        if not check_choices:
            return []
        keys = set(Category.objects.values_list("key", flat=True))
        unknown = [choice.value for choice in step.choices if choice.value not in keys]
        if unknown:
            return [
                _("選択肢の値「%(values)s」は配信カテゴリのキーではありません。使えるキー：%(keys)s")
                % {"values": "、".join(unknown), "keys": "、".join(sorted(keys)) or _("（配信カテゴリがありません）")}
            ]
        return []
    key = profile_target_attribute_key(step.profile_target)
    attribute = Attribute.objects.filter(key=key).first()
    if attribute is None:
        return [
            _("住民の属性「%(key)s」がありません。先に住民の属性を作成するか、保存先を外してください。") % {"key": key}
        ]
    wanted = ATTRIBUTE_KIND_OF_STEP[step.kind]
    if attribute.kind != wanted:
        return [
            _(
                "「%(step_kind)s」のステップの回答は「%(wanted)s」の属性にだけ保存できます（「%(label)s」は%(kind)sです）。"
            )
            % {
                "step_kind": KIND_NAMES[step.kind],
                "wanted": Attribute.Kind(wanted).label,
                "label": attribute.label,
                "kind": attribute.get_kind_display(),
            }
        ]
    known = {choice.get("value") for choice in attribute.choices or []}
    if step.kind == "yes_no":
        missing = [value for value in YES_NO_VALUES.values() if value not in known]
        if missing:
            return [
                _("はい／いいえの回答を保存するには、属性「%(label)s」に値 yes と no の選択肢が必要です。")
                % {"label": attribute.label}
            ]
    if step.kind == "short_text" and (step.options.get("max_length") or 0) > TEXT_VALUE_MAX:
        return [
            _("属性に保存できる文字数は%(max)s文字までです。このステップの最大文字数を%(max)s以下にしてください。")
            % {"max": TEXT_VALUE_MAX}
        ]
    if check_choices and step.kind in ("single_choice", "multiple_choice"):
        unknown = [choice.value for choice in step.choices if choice.value not in known]
        if unknown:
            return [
                _("選択肢の値「%(values)s」が属性「%(label)s」の選択肢にありません。属性の選択肢の値：%(known)s")
                % {
                    "values": "、".join(unknown),
                    "label": attribute.label,
                    "known": "、".join(choice.get("value") for choice in attribute.choices or []),
                }
            ]
    return []


def version_profile_problems(spec: ProcedureSpec, spec_data: dict) -> list[str]:
    """The step mappings of a version that do not fit the attributes, each located for staff."""
    problems = []
    for index, step in enumerate(spec.steps):
        if not step.profile_target or profile_target_problems(step):
            continue  # nothing mapped, or already reported by the spec's own validation
        where = render_location(("steps", index, "profile_target"), spec_data)
        problems.extend(f"{where}：{message}" for message in step_profile_problems(step))
    return problems


def profile_target_choices(step_kind: str) -> list[tuple[str, str]]:
    """The targets a step of `step_kind` can save into, for the builder's select ("" = none)."""
    choices = [("", _("保存しない"))]
    wanted = ATTRIBUTE_KIND_OF_STEP.get(step_kind)
    if wanted is None:
        return choices
    if step_kind == "multiple_choice":
        choices.append((PROFILE_TARGET_CATEGORIES, _("受信カテゴリ（受信設定）")))
    for attribute in Attribute.objects.filter(kind=wanted):
        choices.append(
            (
                f"{PROFILE_TARGET_ATTRIBUTE_PREFIX}{attribute.key}",
                _("住民の属性「%(label)s」（%(key)s）") % {"label": attribute.label, "key": attribute.key},
            )
        )
    return choices
