"""Property tests: random valid procedures, random (often hostile) event sequences.

Whatever residents send, `step` must not fail, must answer, must keep a JSON
state, and a Submit may only carry valid answers of steps that apply.
"""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procedures.engine import Catalog, Event, Submit, get_handler, step
from procedures.engine.conditions import evaluate
from procedures.engine.core import TOKYO
from procedures.spec import INPUT_KINDS, parse_spec, validate_spec
from procedures.tests.engine_fixtures import NOW

IDLE = timedelta(hours=2)
REGEXES = [(r"[A-Z]{2}\d{3}", "AB123"), (r"\d{4}", "2026"), (r"[a-z]+", "abc")]
TYPED = [
    "戻る", "やめる", "はい", "いいえ", "スキップ", "完了", "次へ", "前へ", "変更しない", "送信", "粗大ごみ",
    "住民票", "123-4567", "〒１２３４５６７", "090-1234-5678", "taro@example.jp", "やまだ", "ヤマダ　タロウ",
    "12/1", "2026-06-10", "6月20日", "2/30", "3", "1", "0", "-1", "2.5", "１２", "AB123", "abc", "", "  ",
]
COMMANDS = ["back", "cancel", "confirm_cancel", "keep_going", "edit", "submit", "done", "skip", "page", "switch", "stay", "keep", "bogus"]


@st.composite
def conditions_on(draw, earlier: list[dict]):
    ref = draw(st.sampled_from(earlier))
    kind = ref["kind"]
    if kind == "yes_no" and draw(st.booleans()):
        return {"step": ref["key"], "op": "equals", "value": draw(st.booleans())}
    if kind in ("single_choice", "multiple_choice") and draw(st.booleans()):
        values = [choice["value"] for choice in ref["choices"]]
        if draw(st.booleans()):
            return {"step": ref["key"], "op": "equals", "value": draw(st.sampled_from(values))}
        return {"step": ref["key"], "op": "one_of", "values": draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))}
    if kind == "number" and draw(st.booleans()):
        operator = draw(st.sampled_from(["lt", "le", "gt", "ge", "eq", "ne"]))
        return {"step": ref["key"], "op": "compare", "operator": operator, "value": draw(st.integers(-2, 5))}
    return {"step": ref["key"], "op": draw(st.sampled_from(["answered", "not_answered"]))}


@st.composite
def input_step(draw, index: int, earlier: list[dict]):
    kind = draw(st.sampled_from(INPUT_KINDS))
    data = {
        "key": f"s{index}",
        "kind": kind,
        "label": f"質問{index}",
        "required": draw(st.booleans()),
        "sensitive": draw(st.booleans()),
    }
    options: dict = {}
    if kind == "short_text":
        text_format = draw(st.sampled_from(["none", "phone", "postal_code", "email", "katakana", "regex"]))
        options = {"format": text_format, "max_length": draw(st.integers(1, 30)) if text_format == "none" else 100}
        if text_format == "regex":
            options["pattern"] = draw(st.sampled_from(REGEXES))[0]
            options["pattern_hint"] = "例"
    elif kind == "long_text":
        options = {"max_length": draw(st.integers(1, 50))}
    elif kind == "number":
        low = draw(st.none() | st.integers(-3, 3))
        high = draw(st.none() | st.integers(3, 20))
        options = {"min": low, "max": high, "integer": draw(st.booleans())}
    elif kind == "date":
        min_days = draw(st.none() | st.integers(-3, 5))
        max_days = draw(st.none() | st.integers(5, 60))
        options = {
            "min_days": min_days,
            "max_days": max_days,
            "weekdays": draw(st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True)),
            "allow_holidays": draw(st.booleans()),
            "excluded_dates": draw(st.lists(st.sampled_from(["2026-06-05", "2026-06-10", "2026-12-01"]), unique=True)),
        }
    elif kind in ("single_choice", "multiple_choice"):
        count = draw(st.integers(1, 16))
        data["choices"] = [{"value": f"v{i}", "label": f"選択{i}", "amount": draw(st.integers(0, 500))} for i in range(count)]
        if kind == "multiple_choice":
            low = draw(st.integers(0, min(2, count)))
            options = {"min_selected": low, "max_selected": draw(st.none() | st.integers(max(low, 1), count))}
    elif kind == "image":
        options = {"max_bytes": draw(st.integers(1, 2000))}
    data["options"] = options
    if earlier and draw(st.integers(0, 2)) == 0:
        leaves = draw(st.lists(conditions_on(earlier), min_size=1, max_size=2))
        data["condition"] = leaves[0] if len(leaves) == 1 else {draw(st.sampled_from(["all", "any"])): leaves}
    return data


@st.composite
def procedures(draw):
    steps: list[dict] = []
    inputs: list[dict] = []
    for index in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 5)) == 0:
            steps.append({"key": f"m{index}", "kind": "message", "label": "お知らせ"})
        if inputs and draw(st.integers(0, 7)) == 0:
            steps.append({"key": f"x{index}", "kind": "exit", "label": "対象外です", "condition": draw(conditions_on(inputs))})
        data = draw(input_step(index, inputs))
        steps.append(data)
        inputs.append(data)
    steps.append({"key": "confirm", "kind": "confirmation", "label": "確認"})
    steps.append({"key": "done", "kind": "completion", "label": "完了"})
    computed = [{"key": "fee", "label": "料金", "constant": 100, "terms": [
        {"step": s["key"], "factor": 2} for s in inputs if s["kind"] in ("number", "single_choice", "multiple_choice", "yes_no")]}]
    spec = parse_spec({
        "procedure_id": 1, "version_id": 10, "name": "粗大ごみ", "keywords": ["粗大ごみ"], "steps": steps, "computed": computed,
    })
    assert validate_spec(spec) == []
    return spec


OTHER = parse_spec({
    "procedure_id": 2, "version_id": 20, "name": "住民票", "keywords": ["住民票"],
    "steps": [{"key": "n", "kind": "short_text", "label": "お名前"},
              {"key": "c", "kind": "confirmation", "label": "確認"}, {"key": "d", "kind": "completion", "label": "完了"}],
})


def actions_of(result) -> list:
    found = []
    for message in result.messages:
        found += [a for a in message.actions if a.event is not None]
        found += [row.edit for row in message.rows if row.edit is not None]
    return found


def image_data():
    return st.fixed_dictionaries({
        "ref": st.sampled_from(["m1", "m2", "", None]),
        "content_type": st.sampled_from(["image/jpeg", "image/png", "image/gif", None]),
        "size": st.sampled_from([0, 10, 1500, 5000, -1, "big"]),
    })


def location_data():
    coordinate = st.sampled_from([35.6, 139.7, 0, -91, 181, float("nan"), "x"])
    return st.fixed_dictionaries({"latitude": coordinate, "longitude": coordinate, "address": st.sampled_from(["東京都", "", None])})


NAVIGATION = ("action.cancel", "action.back", "action.confirm_cancel", "action.switch", "action.edit")


def plausible_event(draw, spec, state, actions) -> Event:
    """A likely-valid answer for the current step, so that flows often reach completion."""
    session = (state or {}).get("session")
    if not session:
        return Event(type="text", text="粗大ごみ")
    current = next((s for s in spec.steps if s.key == session["current"]), None)
    forward = [a for a in actions if a.code not in NAVIGATION]
    if current is None or current.kind in ("confirmation", "single_choice", "yes_no", "multiple_choice") or session["mode"] != "asking":
        if forward:
            return draw(st.sampled_from(forward)).event
        return Event(type="text", text="はい")
    if current.kind == "date":
        picker = next((a for a in actions if a.kind == "date_picker"), None)
        if picker:
            return Event(type="date", value=picker.options["initial"], step=picker.event.step, session=picker.event.session)
    if current.kind == "image":
        return Event(type="image", data={"ref": "m1", "content_type": "image/png", "size": 1})
    if current.kind == "location":
        return Event(type="location", data={"latitude": 35.0, "longitude": 139.0, "address": "東京都", "title": ""})
    if current.kind == "short_text":
        text_format = current.options.get("format")
        samples = {"phone": "090-1234-5678", "postal_code": "1234567", "email": "a@example.jp", "katakana": "やまだ"}
        if text_format == "regex":
            return Event(type="text", text=next(sample for pattern, sample in REGEXES if pattern == current.options["pattern"]))
        return Event(type="text", text=samples.get(text_format, "山"))
    if current.kind == "number":
        low = current.options.get("min")
        return Event(type="text", text=str(low if low is not None else 3))
    return Event(type="text", text="あ")


@st.composite
def event_for(draw, spec, state, previous):
    session = (state or {}).get("session") or {}
    keys = [s.key for s in spec.steps] + [""]
    sessions = [session.get("id", ""), "", "1-10-0"]
    rare = ["typed", "sticker", "image", "location", "choice", "command", "date", "start"]
    move = draw(st.sampled_from(["plausible"] * 6 + ["action"] * 3 + rare + ["action"] * 3 + ["plausible"] * 6))
    actions = actions_of(previous) if previous is not None else []
    if move == "action" and actions:
        action = draw(st.sampled_from(actions))
        event = action.event
        if action.kind == "date_picker":
            value = draw(st.sampled_from([action.options.get("initial"), action.options.get("min"), "2026-06-10", "bad"]))
            event = Event(type="date", value=value, step=event.step, session=event.session)
        elif action.kind in ("camera", "camera_roll"):
            event = Event(type="image", data=draw(image_data()), step=event.step, session=event.session)
        elif action.kind == "location":
            event = Event(type="location", data=draw(location_data()), step=event.step, session=event.session)
        return event
    if move in ("action", "plausible"):
        return plausible_event(draw, spec, state, actions)
    if move == "typed":
        return Event(type="text", text=draw(st.sampled_from(TYPED) | st.text(max_size=15)))
    if move == "sticker":
        return Event(type="sticker")
    if move == "image":
        return Event(type="image", data=draw(image_data()))
    if move == "location":
        return Event(type="location", data=draw(location_data()))
    if move == "choice":
        value = draw(st.sampled_from(["v0", "v1", "v15", "yes", "no", "zzz", None, 3]))
        return Event(type="choice", value=value, step=draw(st.sampled_from(keys)), session=draw(st.sampled_from(sessions)))
    if move == "command":
        value = draw(st.sampled_from([None, 0, 1, 5, "s0", "s1", "confirm", "x"]))
        return Event(type="command", name=draw(st.sampled_from(COMMANDS)), value=value,
                     step=draw(st.sampled_from(keys)), session=draw(st.sampled_from(sessions)))
    if move == "date":
        return Event(type="date", value=draw(st.sampled_from(["2026-06-09", "2026-06-03", "2027-01-01", "nope", None])),
                     step=draw(st.sampled_from(keys)), session=draw(st.sampled_from(sessions)))
    return Event(type="start", value=draw(st.sampled_from([1, 2, "1", 99, None])))


def check_submit(submit: Submit, catalog: Catalog, now) -> None:
    spec = catalog.versions[submit.version_id]
    today = now.astimezone(TOKYO).date()
    steps = {s.key: s for s in spec.steps}
    for key, value in submit.answers.items():
        submitted_step = steps[key]
        assert submitted_step.is_input
        assert evaluate(submitted_step.condition, submit.answers), f"{key} does not apply"
        assert get_handler(submitted_step.kind).validate(submitted_step, value, today) is None, (key, value)
    for input_step in spec.input_steps:
        if input_step.required and evaluate(input_step.condition, submit.answers):
            assert input_step.key in submit.answers, f"required {input_step.key} missing"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=procedures(), data=st.data())
def test_random_conversations_keep_the_engine_invariants(spec, data):
    catalog = Catalog(versions={10: spec, 20: OTHER}, current={1: 10, 2: 20}, idle_timeout=IDLE)
    state = None
    previous = None
    now = NOW
    submitted_keys = []
    for _ in range(data.draw(st.integers(5, 40), label="length")):
        # Rare disturbances sit mid-list: Hypothesis favours the ends of a range.
        disturbance = data.draw(st.sampled_from(["none"] * 20 + ["pause", "unpublish"] + ["none"] * 20), label="disturbance")
        now += timedelta(hours=data.draw(st.sampled_from([3, 20]))) if disturbance == "pause" else timedelta(seconds=5)
        if disturbance == "unpublish":
            catalog = Catalog(versions={10: spec, 20: OTHER}, current={2: 20}, idle_timeout=IDLE)
        event = data.draw(event_for(spec, state, previous), label="event")
        result = step(catalog, state, event, now)
        codes = [message.code for message in result.messages]
        assert codes, "no message"
        assert "error.internal" not in codes, event
        json.dumps(result.state, allow_nan=False)
        for effect in result.effects:
            assert isinstance(effect, Submit)
            check_submit(effect, catalog, now)
            assert effect.submission_key not in submitted_keys, "submitted twice"
            submitted_keys.append(effect.submission_key)
        state, previous = result.state, result
