"""Computed values (fees, counts): constant + sum(value(step) * factor).

value(step) is the number for a number step, the sum of the chosen choices'
amounts for a choice step, 1/0 for yes/no, and 0 when unanswered or skipped.
"""

from __future__ import annotations

import math

from procedures.spec import ProcedureSpec, Step


def step_value(step: Step, answer) -> float:
    if answer is None:
        return 0
    if step.kind == "number":
        if isinstance(answer, bool) or not isinstance(answer, (int, float)) or not math.isfinite(answer):
            return 0
        return answer
    if step.kind == "yes_no":
        return 1 if answer is True else 0
    if step.kind in ("single_choice", "multiple_choice"):
        chosen = answer if isinstance(answer, list) else [answer]
        return sum(choice.amount for choice in step.choices if choice.value in chosen)
    return 0


def _tidy(number: float) -> int | float:
    """Round away float noise (0.1 + 0.2) and give integers back as int."""
    number = round(number, 6)
    return int(number) if float(number).is_integer() else number


def compute(spec: ProcedureSpec, answers: dict) -> dict:
    """{computed key: value} for the given (already pruned) answers."""
    steps = {step.key: step for step in spec.steps}
    values = {}
    for item in spec.computed:
        total = item.constant or 0
        for term in item.terms:
            step = steps.get(term.step)
            if step is not None:
                total += step_value(step, answers.get(term.step)) * term.factor
        values[item.key] = _tidy(total) if math.isfinite(total) else 0
    return values
