"""The procedure spec: the plain-data snapshot of a procedure version.

This is the one contract between the builder (Django models, admin, import and
export of templates) and the conversation engine. A published version stores
its spec as JSON, so it never changes after publishing; templates shared
between cities are the same JSON wrapped in an envelope (see
docs/procedure-format.md).

Pure Python: no Django, no database, no HTTP. Problems are returned as codes
with a location and parameters; procedures/texts.py turns them into Japanese.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

SPEC_FORMAT = "govtech.procedure"
SPEC_FORMAT_VERSION = 1

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# Kinds that ask the resident something and store an answer under the step key.
INPUT_KINDS = (
    "short_text",
    "long_text",
    "number",
    "date",
    "single_choice",
    "multiple_choice",
    "yes_no",
    "image",
    "location",
)
# Kinds that only speak or end the conversation.
FLOW_KINDS = ("message", "confirmation", "completion", "exit")
STEP_KINDS = INPUT_KINDS + FLOW_KINDS
CHOICE_KINDS = ("single_choice", "multiple_choice")

# A step's `profile_target` saves its answer into the resident's profile when the application is
# submitted: "categories" (the 受信設定 categories, whose keys are the choice values) or
# "attribute:<attribute key>". Keys never change once set, so templates can name them.
PROFILE_TARGET_CATEGORIES = "categories"
PROFILE_TARGET_ATTRIBUTE_PREFIX = "attribute:"
# The kinds whose answers fit a profile value (see residents/procedure_profile.py for the pairs).
PROFILE_TARGET_KINDS = ("short_text", "number", "date", "single_choice", "multiple_choice", "yes_no")

TEXT_FORMATS = ("none", "phone", "postal_code", "email", "katakana", "regex")
CONDITION_OPS = ("equals", "one_of", "compare", "answered", "not_answered")
COMPARE_OPERATORS = ("lt", "le", "gt", "ge", "eq", "ne")
IMAGE_TYPES = ("image/jpeg", "image/png")
# A channel that refused to keep a resident's file sends an image event whose ref starts with
# this, with the file's real type and size, so the engine re-asks with the reason.
REJECTED_IMAGE_REF_PREFIX = "rejected:"

# Defaults and hard limits applied when options are missing.
DEFAULT_SHORT_TEXT_MAX = 100
DEFAULT_LONG_TEXT_MAX = 1000
HARD_TEXT_MAX = 5000  # a LINE text message holds at most 5000 characters
DEFAULT_IMAGE_MAX_BYTES = 10 * 1024 * 1024
MAX_STEPS = 200
MAX_CHOICES = 100
MAX_KEYWORDS = 20
# Bounds that keep every number representable in the database and in date arithmetic.
MAX_DAYS_OFFSET = 365 * 150  # 150 years either side of today (birth dates reach far back)
MAX_AMOUNT = 10**9  # choice amounts, computed constants and factors
MAX_NUMBER_LIMIT = 10**11  # number step min/max
MAX_KEYWORD_LENGTH = 50


@dataclass(frozen=True)
class Problem:
    """Something wrong with a spec, located so a person can find it.

    `location` is a path such as ("steps", 3, "condition"); `code` names the
    problem; `params` fills the Japanese message in procedures/texts.py.
    """

    code: str
    location: tuple = ()
    params: dict = field(default_factory=dict)


class SpecError(ValueError):
    def __init__(self, problems: list[Problem]):
        super().__init__(f"{len(problems)} problem(s) in procedure spec")
        self.problems = problems


@dataclass(frozen=True)
class Choice:
    value: str
    label: str
    amount: float = 0  # e.g. a fee per item, used by computed values


@dataclass(frozen=True)
class Step:
    key: str
    kind: str
    label: str
    help_text: str = ""
    required: bool = True
    sensitive: bool = False
    condition: dict | None = None
    options: dict = field(default_factory=dict)
    choices: tuple[Choice, ...] = ()
    profile_target: str = ""

    @property
    def is_input(self) -> bool:
        return self.kind in INPUT_KINDS


def profile_target_attribute_key(target: str) -> str | None:
    """The attribute key of an "attribute:<key>" profile target; None for any other target."""
    if isinstance(target, str) and target.startswith(PROFILE_TARGET_ATTRIBUTE_PREFIX):
        return target[len(PROFILE_TARGET_ATTRIBUTE_PREFIX) :]
    return None


def profile_target_is_well_formed(target: str) -> bool:
    key = profile_target_attribute_key(target)
    return target == PROFILE_TARGET_CATEGORIES or (key is not None and bool(KEY_PATTERN.match(key)))


@dataclass(frozen=True)
class Term:
    step: str
    factor: float = 1


@dataclass(frozen=True)
class Computed:
    """A value staff define from earlier answers: constant + sum(value(step) * factor).

    value(step) is the number for a number step, the sum of the chosen
    choices' amounts for a choice step, 1/0 for yes/no, and 0 when the step
    was not answered or skipped.
    """

    key: str
    label: str
    terms: tuple[Term, ...] = ()
    constant: float = 0
    unit: str = ""


@dataclass(frozen=True)
class ProcedureSpec:
    procedure_id: int | None
    version_id: int | None
    name: str
    description: str = ""
    keywords: tuple[str, ...] = ()
    receipt_prefix: str = ""
    steps: tuple[Step, ...] = ()
    computed: tuple[Computed, ...] = ()

    def step_index(self, key: str) -> int:
        for index, step in enumerate(self.steps):
            if step.key == key:
                return index
        raise KeyError(key)

    def get_step(self, key: str) -> Step:
        return self.steps[self.step_index(key)]

    @property
    def input_steps(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.is_input)


# --------------------------------------------------------------------------
# Reading a spec from JSON-like data, with every problem located.
# --------------------------------------------------------------------------


class _Reader:
    def __init__(self):
        self.problems: list[Problem] = []

    def add(self, code, location, **params):
        self.problems.append(Problem(code, tuple(location), params))

    def text(self, data, name, location, *, required=False, max_length=1000, default=""):
        value = data.get(name, default)
        if value is None:
            value = default
        if not isinstance(value, str):
            self.add("wrong_type", (*location, name), expected="text")
            return default
        if required and not value.strip():
            self.add("missing", (*location, name))
        if len(value) > max_length:
            self.add("too_long", (*location, name), max=max_length)
            return value[:max_length]
        return value

    def boolean(self, data, name, location, default):
        value = data.get(name, default)
        if not isinstance(value, bool):
            self.add("wrong_type", (*location, name), expected="boolean")
            return default
        return value

    def number(self, data, name, location, default=None, *, integer=False, limit=None):
        value = data.get(name, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.add("wrong_type", (*location, name), expected="integer" if integer else "number")
            return default
        if integer and not float(value).is_integer():
            self.add("wrong_type", (*location, name), expected="integer")
            return default
        if limit is not None and not -limit <= value <= limit:
            self.add("out_of_range", (*location, name), min=-limit, max=limit)
            return default
        return int(value) if integer else value


def parse_spec(data: Any) -> ProcedureSpec:
    """Build a ProcedureSpec from plain data, or raise SpecError listing every problem."""
    reader = _Reader()
    if not isinstance(data, dict):
        raise SpecError([Problem("wrong_type", (), {"expected": "object"})])
    name = reader.text(data, "name", (), required=True, max_length=200)
    description = reader.text(data, "description", (), max_length=5000)
    prefix = reader.text(data, "receipt_prefix", (), max_length=12)
    if prefix and not re.fullmatch(r"[A-Z0-9]{1,12}", prefix):
        reader.add("bad_receipt_prefix", ("receipt_prefix",))
    keywords = data.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        reader.add("wrong_type", ("keywords",), expected="list of text")
        keywords = []
    if len(keywords) > MAX_KEYWORDS:
        reader.add("too_many", ("keywords",), max=MAX_KEYWORDS)
        keywords = keywords[:MAX_KEYWORDS]
    for index, keyword in enumerate(keywords):
        if len(keyword) > MAX_KEYWORD_LENGTH:
            reader.add("too_long", ("keywords", index), max=MAX_KEYWORD_LENGTH)
    keywords = [keyword[:MAX_KEYWORD_LENGTH] for keyword in keywords]
    raw_steps = data.get("steps", [])
    steps: list[Step] = []
    if not isinstance(raw_steps, list):
        reader.add("wrong_type", ("steps",), expected="list")
        raw_steps = []
    if len(raw_steps) > MAX_STEPS:
        reader.add("too_many", ("steps",), max=MAX_STEPS)
        raw_steps = raw_steps[:MAX_STEPS]
    for index, raw in enumerate(raw_steps):
        step = _parse_step(reader, raw, ("steps", index))
        if step is not None:
            steps.append(step)
    computed = []
    raw_computed = data.get("computed", [])
    if not isinstance(raw_computed, list):
        reader.add("wrong_type", ("computed",), expected="list")
        raw_computed = []
    for index, raw in enumerate(raw_computed):
        item = _parse_computed(reader, raw, ("computed", index))
        if item is not None:
            computed.append(item)
    if reader.problems:
        raise SpecError(reader.problems)
    return ProcedureSpec(
        procedure_id=data.get("procedure_id") if isinstance(data.get("procedure_id"), int) else None,
        version_id=data.get("version_id") if isinstance(data.get("version_id"), int) else None,
        name=name,
        description=description,
        keywords=tuple(k.strip() for k in keywords if k.strip()),
        receipt_prefix=prefix,
        steps=tuple(steps),
        computed=tuple(computed),
    )


def _parse_step(reader: _Reader, raw: Any, location: tuple) -> Step | None:
    if not isinstance(raw, dict):
        reader.add("wrong_type", location, expected="object")
        return None
    kind = raw.get("kind")
    if kind not in STEP_KINDS:
        reader.add("unknown_kind", (*location, "kind"), kind=str(kind)[:40], known=", ".join(STEP_KINDS))
        return None
    key = raw.get("key")
    if not isinstance(key, str) or not key:
        reader.add("missing_key", (*location, "key"))
        key = ""
    elif not KEY_PATTERN.match(key):
        reader.add("bad_key", (*location, "key"), key=key[:40])
    label = reader.text(raw, "label", location, required=True, max_length=2000)
    help_text = reader.text(raw, "help_text", location, max_length=2000)
    required = reader.boolean(raw, "required", location, True)
    sensitive = reader.boolean(raw, "sensitive", location, False)
    condition = raw.get("condition")
    if condition is not None:
        _check_condition_shape(reader, condition, (*location, "condition"), depth=0)
    options = raw.get("options", {}) or {}
    if not isinstance(options, dict):
        reader.add("wrong_type", (*location, "options"), expected="object")
        options = {}
    options = _parse_options(reader, kind, options, (*location, "options"))
    choices: list[Choice] = []
    raw_choices = raw.get("choices", []) or []
    if not isinstance(raw_choices, list):
        reader.add("wrong_type", (*location, "choices"), expected="list")
        raw_choices = []
    if raw_choices and kind not in CHOICE_KINDS:
        reader.add("choices_not_allowed", (*location, "choices"), kind=kind)
    if len(raw_choices) > MAX_CHOICES:
        reader.add("too_many", (*location, "choices"), max=MAX_CHOICES)
        raw_choices = raw_choices[:MAX_CHOICES]
    for index, raw_choice in enumerate(raw_choices):
        choice_location = (*location, "choices", index)
        if not isinstance(raw_choice, dict):
            reader.add("wrong_type", choice_location, expected="object")
            continue
        value = raw_choice.get("value")
        if not isinstance(value, str) or not value.strip():
            reader.add("missing", (*choice_location, "value"))
            continue
        if len(value) > 40:
            reader.add("too_long", (*choice_location, "value"), max=40)
            continue
        choice_label = reader.text(raw_choice, "label", choice_location, required=True, max_length=100)
        amount = reader.number(raw_choice, "amount", choice_location, 0, limit=MAX_AMOUNT)
        choices.append(Choice(value=value, label=choice_label, amount=amount or 0))
    profile_target = reader.text(raw, "profile_target", location, max_length=60)
    if profile_target and not profile_target_is_well_formed(profile_target):
        reader.add("bad_profile_target", (*location, "profile_target"), target=profile_target[:60])
        profile_target = ""
    return Step(
        key=key,
        kind=kind,
        label=label,
        help_text=help_text,
        required=required,
        sensitive=sensitive,
        condition=condition,
        options=options,
        choices=tuple(choices),
        profile_target=profile_target,
    )


def _parse_options(reader: _Reader, kind: str, options: dict, location: tuple) -> dict:
    """Normalise the kind-specific options, filling defaults."""
    if kind == "short_text":
        max_length = reader.number(options, "max_length", location, DEFAULT_SHORT_TEXT_MAX, integer=True)
        text_format = options.get("format", "none") or "none"
        if text_format not in TEXT_FORMATS:
            reader.add("unknown_format", (*location, "format"), format=str(text_format)[:40], known=", ".join(TEXT_FORMATS))
            text_format = "none"
        pattern = reader.text(options, "pattern", location, max_length=500)
        if text_format == "regex":
            if not pattern:
                reader.add("missing", (*location, "pattern"))
            else:
                try:
                    re.compile(pattern)
                except re.error:
                    reader.add("bad_pattern", (*location, "pattern"))
        return {
            "max_length": _clamp_length(reader, max_length, location),
            "format": text_format,
            "pattern": pattern,
            "pattern_hint": reader.text(options, "pattern_hint", location, max_length=200),
        }
    if kind == "long_text":
        max_length = reader.number(options, "max_length", location, DEFAULT_LONG_TEXT_MAX, integer=True)
        return {"max_length": _clamp_length(reader, max_length, location)}
    if kind == "number":
        minimum = reader.number(options, "min", location, limit=MAX_NUMBER_LIMIT)
        maximum = reader.number(options, "max", location, limit=MAX_NUMBER_LIMIT)
        if minimum is not None and maximum is not None and minimum > maximum:
            reader.add("min_above_max", (*location, "min"))
        return {
            "min": minimum,
            "max": maximum,
            "unit": reader.text(options, "unit", location, max_length=20),
            "integer": reader.boolean(options, "integer", location, True),
        }
    if kind == "date":
        min_days = reader.number(options, "min_days", location, None, integer=True, limit=MAX_DAYS_OFFSET)
        max_days = reader.number(options, "max_days", location, None, integer=True, limit=MAX_DAYS_OFFSET)
        if min_days is not None and max_days is not None and min_days > max_days:
            reader.add("min_above_max", (*location, "min_days"))
        weekdays = options.get("weekdays", list(range(7)))
        if not isinstance(weekdays, list) or not all(isinstance(d, int) and 0 <= d <= 6 for d in weekdays):
            reader.add("wrong_type", (*location, "weekdays"), expected="list of weekday numbers 0-6")
            weekdays = list(range(7))
        elif not weekdays:
            reader.add("no_weekdays", (*location, "weekdays"))
        excluded = options.get("excluded_dates", [])
        if not isinstance(excluded, list) or not all(
            isinstance(d, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in excluded
        ):
            reader.add("wrong_type", (*location, "excluded_dates"), expected="list of YYYY-MM-DD")
            excluded = []
        return {
            "min_days": min_days,
            "max_days": max_days,
            "weekdays": sorted(set(weekdays)),
            "allow_holidays": reader.boolean(options, "allow_holidays", location, True),
            "excluded_dates": sorted(set(excluded)),
        }
    if kind == "multiple_choice":
        minimum = reader.number(options, "min_selected", location, 1, integer=True, limit=MAX_CHOICES)
        maximum = reader.number(options, "max_selected", location, None, integer=True, limit=MAX_CHOICES)
        return {"min_selected": max(minimum or 0, 0), "max_selected": maximum}
    if kind == "image":
        max_bytes = reader.number(options, "max_bytes", location, DEFAULT_IMAGE_MAX_BYTES, integer=True, limit=DEFAULT_IMAGE_MAX_BYTES)
        return {"max_bytes": max(1, min(max_bytes, DEFAULT_IMAGE_MAX_BYTES))}
    if kind in ("yes_no", "single_choice", "location", "message", "confirmation", "completion", "exit"):
        return {}
    return {}


def _clamp_length(reader: _Reader, value: int, location: tuple) -> int:
    if value < 1 or value > HARD_TEXT_MAX:
        reader.add("out_of_range", (*location, "max_length"), min=1, max=HARD_TEXT_MAX)
        return max(1, min(value, HARD_TEXT_MAX))
    return value


def _check_condition_shape(reader: _Reader, condition: Any, location: tuple, depth: int) -> None:
    if depth > 5:
        reader.add("condition_too_deep", location)
        return
    if not isinstance(condition, dict):
        reader.add("wrong_type", location, expected="object")
        return
    for group in ("all", "any"):
        if group in condition:
            items = condition[group]
            if not isinstance(items, list) or not items:
                reader.add("wrong_type", (*location, group), expected="non-empty list")
                return
            for index, item in enumerate(items):
                _check_condition_shape(reader, item, (*location, group, index), depth + 1)
            return
    op = condition.get("op")
    if op not in CONDITION_OPS:
        reader.add("unknown_condition_op", (*location, "op"), op=str(op)[:40], known=", ".join(CONDITION_OPS))
        return
    if not isinstance(condition.get("step"), str) or not condition["step"]:
        reader.add("missing", (*location, "step"))
    if op == "equals" and not isinstance(condition.get("value"), (str, int, float, bool)):
        reader.add("missing", (*location, "value"))
    if op == "one_of":
        values = condition.get("values")
        if not isinstance(values, list) or not values:
            reader.add("missing", (*location, "values"))
        elif not all(isinstance(value, (str, int, float, bool)) for value in values):
            reader.add("wrong_type", (*location, "values"), expected="list of text or numbers")
    if op == "compare":
        if condition.get("operator") not in COMPARE_OPERATORS:
            reader.add("unknown_condition_op", (*location, "operator"), op=str(condition.get("operator"))[:10], known=", ".join(COMPARE_OPERATORS))
        value = condition.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            reader.add("wrong_type", (*location, "value"), expected="number")


def _parse_computed(reader: _Reader, raw: Any, location: tuple) -> Computed | None:
    if not isinstance(raw, dict):
        reader.add("wrong_type", location, expected="object")
        return None
    key = raw.get("key")
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        reader.add("bad_key", (*location, "key"), key=str(key)[:40])
        key = ""
    label = reader.text(raw, "label", location, required=True, max_length=200)
    terms = []
    raw_terms = raw.get("terms", [])
    if not isinstance(raw_terms, list):
        reader.add("wrong_type", (*location, "terms"), expected="list")
        raw_terms = []
    for index, raw_term in enumerate(raw_terms):
        term_location = (*location, "terms", index)
        if not isinstance(raw_term, dict) or not isinstance(raw_term.get("step"), str):
            reader.add("missing", (*term_location, "step"))
            continue
        factor = reader.number(raw_term, "factor", term_location, 1, limit=MAX_AMOUNT)
        terms.append(Term(step=raw_term["step"], factor=factor if factor is not None else 1))
    return Computed(
        key=key,
        label=label,
        terms=tuple(terms),
        constant=reader.number(raw, "constant", location, 0, limit=MAX_AMOUNT) or 0,
        unit=reader.text(raw, "unit", location, max_length=20),
    )


# --------------------------------------------------------------------------
# Publish-time validation: the flow as a whole.
# --------------------------------------------------------------------------


def condition_step_keys(condition: dict | None) -> list[str]:
    """Every step key a condition refers to, in order of appearance."""
    if not condition:
        return []
    for group in ("all", "any"):
        if group in condition:
            keys: list[str] = []
            for item in condition[group]:
                keys.extend(condition_step_keys(item))
            return keys
    return [condition["step"]] if isinstance(condition.get("step"), str) else []


def _condition_leaves(condition: dict | None):
    if not condition:
        return
    for group in ("all", "any"):
        if group in condition:
            for item in condition[group]:
                yield from _condition_leaves(item)
            return
    yield condition


def validate_spec(spec: ProcedureSpec) -> list[Problem]:
    """Everything that must hold before a version can be published."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, step in enumerate(spec.steps):
        location = ("steps", index)
        if not step.key:
            problems.append(Problem("missing_key", (*location, "key"), {"label": step.label}))
        elif step.key in seen:
            problems.append(
                Problem("duplicate_key", (*location, "key"), {"key": step.key, "other": seen[step.key] + 1})
            )
        else:
            seen[step.key] = index
        if step.kind in CHOICE_KINDS and not step.choices:
            problems.append(Problem("no_choices", (*location, "choices"), {"label": step.label}))
        values = [choice.value for choice in step.choices]
        duplicates = sorted({value for value in values if values.count(value) > 1})
        if duplicates:
            problems.append(Problem("duplicate_choice", (*location, "choices"), {"values": ", ".join(duplicates)}))
        for leaf in _condition_leaves(step.condition):
            ref = leaf.get("step")
            if ref not in seen and ref not in {s.key for s in spec.steps}:
                problems.append(Problem("condition_unknown_step", (*location, "condition"), {"ref": ref}))
                continue
            ref_index = spec.step_index(ref)
            if ref_index >= index:
                problems.append(Problem("condition_later_step", (*location, "condition"), {"ref": ref}))
                continue
            ref_step = spec.steps[ref_index]
            if not ref_step.is_input:
                problems.append(Problem("condition_not_input", (*location, "condition"), {"ref": ref}))
                continue
            if ref_step.kind in CHOICE_KINDS and leaf.get("op") in ("equals", "one_of"):
                wanted = [leaf.get("value")] if leaf.get("op") == "equals" else list(leaf.get("values") or [])
                known = {choice.value for choice in ref_step.choices}
                missing = [str(value) for value in wanted if value not in known]
                if missing:
                    problems.append(
                        Problem(
                            "condition_unknown_value",
                            (*location, "condition"),
                            {"ref": ref, "values": ", ".join(missing)},
                        )
                    )
            if leaf.get("op") == "compare" and ref_step.kind != "number":
                problems.append(Problem("condition_compare_not_number", (*location, "condition"), {"ref": ref}))
        problems.extend(profile_target_problems(step, location))

    problems.extend(_flow_problems(spec))
    for index, item in enumerate(spec.computed):
        for term in item.terms:
            step = next((s for s in spec.steps if s.key == term.step), None)
            if step is None:
                problems.append(Problem("computed_unknown_step", ("computed", index), {"ref": term.step}))
            elif step.kind not in ("number", "single_choice", "multiple_choice", "yes_no"):
                problems.append(Problem("computed_not_numeric", ("computed", index), {"ref": term.step}))
    computed_keys = [item.key for item in spec.computed]
    for key in sorted({k for k in computed_keys if computed_keys.count(k) > 1 or k in seen}):
        problems.append(Problem("duplicate_key", ("computed",), {"key": key, "other": ""}))
    return problems


def profile_target_problems(step: Step, location: tuple = ()) -> list[Problem]:
    """What the spec alone can tell about a profile target (the attribute itself is checked by residents)."""
    if not step.profile_target:
        return []
    where = (*location, "profile_target")
    if step.sensitive:
        # Personal data stays in the application, where it is masked and expires with it.
        return [Problem("profile_target_sensitive", where)]
    if step.kind not in PROFILE_TARGET_KINDS:
        return [Problem("profile_target_kind", where, {"kind": step.kind})]
    if step.profile_target == PROFILE_TARGET_CATEGORIES and step.kind != "multiple_choice":
        return [Problem("profile_target_categories_kind", where)]
    return []


def _flow_problems(spec: ProcedureSpec) -> list[Problem]:
    problems: list[Problem] = []
    if not spec.steps:
        return [Problem("no_steps", ("steps",))]
    if not any(step.is_input for step in spec.steps):
        problems.append(Problem("no_questions", ("steps",)))
    completions = [i for i, step in enumerate(spec.steps) if step.kind == "completion"]
    if not completions:
        problems.append(Problem("no_completion", ("steps",)))
    for index in completions:
        confirmation_before = any(
            spec.steps[i].kind == "confirmation" and spec.steps[i].condition is None for i in range(index)
        )
        if not confirmation_before:
            problems.append(Problem("no_confirmation", ("steps", index)))
    # A step after an unconditional completion or exit can never be reached.
    for index, step in enumerate(spec.steps):
        if step.kind in ("completion", "exit") and step.condition is None:
            for later in range(index + 1, len(spec.steps)):
                problems.append(
                    Problem("unreachable", ("steps", later), {"label": spec.steps[later].label, "after": step.label})
                )
            break
    return problems


def spec_to_dict(spec: ProcedureSpec) -> dict:
    """The JSON form parse_spec reads back (round trip: parse_spec(spec_to_dict(s)) == s)."""
    return {
        "procedure_id": spec.procedure_id,
        "version_id": spec.version_id,
        "name": spec.name,
        "description": spec.description,
        "keywords": list(spec.keywords),
        "receipt_prefix": spec.receipt_prefix,
        "steps": [
            {
                "key": step.key,
                "kind": step.kind,
                "label": step.label,
                "help_text": step.help_text,
                "required": step.required,
                "sensitive": step.sensitive,
                "condition": step.condition,
                "options": dict(step.options),
                "choices": [{"value": c.value, "label": c.label, "amount": c.amount} for c in step.choices],
                "profile_target": step.profile_target,
            }
            for step in spec.steps
        ],
        "computed": [
            {
                "key": item.key,
                "label": item.label,
                "unit": item.unit,
                "constant": item.constant,
                "terms": [{"step": term.step, "factor": term.factor} for term in item.terms],
            }
            for item in spec.computed
        ],
    }
