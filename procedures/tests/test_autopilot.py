"""The benchmark's resident robot (bench/autopilot.py) really completes procedures.

bench/engine.py times conversations driven by the autopilot; these tests make
sure those are complete, valid conversations (exactly one Submit, no refused
answer), for both demo procedures and for generated 50-step procedures. They
check correctness only, never timings.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from bench.autopilot import (
    Autopilot,
    AutopilotStuck,
    drive,
    drive_engine,
    generate_procedure,
    generated_spec,
    submits_of,
)
from procedures.demo import TEMPLATES_DIR
from procedures.engine import Catalog, get_handler
from procedures.engine.conditions import evaluate
from procedures.spec import CONDITION_OPS, STEP_KINDS, condition_step_keys, parse_spec, validate_spec

# A Tuesday, 10:00 in Tokyo.
NOW = datetime(2026, 6, 2, 1, 0, tzinfo=UTC)
DEMO_FILES = ("bulky_garbage.json", "residence_certificate_mail.json")


def demo_spec(file_name: str, procedure_id: int):
    data = json.loads((TEMPLATES_DIR / file_name).read_text(encoding="utf-8"))["procedure"]
    return parse_spec({**data, "procedure_id": procedure_id, "version_id": 100 + procedure_id})


def catalog_of(*specs) -> Catalog:
    return Catalog(versions={s.version_id: s for s in specs}, current={s.procedure_id: s.version_id for s in specs})


def demo_catalog() -> Catalog:
    return catalog_of(*(demo_spec(name, index) for index, name in enumerate(DEMO_FILES, start=1)))


def assert_completed_validly(catalog: Catalog, procedure_id: int, turns) -> None:
    """One Submit, at the end, no refused answer, and every submitted answer passes its own check."""
    spec = catalog.current_spec(procedure_id)
    codes = [message.code for turn in turns for message in turn.result.messages]
    assert not [code for code in codes if code.startswith("error.")], codes
    assert "procedure.completed" in [message.code for message in turns[-1].result.messages]
    assert turns[-1].result.state["session"] is None
    submits = submits_of(turns)
    assert len(submits) == 1
    submit = submits[0]
    assert (submit.procedure_id, submit.version_id) == (procedure_id, spec.version_id)
    today = (turns[-1].now + timedelta(hours=9)).date()
    for step in spec.steps:
        if step.key in submit.answers:
            assert step.is_input
            assert get_handler(step.kind).validate(step, submit.answers[step.key], today) is None, step.key
        elif step.is_input and step.required:
            # A required question may only be missing when its condition left it out.
            assert not evaluate(step.condition, submit.answers), step.key


@pytest.mark.parametrize("file_name", DEMO_FILES)
def test_autopilot_completes_each_demo_procedure(file_name):
    catalog = demo_catalog()
    procedure_id = DEMO_FILES.index(file_name) + 1
    turns = drive_engine(catalog, procedure_id, now=NOW)
    assert_completed_validly(catalog, procedure_id, turns)
    # The first choices: a resident of the city, the certificate most asked for.
    answers = submits_of(turns)[0].answers
    if file_name == "bulky_garbage.json":
        assert answers["in_city"] is True and answers["items"] == ["tansu"]
        assert {"photo", "spot", "pickup_date", "phone"} <= set(answers)
    else:
        assert answers["cert_type"] == "juminhyo" and answers["honseki"] is True


@pytest.mark.parametrize("file_name", DEMO_FILES)
def test_autopilot_with_random_choices_avoids_exits_and_completes(file_name):
    # The residence certificate has an exit behind one choice (印鑑登録証明書): never taken.
    catalog = demo_catalog()
    procedure_id = DEMO_FILES.index(file_name) + 1
    for seed in range(15):
        turns = drive_engine(catalog, procedure_id, now=NOW + timedelta(days=seed), rng=random.Random(seed))
        assert_completed_validly(catalog, procedure_id, turns)


def test_generated_procedure_is_deterministic_and_publishable():
    data = generate_procedure(7, n_steps=50)
    assert data == generate_procedure(7, n_steps=50)
    assert data != generate_procedure(8, n_steps=50)
    spec = parse_spec(data)
    assert validate_spec(spec) == []
    assert len(spec.steps) == 50
    assert [step.kind for step in spec.steps[-2:]] == ["confirmation", "completion"]
    conditional = [step for step in spec.steps if step.condition]
    assert len(conditional) >= 5
    referred = {spec.get_step(key).kind for step in conditional for key in condition_step_keys(step.condition)}
    assert referred <= {"single_choice", "multiple_choice", "number", "yes_no"}


def test_generated_procedures_mix_kinds_and_condition_operators():
    kinds, ops = set(), set()
    for seed in range(10):
        spec = generated_spec(seed)
        kinds |= {step.kind for step in spec.steps}
        for step in spec.steps:
            text = json.dumps(step.condition or {})
            ops |= {op for op in CONDITION_OPS if f'"{op}"' in text}
    assert kinds == set(STEP_KINDS)
    assert ops == set(CONDITION_OPS)


@pytest.mark.parametrize("seed", range(6))
def test_autopilot_completes_a_generated_50_step_procedure(seed):
    spec = generated_spec(seed, n_steps=50, procedure_id=7, version_id=70)
    catalog = catalog_of(spec, *demo_catalog().versions.values())
    for rng in (None, random.Random(seed)):
        turns = drive_engine(catalog, 7, now=NOW, rng=rng)
        assert_completed_validly(catalog, 7, turns)
        applicable = [s for s in spec.steps if s.is_input and evaluate(s.condition, submits_of(turns)[0].answers)]
        assert len(turns) >= len(applicable) + 2  # start + each question + submit


def test_autopilot_answers_no_when_yes_leads_to_an_exit():
    spec = parse_spec(
        {
            "procedure_id": 1,
            "version_id": 1,
            "name": "テスト",
            "steps": [
                {"key": "business", "kind": "yes_no", "label": "事業所のごみですか？"},
                {"key": "stop", "kind": "exit", "label": "対象外です。", "condition": {"step": "business", "op": "equals", "value": True}},
                {"key": "confirm", "kind": "confirmation", "label": "確認"},
                {"key": "done", "kind": "completion", "label": "完了"},
            ],
        }
    )
    turns = drive_engine(catalog_of(spec), 1, now=NOW)
    assert submits_of(turns)[0].answers == {"business": False}


def test_autopilot_gives_up_loudly_rather_than_loop():
    spec = parse_spec(
        {
            "procedure_id": 1,
            "version_id": 1,
            "name": "テスト",
            "steps": [
                {"key": "code", "kind": "short_text", "label": "コード", "options": {"format": "regex", "pattern": "Z{9}"}},
                {"key": "confirm", "kind": "confirmation", "label": "確認"},
                {"key": "done", "kind": "completion", "label": "完了"},
            ],
        }
    )
    with pytest.raises(AutopilotStuck, match="no valid answer"):
        drive_engine(catalog_of(spec), 1, now=NOW)
    with pytest.raises(AutopilotStuck, match="not open"):
        drive_engine(catalog_of(spec), 2, now=NOW)


@pytest.mark.django_db
def test_autopilot_completes_bulky_garbage_through_the_database():
    """The benchmark's database driver: messages only (as a channel sees them), one application."""
    from procedures.demo import load_demo
    from procedures.models import Application, ConversationSession
    from procedures.selectors import catalog_build
    from procedures.services import conversation_handle

    procedure = {result.receipt_prefix: result.procedure for result in load_demo()}["SODAI"]
    spec = catalog_build().current_spec(procedure.pk)
    clock = NOW

    def send(event):
        nonlocal clock
        clock += timedelta(seconds=20)
        reply = conversation_handle(line_user_id="U-autopilot", event=event, now=clock, is_test=True)
        state = ConversationSession.objects.get(line_user_id="U-autopilot").state
        return reply.messages, state

    pilot = Autopilot(spec, procedure.pk, rng=random.Random(3))
    events = drive(send, pilot, max_turns=100)
    assert pilot.completed and events >= 12
    application = Application.objects.get(line_user_id="U-autopilot")
    assert application.is_test and application.receipt_number.startswith("TEST-SODAI-")
    assert application.answers["in_city"] is True
