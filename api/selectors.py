"""Reads for the staff API and for outgoing webhooks: applications and procedures as plain data."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from procedures.attachments import attachment_url
from procedures.models import Application, Procedure
from procedures.selectors import version_spec_data
from procedures.spec import SpecError, parse_spec
from staff import policy

MASK = "●●●●"


def _spec_steps(version) -> tuple:
    try:
        return parse_spec(version_spec_data(version)).steps
    except SpecError:
        return ()  # an unreadable spec says nothing about sensitivity: every answer counts as sensitive


@dataclass(frozen=True)
class Answers:
    values: dict
    # Keys whose values are sensitive (or unknown to the version) and were included unmasked.
    revealed: tuple[str, ...]


def application_answers(application: Application, *, sensitive: str) -> Answers:
    """The answers by step key; `sensitive` says what happens to sensitive ones: "mask", "omit" or "include".

    Answers the version does not describe are treated as sensitive (as the admin does). An image
    answer becomes its access-checked link, never the storage path.
    """
    answers = application.answers if isinstance(application.answers, dict) else {}
    steps = {step.key: step for step in _spec_steps(application.version) if step.is_input}
    values: dict = {}
    revealed: list[str] = []
    for key, value in answers.items():
        step = steps.get(key)
        if value is not None and step is not None and step.kind == "image":
            value = {"url": attachment_url(application.pk, key)}
        if value is not None and (step is None or step.sensitive):
            if sensitive == "omit":
                continue
            if sensitive == "mask":
                value = MASK
            else:
                revealed.append(str(key))
        values[str(key)] = value
    return Answers(values=values, revealed=tuple(revealed))


def api_applications(user, *, action: str = policy.VIEW) -> QuerySet[Application]:
    """Applications `user` may perform `action` on, never the simulator's test applications."""
    return (
        policy.applications_visible_to(user, action=action)
        .filter(is_test=False)
        .select_related("procedure", "version", "status")
        .order_by("-submitted_at", "-id")
    )


def api_procedures(user) -> QuerySet[Procedure]:
    return policy.procedures_visible_to(user).select_related("department", "current_version").order_by("name", "id")


def procedure_steps(procedure: Procedure) -> list[dict]:
    """Key, label, kind and sensitivity of each step of the published version (empty before publishing)."""
    if procedure.current_version_id is None:
        return []
    return [
        {"key": step.key, "label": step.label, "kind": step.kind, "sensitive": step.sensitive}
        for step in _spec_steps(procedure.current_version)
    ]
