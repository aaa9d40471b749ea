"""parse_spec and validate_spec: every problem is reported with where it is."""

from __future__ import annotations

import pytest

from procedures.spec import (
    STEP_KINDS,
    ProcedureSpec,
    SpecError,
    Step,
    parse_spec,
    spec_to_dict,
    validate_spec,
)
from procedures.tests.engine_fixtures import choices, completion, confirmation, spec_data, step_dict


def problems_of(data) -> list:
    with pytest.raises(SpecError) as error:
        parse_spec(data)
    return error.value.problems


def codes_at(problems) -> set[tuple]:
    return {(problem.code, problem.location) for problem in problems}


def test_valid_spec_round_trips():
    data = spec_data(
        step_dict("name", "short_text", "お名前", options={"format": "katakana"}),
        step_dict("item", "single_choice", "品目", choices=choices("a", "b", amounts={"a": 500})),
        step_dict("day", "date", "日付", options={"min_days": 1, "weekdays": [1, 3]}),
        computed=[{"key": "fee", "label": "手数料", "terms": [{"step": "item", "factor": 2}]}],
    )
    spec = parse_spec(data)
    assert validate_spec(spec) == []
    assert parse_spec(spec_to_dict(spec)) == spec


def test_not_an_object_is_a_wrong_type():
    assert codes_at(problems_of([])) == {("wrong_type", ())}


def test_wrong_types_are_located():
    data = spec_data(
        step_dict("name", "short_text", 123),
        step_dict("n", "number", "数", required="yes", options={"min": "one"}),
    )
    data["keywords"] = "粗大ごみ"
    problems = problems_of(data)
    assert {
        ("wrong_type", ("keywords",)),
        ("wrong_type", ("steps", 0, "label")),
        ("wrong_type", ("steps", 1, "required")),
        ("wrong_type", ("steps", 1, "options", "min")),
    } <= codes_at(problems)
    expected = {p.location: p.params.get("expected") for p in problems}
    assert expected[("steps", 1, "required")] == "boolean"
    assert expected[("steps", 1, "options", "min")] == "number"


def test_unknown_kind_lists_known_kinds():
    [problem] = problems_of(spec_data(step_dict("sig", "signature", "署名")))
    assert problem.code == "unknown_kind"
    assert problem.location == ("steps", 0, "kind")
    assert problem.params["kind"] == "signature"
    assert problem.params["known"].split(", ") == list(STEP_KINDS)


def test_bad_regex_is_reported():
    problems = problems_of(spec_data(step_dict("code", "short_text", "番号", options={"format": "regex", "pattern": "[A-"})))
    assert codes_at(problems) == {("bad_pattern", ("steps", 0, "options", "pattern"))}


def test_regex_format_without_pattern_is_reported():
    problems = problems_of(spec_data(step_dict("code", "short_text", "番号", options={"format": "regex"})))
    assert codes_at(problems) == {("missing", ("steps", 0, "options", "pattern"))}


def test_bad_keys_and_malformed_conditions_are_reported():
    problems = problems_of(
        spec_data(
            step_dict("Name", "short_text", "お名前"),
            step_dict("x", "short_text", "X", condition={"step": "name", "op": "near"}),
        )
    )
    assert {("bad_key", ("steps", 0, "key")), ("unknown_condition_op", ("steps", 1, "condition", "op"))} <= codes_at(problems)


def test_missing_key_in_data_is_reported():
    problems = problems_of(spec_data({"kind": "short_text", "label": "お名前"}))
    assert ("missing_key", ("steps", 0, "key")) in codes_at(problems)


def test_missing_key_is_reported_by_validate_spec():
    spec = ProcedureSpec(procedure_id=1, version_id=1, name="x", steps=(Step(key="", kind="short_text", label="お名前"),))
    assert ("missing_key", ("steps", 0, "key")) in codes_at(validate_spec(spec))


def test_duplicate_key_is_reported_with_the_other_position():
    spec = parse_spec(spec_data(step_dict("name", "short_text", "お名前"), step_dict("name", "short_text", "氏名")))
    [problem] = [p for p in validate_spec(spec) if p.code == "duplicate_key"]
    assert problem.location == ("steps", 1, "key") and problem.params == {"key": "name", "other": 1}


def test_condition_on_later_step_is_reported():
    spec = parse_spec(
        spec_data(
            step_dict("a", "short_text", "A", condition={"step": "b", "op": "answered"}),
            step_dict("b", "short_text", "B"),
        )
    )
    assert codes_at(validate_spec(spec)) == {("condition_later_step", ("steps", 0, "condition"))}


def test_condition_on_unknown_step_is_reported():
    spec = parse_spec(spec_data(step_dict("a", "short_text", "A", condition={"step": "zzz", "op": "answered"})))
    [problem] = validate_spec(spec)
    assert (problem.code, problem.params) == ("condition_unknown_step", {"ref": "zzz"})


def test_condition_value_not_among_choices_is_reported():
    spec = parse_spec(
        spec_data(
            step_dict("item", "single_choice", "品目", choices=choices("a", "b")),
            step_dict("x", "short_text", "X", condition={"step": "item", "op": "equals", "value": "c"}),
        )
    )
    assert [p.code for p in validate_spec(spec)] == ["condition_unknown_value"]


def test_choice_step_without_choices_is_reported():
    spec = parse_spec(spec_data(step_dict("item", "single_choice", "品目")))
    assert codes_at(validate_spec(spec)) == {("no_choices", ("steps", 0, "choices"))}


def test_step_after_completion_is_unreachable():
    spec = parse_spec(spec_data(step_dict("a", "short_text", "A"), with_end=False) | {
        "steps": [step_dict("a", "short_text", "A"), confirmation(), completion(), step_dict("late", "short_text", "遅い質問")]
    })
    [problem] = validate_spec(spec)
    assert problem.code == "unreachable" and problem.location == ("steps", 3)
    assert problem.params == {"label": "遅い質問", "after": "受け付けました。"}


def test_completion_without_confirmation_before_is_reported():
    spec = parse_spec(spec_data(step_dict("a", "short_text", "A"), completion(), with_end=False))
    assert codes_at(validate_spec(spec)) == {("no_confirmation", ("steps", 1))}


def test_spec_without_completion_is_reported():
    spec = parse_spec(spec_data(step_dict("a", "short_text", "A"), with_end=False))
    assert "no_completion" in [p.code for p in validate_spec(spec)]


def test_computed_referring_to_text_step_is_reported():
    spec = parse_spec(spec_data(step_dict("a", "short_text", "A"), computed=[{"key": "fee", "label": "料金", "terms": [{"step": "a"}]}]))
    assert codes_at(validate_spec(spec)) == {("computed_not_numeric", ("computed", 0))}
