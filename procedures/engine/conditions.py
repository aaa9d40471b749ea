"""Step conditions: when does a step apply, given the answers so far.

A condition is a leaf {"step", "op", ...} or a group {"all": [...]} / {"any": [...]}.
For multiple-choice answers (lists) `equals` means "contains" and `one_of`
means "intersects". An unanswered step satisfies only `not_answered`.
Malformed conditions evaluate to False rather than raising.
"""

from __future__ import annotations

import math
import operator

from procedures.spec import ProcedureSpec

_COMPARE = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
    "eq": operator.eq,
    "ne": operator.ne,
}
_MAX_DEPTH = 10


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _same(answer, expected) -> bool:
    """Equality that also lets "yes"/"no" match a yes/no answer stored as a bool."""
    if isinstance(answer, bool):
        if isinstance(expected, bool):
            return answer is expected
        if isinstance(expected, str):
            return expected.strip().lower() in (("yes", "true", "はい") if answer else ("no", "false", "いいえ"))
        return False
    if isinstance(expected, bool):
        return False
    if _is_number(answer) and _is_number(expected):
        return answer == expected
    return answer == expected


def evaluate(condition, answers: dict, _depth: int = 0) -> bool:
    """True when `condition` holds for `answers`; None (no condition) always holds."""
    if condition is None:
        return True
    if not isinstance(condition, dict) or _depth > _MAX_DEPTH:
        return False
    if "all" in condition:
        items = condition["all"]
        return isinstance(items, list) and all(evaluate(item, answers, _depth + 1) for item in items)
    if "any" in condition:
        items = condition["any"]
        return isinstance(items, list) and any(evaluate(item, answers, _depth + 1) for item in items)
    key, op = condition.get("step"), condition.get("op")
    if not isinstance(key, str):
        return False
    answered = key in answers and answers[key] is not None
    if op == "answered":
        return answered
    if op == "not_answered":
        return not answered
    if not answered:
        return False
    answer = answers[key]
    if op == "equals":
        expected = condition.get("value")
        if isinstance(answer, list):
            return any(_same(item, expected) for item in answer)
        return _same(answer, expected)
    if op == "one_of":
        values = condition.get("values")
        if not isinstance(values, list):
            return False
        items = answer if isinstance(answer, list) else [answer]
        return any(_same(item, value) for item in items for value in values)
    if op == "compare":
        compare = _COMPARE.get(condition.get("operator"))
        expected = condition.get("value")
        if compare is None or not _is_number(answer) or not _is_number(expected):
            return False
        return compare(answer, expected)
    return False


def applies(spec: ProcedureSpec, key: str, answers: dict) -> bool:
    try:
        return evaluate(spec.get_step(key).condition, answers)
    except KeyError:
        return False


def prune(spec: ProcedureSpec, answers: dict) -> tuple[dict, list[str]]:
    """Drop answers of steps whose condition is false, until nothing changes.

    Clearing one answer can make another condition false (a chain of follow-up
    questions), hence the fixed-point loop. Returns the new answers and the
    removed keys in the order they were removed.
    """
    answers = dict(answers)
    removed: list[str] = []
    changed = True
    while changed:
        changed = False
        for step in spec.steps:
            if step.key in answers and not evaluate(step.condition, answers):
                del answers[step.key]
                removed.append(step.key)
                changed = True
    return answers, removed
