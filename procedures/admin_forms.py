"""Forms of the procedure builder admin.

The condition builder lets staff write `Step.condition` without JSON: up to
three rules (an earlier question, an operator, a value) combined with
"すべて満たす" (all) or "いずれかを満たす" (any). A condition it cannot show
(nested groups, more rules, unknown keys) is kept unchanged and shown read-only.
The pure helpers at the top (condition_to_rules, rules_to_condition,
rule_to_leaf, ...) do the translation and are tested without a database.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from procedures.flow import truncate
from procedures.models import Procedure, ProcedureVersion, Step
from procedures.retention import retention_due_count
from procedures.spec import (
    CHOICE_KINDS,
    COMPARE_OPERATORS,
    CONDITION_OPS,
    INPUT_KINDS,
    KEY_PATTERN,
    profile_target_is_well_formed,
    profile_target_problems,
)
from procedures.spec import Step as SpecStep
from procedures.texts import problem_message
from residents.profile_targets import profile_target_choices, step_profile_problems
from staff.models import Department

# --------------------------------------------------------------------------
# Condition builder: pure helpers
# --------------------------------------------------------------------------

MAX_RULES = 3
RULE_PARTS = ("step", "op", "operator", "value")

OP_CHOICES = [
    ("", "---------"),
    ("equals", gettext_lazy("等しい")),
    ("one_of", gettext_lazy("いずれか")),
    ("compare", gettext_lazy("数値比較")),
    ("answered", gettext_lazy("回答あり")),
    ("not_answered", gettext_lazy("回答なし")),
]
COMPARE_CHOICES = [
    ("", "---------"),
    ("lt", "<"),
    ("le", "≤"),
    ("gt", ">"),
    ("ge", "≥"),
    ("eq", "="),
    ("ne", "≠"),
]
COMBINE_CHOICES = [("all", gettext_lazy("すべて満たす")), ("any", gettext_lazy("いずれかを満たす"))]
NUMERIC_TERM_KINDS = ("number", "single_choice", "multiple_choice", "yes_no")
_LEAF_KEYS = {"step", "op", "value", "values", "operator"}
_YES = ("はい", "yes", "true", "y", "1")
_NO = ("いいえ", "no", "false", "n", "0")


class RuleError(Exception):
    """A rule that cannot be written; `part` is the rule field to show the message on."""

    def __init__(self, part: str, message: str):
        super().__init__(message)
        self.part = part
        self.message = message


def rule_field(number: int, part: str) -> str:
    return f"rule{number}_{part}"


def _is_scalar(value) -> bool:
    return isinstance(value, (str, int, float, bool))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_simple_leaf(condition) -> bool:
    """A leaf the builder can show and write back exactly."""
    if not isinstance(condition, dict) or not set(condition) <= _LEAF_KEYS:
        return False
    op = condition.get("op")
    if op not in CONDITION_OPS or not isinstance(condition.get("step"), str) or not condition["step"]:
        return False
    if op == "equals":
        return _is_scalar(condition.get("value"))
    if op == "one_of":
        values = condition.get("values")
        return isinstance(values, list) and bool(values) and all(_is_scalar(v) for v in values)
    if op == "compare":
        return condition.get("operator") in COMPARE_OPERATORS and _is_number(condition.get("value"))
    return True


def condition_to_rules(condition) -> tuple[str, list[dict]] | None:
    """(combine, leaves) for the builder, or None when the builder cannot represent the condition."""
    if not condition:
        return "all", []
    if is_simple_leaf(condition):
        return "all", [condition]
    if isinstance(condition, dict) and len(condition) == 1:
        combine = next(iter(condition))
        items = condition[combine]
        if (
            combine in ("all", "any")
            and isinstance(items, list)
            and 1 <= len(items) <= MAX_RULES
            and all(is_simple_leaf(item) for item in items)
        ):
            return combine, list(items)
    return None


def rules_to_condition(combine: str, leaves: list[dict]) -> dict | None:
    if not leaves:
        return None
    if len(leaves) == 1:
        return leaves[0]
    return {combine if combine in ("all", "any") else "all": leaves}


def parse_number(text) -> int | float | None:
    """A number typed by staff (full-width digits and 1,200 allowed); None when it is not one."""
    text = unicodedata.normalize("NFKC", str(text)).strip().replace(",", "")
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", text):
        return None
    number = float(text)
    return int(number) if number.is_integer() else number


def split_values(text: str) -> list[str]:
    """いずれか: values separated by commas (also 、 and ，)."""
    return [part.strip() for part in re.split(r"[,、，]", text or "") if part.strip()]


def _number_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def value_text(value) -> str:
    if isinstance(value, bool):
        return _("はい") if value else _("いいえ")
    return _number_text(value)


def leaf_value_text(leaf: dict) -> str:
    if leaf.get("op") == "one_of":
        return ", ".join(value_text(value) for value in leaf.get("values") or [])
    if leaf.get("op") in ("equals", "compare"):
        return value_text(leaf.get("value"))
    return ""


def _convert_value(text: str, ref: dict):
    """One value typed by staff, as stored in the condition for the referenced step."""
    kind = ref.get("kind")
    name = truncate(ref.get("label") or ref.get("key"), 20)
    if kind == "number":
        number = parse_number(text)
        if number is None:
            raise RuleError("value", _("「%(value)s」は数値ではありません。数値を入力してください（例: 3）。") % {"value": text})
        return number
    if kind == "yes_no":
        lowered = unicodedata.normalize("NFKC", text).strip().lower()
        if lowered in _YES:
            return True
        if lowered in _NO:
            return False
        raise RuleError("value", _("「%(step)s」は はい か いいえ で指定してください。") % {"step": name})
    if kind in CHOICE_KINDS:
        choices = ref.get("choices") or []
        for choice in choices:
            if text == choice.get("value"):
                return choice["value"]
        for choice in choices:
            if text == str(choice.get("label", "")).strip():
                return choice["value"]
        known = ", ".join(f"{c.get('value')}（{c.get('label')}）" for c in choices) or _("（選択肢がまだありません）")
        raise RuleError(
            "value",
            _("「%(value)s」は「%(step)s」の選択肢にありません。選べる値: %(known)s")
            % {"value": text, "step": name, "known": known},
        )
    return text


def rule_to_leaf(op: str, operator: str, text: str, ref: dict) -> dict:
    """A condition leaf from one builder rule; `ref` is the referenced step as spec data (kind, choices...)."""
    key = ref["key"]
    text = (text or "").strip()
    if op in ("answered", "not_answered"):
        return {"step": key, "op": op}
    if op == "compare":
        if ref.get("kind") != "number":
            raise RuleError("op", _("数値比較は「数値」のステップにだけ使えます。"))
        if operator not in COMPARE_OPERATORS:
            raise RuleError("operator", _("比べ方（<、≤、>、≥、=、≠）を選んでください。"))
        if not text:
            raise RuleError("value", _("比べる数値を入力してください。"))
        number = parse_number(text)
        if number is None:
            raise RuleError("value", _("数値比較の値「%(value)s」は数値ではありません。数値を入力してください（例: 3）。") % {"value": text})
        return {"step": key, "op": "compare", "operator": operator, "value": number}
    if op == "equals":
        if not text:
            raise RuleError("value", _("値を入力してください。"))
        return {"step": key, "op": "equals", "value": _convert_value(text, ref)}
    if op == "one_of":
        parts = split_values(text)
        if not parts:
            raise RuleError("value", _("値をカンマ区切りで1つ以上入力してください（例: tansu, bed）。"))
        return {"step": key, "op": "one_of", "values": [_convert_value(part, ref) for part in parts]}
    raise RuleError("op", _("条件の種類を選んでください。"))


# --------------------------------------------------------------------------
# Procedures and templates
# --------------------------------------------------------------------------


class ProcedureForm(forms.ModelForm):
    # Shortening the retention period deletes existing applications at the next daily run: the
    # save says how many and needs this box ticked (ProcedureAdmin shows it on the change page).
    confirm_retention_shortening = forms.BooleanField(
        label=gettext_lazy("保存期間の短縮による削除を確認しました"),
        required=False,
        help_text=gettext_lazy("保存期間を短くするときだけ必要です。"),
    )

    class Meta:
        model = Procedure
        fields = ["name", "description", "keywords", "receipt_prefix", "department", "retention_days"]
        widgets = {"keywords": forms.Textarea(attrs={"rows": 4}), "description": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "retention_days" in self.fields:
            self.fields["retention_days"].required = False

    def clean_retention_days(self):
        # Left empty: the period stays as it is (the default for a new procedure).
        value = self.cleaned_data.get("retention_days")
        return self.instance.retention_days if value is None else value

    def clean(self):
        cleaned = super().clean()
        new = cleaned.get("retention_days")
        if self.instance.pk is None or new is None:
            return cleaned
        stored = Procedure.objects.filter(pk=self.instance.pk).values_list("retention_days", flat=True).first()
        if stored is not None and new < stored and not cleaned.get("confirm_retention_shortening"):
            count = retention_due_count(procedure=self.instance, retention_days=new)
            self.add_error(
                "confirm_retention_shortening",
                _(
                    "保存期間を %(old)s 日から %(new)s 日に短くすると、次回の削除処理（毎日）で既存の申請 %(count)s 件が"
                    "回答・添付画像ごと削除され、元に戻せません。よろしければチェックを入れてもう一度保存してください。"
                )
                % {"old": stored, "new": new, "count": count},
            )
        return cleaned

    def clean_receipt_prefix(self):
        prefix = unicodedata.normalize("NFKC", self.cleaned_data.get("receipt_prefix") or "").strip().upper()
        if prefix and not re.fullmatch(r"[A-Z0-9]{1,12}", prefix):
            raise ValidationError(_("半角英大文字と数字で入力してください。"))
        return prefix


class TemplateImportForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("テンプレートファイル（JSON）"),
        help_text=gettext_lazy("他の自治体や「テンプレートとして書き出す」で作った .json ファイル。"),
    )
    department = forms.ModelChoiceField(
        queryset=Department.objects.all(), required=False, label=gettext_lazy("担当部署")
    )
    receipt_prefix = forms.CharField(
        label=gettext_lazy("受付番号の接頭辞"),
        required=False,
        max_length=12,
        help_text=gettext_lazy("空欄ならテンプレートに書かれた接頭辞を使います。すでに使われているときは指定してください。"),
    )

    def __init__(self, *args, max_bytes: int, departments, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_bytes = max_bytes
        self.fields["department"].queryset = departments  # only where the user may build procedures

    def clean_file(self):
        uploaded = self.cleaned_data["file"]
        # Checked from the size the upload handler reports, before the content is read.
        if uploaded.size > self.max_bytes:
            raise ValidationError(
                _("ファイルが大きすぎます（%(size)s バイト）。上限は %(max)s バイトです。")
                % {"size": uploaded.size, "max": self.max_bytes}
            )
        return uploaded

    def clean_receipt_prefix(self):
        prefix = unicodedata.normalize("NFKC", self.cleaned_data.get("receipt_prefix") or "").strip().upper()
        if prefix and not re.fullmatch(r"[A-Z0-9]{1,12}", prefix):
            raise ValidationError(_("半角英大文字と数字で入力してください。"))
        return prefix


# --------------------------------------------------------------------------
# Steps and the condition builder
# --------------------------------------------------------------------------


class AnyChoiceField(forms.ChoiceField):
    """A select whose value is checked in the form's clean(), with a message that says what is wrong."""

    def valid_value(self, value):
        return True


def _step_spec(step: Step) -> dict:
    return {
        "key": step.key,
        "kind": step.kind,
        "label": step.label,
        "options": step.spec_options(),
        "choices": step.spec_choices(),
    }


def _rule_step_field(number: int):
    return AnyChoiceField(label=format_lazy(gettext_lazy("条件{number}: 前の質問"), number=number), required=False)


def _rule_op_field(number: int):
    return forms.ChoiceField(label=gettext_lazy("種類"), choices=OP_CHOICES, required=False)


def _rule_operator_field(number: int):
    return forms.ChoiceField(label=gettext_lazy("比べ方"), choices=COMPARE_CHOICES, required=False)


def _rule_value_field(number: int):
    return forms.CharField(
        label=gettext_lazy("値"),
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"size": 24}),
        help_text=gettext_lazy("いずれか はカンマ区切り（例: tansu, bed）。はい／いいえ の質問は「はい」か「いいえ」。")
        if number == MAX_RULES
        else "",
    )


class StepForm(forms.ModelForm):
    """The form of every step kind: the model's fields plus the condition builder (rules 1 to MAX_RULES)."""

    condition_combine = forms.ChoiceField(
        label=gettext_lazy("条件の組み合わせ"),
        choices=COMBINE_CHOICES,
        initial="all",
        required=False,
        widget=forms.RadioSelect,
    )
    rule1_step = _rule_step_field(1)
    rule1_op = _rule_op_field(1)
    rule1_operator = _rule_operator_field(1)
    rule1_value = _rule_value_field(1)
    rule2_step = _rule_step_field(2)
    rule2_op = _rule_op_field(2)
    rule2_operator = _rule_operator_field(2)
    rule2_value = _rule_value_field(2)
    rule3_step = _rule_step_field(3)
    rule3_op = _rule_op_field(3)
    rule3_operator = _rule_operator_field(3)
    rule3_value = _rule_value_field(3)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.builder_version = self._resolve_version()
        self.condition_locked = False
        self._fill_builder()
        self._fill_profile_target()

    # -- version and position of this step (also while adding) -------------

    def _resolve_version(self) -> ProcedureVersion | None:
        if self.instance.pk and self.instance.version_id:
            return self.instance.version
        raw = self.data.get(self.add_prefix("version")) if self.is_bound else None
        raw = raw or self.initial.get("version")
        if isinstance(raw, ProcedureVersion):
            return raw
        try:
            return ProcedureVersion.objects.filter(pk=int(raw)).first()
        except (TypeError, ValueError):
            return None

    def _position(self) -> int:
        raw = None
        if self.is_bound and "position" in self.fields:
            raw = self.data.get(self.add_prefix("position"))
        if raw in (None, ""):
            raw = self.initial.get("position", self.instance.position)
        try:
            return int(raw)
        except (TypeError, ValueError):
            return self.instance.position or 0

    def _version_steps(self) -> list[Step]:
        if self.builder_version is None:
            return []
        steps = Step.objects.filter(version=self.builder_version).prefetch_related("choices").order_by("position", "id")
        return [step for step in steps if step.pk != self.instance.pk]

    def _is_before(self, step: Step, position: int) -> bool:
        own_id = self.instance.pk if self.instance.pk else float("inf")
        return (step.position, step.pk) < (position, own_id)

    def _fill_builder(self):
        self.version_steps = self._version_steps()
        position = self._position()
        earlier = [s for s in self.version_steps if s.kind in INPUT_KINDS and self._is_before(s, position)]
        choices = [("", "---------")] + [(s.key, f"{truncate(s.label, 30)}（{s.key}）") for s in earlier]
        representation = condition_to_rules(self.instance.condition)
        leaves = representation[1] if representation else []
        known = {key for key, _label in choices}
        by_key = {s.key: s for s in self.version_steps}
        for leaf in leaves:
            # Keep a referenced step visible even when it is no longer before this one, so saving explains why.
            if leaf["step"] not in known:
                ref = by_key.get(leaf["step"])
                text = f"{truncate(ref.label, 30)}（{ref.key}）" if ref else leaf["step"]
                choices.append((leaf["step"], _("%(step)s ※このステップより前ではありません") % {"step": text}))
                known.add(leaf["step"])
        for number in range(1, MAX_RULES + 1):
            self.fields[rule_field(number, "step")].choices = choices
        if representation is None:
            self.condition_locked = True
            for name in self._builder_field_names():
                self.fields[name].disabled = True
            self.fields["condition_combine"].help_text = _(
                "この表示条件は入れ子など、ここでは表せない形です。変更せずにそのまま保存されます（下の JSON を参照）。"
            )
            return
        if not self.is_bound:
            self.initial["condition_combine"] = representation[0]
            for number, leaf in enumerate(leaves, start=1):
                self.initial[rule_field(number, "step")] = leaf["step"]
                self.initial[rule_field(number, "op")] = leaf["op"]
                self.initial[rule_field(number, "operator")] = leaf.get("operator", "")
                self.initial[rule_field(number, "value")] = leaf_value_text(leaf)

    def _fill_profile_target(self):
        if "profile_target" not in self.fields:
            return
        model_field = self.fields["profile_target"]
        choices = profile_target_choices(self.instance.kind)
        current = self.instance.profile_target
        if current and current not in dict(choices):
            # Kept visible so that saving explains why it no longer fits.
            choices.append((current, _("%(target)s ※このステップには使えません") % {"target": current}))
        self.fields["profile_target"] = AnyChoiceField(
            label=model_field.label, help_text=model_field.help_text, choices=choices, required=False
        )

    def _profile_target_check(self, cleaned):
        target = cleaned.get("profile_target") or ""
        if "profile_target" not in self.fields or not target:
            return
        if not profile_target_is_well_formed(target):
            self.add_error("profile_target", _("保存先を一覧から選んでください。"))
            return
        instance = self.instance
        options = {
            option: cleaned.get(field, getattr(instance, field)) for option, field in instance.option_fields.items()
        }
        step = SpecStep(
            key=cleaned.get("key") or instance.key or "",
            kind=instance.kind,
            label=cleaned.get("label") or "",
            sensitive=bool(cleaned.get("sensitive", instance.sensitive)),
            options=options,
            profile_target=target,
        )
        spec_problems = profile_target_problems(step)
        for problem in spec_problems:
            self.add_error("profile_target", problem_message(problem))
        if not spec_problems:
            # The choices are saved after this form (inline): publishing checks them against the attribute.
            for message in step_profile_problems(step, check_choices=False):
                self.add_error("profile_target", message)

    def _builder_field_names(self) -> list[str]:
        names = ["condition_combine"]
        for number in range(1, MAX_RULES + 1):
            names.extend(rule_field(number, part) for part in RULE_PARTS)
        return names

    # -- validation ---------------------------------------------------------

    def clean_key(self):
        key = (self.cleaned_data.get("key") or "").strip()
        if not KEY_PATTERN.match(key):
            raise ValidationError(
                _("キーは半角英小文字で始め、半角英小文字・数字・_ だけの40文字以内にしてください（例: pickup_date）。")
            )
        if any(step.key == key for step in getattr(self, "version_steps", [])):
            raise ValidationError(_("キー「%(key)s」はこのバージョンの別のステップで使われています。") % {"key": key})
        return key

    def clean_version(self):
        version = self.cleaned_data.get("version")
        if version is not None and not version.is_draft:
            raise ValidationError(_("公開済みのバージョンにはステップを追加できません。下書きを編集してください。"))
        return version

    def clean(self):
        cleaned = super().clean()
        self._profile_target_check(cleaned)
        if self.condition_locked:
            return cleaned
        position = cleaned.get("position")
        if position is None:
            position = self._position()
        by_key = {step.key: step for step in self.version_steps}
        leaves = []
        for number in range(1, MAX_RULES + 1):
            key = cleaned.get(rule_field(number, "step")) or ""
            op = cleaned.get(rule_field(number, "op")) or ""
            operator = cleaned.get(rule_field(number, "operator")) or ""
            text = cleaned.get(rule_field(number, "value")) or ""
            if not (key or op or text.strip()):
                continue
            if not key:
                self.add_error(rule_field(number, "step"), _("条件に使う前の質問を選んでください。"))
                continue
            if not op:
                self.add_error(rule_field(number, "op"), _("条件の種類を選んでください。"))
                continue
            ref = by_key.get(key)
            if ref is None:
                self.add_error(
                    rule_field(number, "step"), _("「%(key)s」というステップはこのバージョンにありません。") % {"key": key}
                )
                continue
            name = truncate(ref.label, 20)
            if ref.kind not in INPUT_KINDS:
                self.add_error(
                    rule_field(number, "step"),
                    _("「%(step)s」は質問ではないため、条件に使えません。") % {"step": name},
                )
                continue
            if not self._is_before(ref, position):
                self.add_error(
                    rule_field(number, "step"),
                    _("「%(step)s」はこのステップより後にあります。条件には、このステップより前の質問を選んでください。")
                    % {"step": name},
                )
                continue
            try:
                leaves.append(rule_to_leaf(op, operator, text, _step_spec(ref)))
            except RuleError as error:
                self.add_error(rule_field(number, error.part), error.message)
        if not self.errors:
            combine = cleaned.get("condition_combine") or "all"
            self.instance.condition = rules_to_condition(combine, leaves)
        return cleaned


WEEKDAY_CHOICES = [
    (0, gettext_lazy("月")),
    (1, gettext_lazy("火")),
    (2, gettext_lazy("水")),
    (3, gettext_lazy("木")),
    (4, gettext_lazy("金")),
    (5, gettext_lazy("土")),
    (6, gettext_lazy("日")),
]


class DateStepForm(StepForm):
    weekdays = forms.TypedMultipleChoiceField(
        label=gettext_lazy("受け付ける曜日"),
        choices=WEEKDAY_CHOICES,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": gettext_lazy("受け付ける曜日を1つ以上選んでください。")},
    )
    excluded_dates = forms.CharField(
        label=gettext_lazy("除外する日付"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=gettext_lazy("1行に1つ、YYYY-MM-DD の形で（例: 2026-12-31）。年末年始など。"),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            dates = self.instance.excluded_dates or []
            self.initial["excluded_dates"] = "\n".join(str(day) for day in dates)
            # A new step starts from the model's default (every day), not from no day at all.
            self.initial.setdefault("weekdays", list(self.instance.weekdays or []))

    def clean_excluded_dates(self):
        days = set()
        for line in (self.cleaned_data.get("excluded_dates") or "").splitlines():
            text = unicodedata.normalize("NFKC", line).strip()
            if not text:
                continue
            try:
                days.add(dt.date.fromisoformat(text).isoformat())
            except ValueError:
                raise ValidationError(
                    _("「%(value)s」は日付として読めません。YYYY-MM-DD の形で入力してください。") % {"value": text}
                ) from None
        return sorted(days)


# --------------------------------------------------------------------------
# Computed values: terms as rows of (step, factor)
# --------------------------------------------------------------------------


class TermsWidget(forms.Widget):
    """Rows of (step select, factor) without JSON; as many rows as there are terms plus two empty ones."""

    choices: list[tuple[str, str]]

    def __init__(self, attrs=None, choices=()):
        super().__init__(attrs)
        self.choices = list(choices)

    @staticmethod
    def rows(value) -> list[tuple[str, str]]:
        rows = []
        for item in value or []:
            if isinstance(item, dict):
                rows.append((str(item.get("step") or ""), _number_text(item.get("factor", ""))))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                rows.append((str(item[0] or ""), str(item[1] if item[1] is not None else "")))
        return rows

    def render(self, name, value, attrs=None, renderer=None):
        rows = self.rows(value)
        rows += [("", "")] * max(2, 3 - len(rows))
        choices = [("", "---------"), *self.choices]
        known = {key for key, _label in choices}
        lines = []
        for index, (step, factor) in enumerate(rows):
            row_choices = choices if step in known else [*choices, (step, _("（不明なステップ %(key)s）") % {"key": step})]
            select = forms.Select(choices=row_choices).render(f"{name}_{index}_step", step, renderer=renderer)
            number = forms.TextInput(attrs={"size": 8, "inputmode": "decimal"}).render(
                f"{name}_{index}_factor", factor, renderer=renderer
            )
            lines.append((select, number))
        body = format_html_join("", "<tr><td>{}</td><td>× {}</td></tr>", lines)
        return format_html(
            '<table class="procedure-terms"><thead><tr><th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>',
            _("ステップ"),
            _("係数"),
            body,
        )

    def value_from_datadict(self, data, files, name):
        rows = []
        index = 0
        while f"{name}_{index}_step" in data or f"{name}_{index}_factor" in data:
            rows.append((data.get(f"{name}_{index}_step", ""), data.get(f"{name}_{index}_factor", "")))
            index += 1
            if index > 200:
                break
        return rows

    def value_omitted_from_data(self, data, files, name):
        return f"{name}_0_step" not in data


class TermsField(forms.Field):
    widget = TermsWidget

    def to_python(self, value):
        terms = []
        for step, factor in TermsWidget.rows(value):
            step = step.strip()
            factor = factor.strip()
            if not step and not factor:
                continue
            if not step:
                raise ValidationError(_("係数だけが入力された行があります。ステップを選んでください。"))
            number = 1 if not factor else parse_number(factor)
            if number is None:
                raise ValidationError(_("係数「%(value)s」は数値ではありません。") % {"value": factor})
            terms.append({"step": step, "factor": number})
        return terms

    def validate(self, value):
        super().validate(value)
        allowed = {key for key, _label in self.widget.choices}
        for term in value:
            if term["step"] not in allowed and term["step"] not in getattr(self, "kept_keys", set()):
                raise ValidationError(
                    _("「%(key)s」は計算に使えるステップ（数値・選択・はい／いいえ）ではありません。") % {"key": term["step"]}
                )

    def has_changed(self, initial, data):
        try:
            return self.to_python(initial) != self.to_python(data)
        except ValidationError:
            return True


class ComputedValueForm(forms.ModelForm):
    terms = TermsField(
        label=gettext_lazy("計算式"),
        required=False,
        help_text=gettext_lazy("「ステップの値 × 係数」の合計に固定額を足します。選択肢は金額などの合計、はい＝1・いいえ＝0。"),
    )

    # Set by computed_value_form_for(): the version whose steps may be used.
    builder_version: ProcedureVersion | None = None

    class Meta:
        fields = ["position", "key", "label", "unit", "constant", "terms"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choices = []
        if self.builder_version is not None:
            for step in Step.objects.filter(version=self.builder_version).order_by("position", "id"):
                if step.kind in NUMERIC_TERM_KINDS:
                    choices.append((step.key, f"{truncate(step.label, 24)}（{step.key}）"))
        field = self.fields["terms"]
        field.widget.choices = choices
        # A term naming a removed step stays until staff remove it (publishing reports it).
        field.kept_keys = {term.get("step") for term in (self.instance.terms or []) if isinstance(term, dict)}

    def clean_key(self):
        key = (self.cleaned_data.get("key") or "").strip()
        if not KEY_PATTERN.match(key):
            raise ValidationError(_("キーは半角英小文字で始め、半角英小文字・数字・_ だけの40文字以内にしてください（例: fee）。"))
        return key


def computed_value_form_for(version: ProcedureVersion | None) -> type[ComputedValueForm]:
    return type("ComputedValueFormForVersion", (ComputedValueForm,), {"builder_version": version})
