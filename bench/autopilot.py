"""A resident robot that can complete any procedure, and a generator of procedures for it.

The autopilot reads only what a resident would see: the messages the engine
sent last (a `Result` from the pure engine, or the `ConversationReply` of
`services.conversation_handle` when the database is involved). From the last
prompt it works out the current step and sends a VALID answer to it:

- choices: taps a choice button (the first one, or a random one with an `rng`);
- multiple choice: toggles enough choices for `min_selected`, then taps 完了;
- number: types a number within the step's min/max;
- date: sends the date picker's initial date, and the next day after each refusal;
- yes/no: types はい;
- short/long text: a sample that fits the format (phone, postal code, e-mail,
  katakana, regex) and the maximum length;
- image / location: the event LINE would send for a photo or a shared location;
- confirmation: taps the submit button.

Because every answer is valid, a completed conversation has exactly one Submit
effect; anything else (an exit, a dead end, repeated refusals) raises
`AutopilotStuck`, so a benchmark driven by it measures real conversations.

`generate_procedure(seed)` builds deterministic procedures of any length with
mixed step kinds and conditions on earlier answers, to drive the engine beyond
the two demo procedures.

Pure Python like the engine: no Django here (the test suite imports it).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from procedures.engine import Catalog, Event, Message, Result, Submit
from procedures.engine import step as engine_step
from procedures.spec import ProcedureSpec, Step, parse_spec, validate_spec

# Messages after which the conversation is over without an application (or never
# started): for a robot that only gives valid answers each of them is a failure.
FAILURE_CODES = frozenset(
    {
        "menu",
        "menu.empty",
        "procedure.not_open",
        "procedure.closed",
        "procedure.exited",
        "procedure.ended",
        "session.expired",
        "session.reset",
        "session.cancelled",
        "error.internal",
        "button.stale",
        "procedure.already_submitted",
    }
)
COMPLETED_CODE = "procedure.completed"
# Layouts of a message that waits for the resident (see procedures/engine/types.py).
PROMPT_LAYOUTS = ("question", "summary", "confirm")

# Sample answers per text format, longest first: the first one within max_length is used.
FORMAT_SAMPLES = {
    "phone": ("090-1234-5678", "09012345678"),
    "postal_code": ("845-8511", "8458511"),
    "email": ("bench.resident@example.jp", "b@example.jp"),
    "katakana": ("オギ タロウ", "オギ", "オ"),
}
# Tried in order against a regex step's pattern (after its hint) until one matches.
REGEX_SAMPLES = ("0", "1", "12", "123", "1234", "1234567", "a", "abc", "A", "ABC", "A1", "a-1", "テスト")
PLAIN_TEXT = "ベンチマーク用の回答です。玄関前に出します。"
IMAGE_DATA = {"ref": "bench-image-0001", "content_type": "image/jpeg", "size": 150_000}
LOCATION_DATA = {"latitude": 33.2735, "longitude": 130.2166, "address": "佐賀県小城市三日月町長神田2312-2", "title": "自宅"}
# How many refusals of a (non-date) answer the robot tolerates before it gives up.
MAX_ATTEMPTS = 5
# Dates are tried day after day; a year and a bit covers any weekday/holiday rule.
MAX_DATE_ATTEMPTS = 400


class AutopilotStuck(RuntimeError):
    """The robot could not go on: the conversation ended early or an answer keeps being refused."""


@dataclass
class Autopilot:
    """Answers one procedure's questions; one instance per conversation (it remembers tried dates)."""

    spec: ProcedureSpec
    procedure_id: int
    rng: random.Random | None = None  # None: always the first choice / the lowest number
    completed: bool = False
    attempts: dict[str, int] = field(default_factory=dict)
    _tried_dates: dict[str, date] = field(default_factory=dict)
    _targets: dict[str, int] = field(default_factory=dict)
    _tapped: dict[str, set[str]] = field(default_factory=dict)
    _exit_values: dict[str, list] = field(init=False)

    def __post_init__(self):
        self._exit_values = exit_values(self.spec)

    def start_event(self) -> Event:
        """What a resident sends first: the start button of the procedure in the menu."""
        return Event(type="start", value=self.procedure_id)

    def next_event(self, messages: Sequence[Message], state: dict | None = None) -> Event | None:
        """The answer to the last prompt in `messages`, or None once the application was submitted.

        `state` (the engine state, when the caller has it) is only used to check
        that the step read from the buttons is the step the engine is asking.
        """
        codes = [message.code for message in messages]
        if COMPLETED_CODE in codes:
            self.completed = True
            return None
        failures = [code for code in codes if code in FAILURE_CODES]
        if failures:
            raise AutopilotStuck(f"{self.spec.name}: the conversation went off course: {codes}")
        prompt = next((message for message in reversed(messages) if message.layout in PROMPT_LAYOUTS), None)
        if prompt is None:
            raise AutopilotStuck(f"{self.spec.name}: nothing to answer in {codes}")
        if prompt.code == "session.confirm_cancel":
            return _tap(prompt, "action.keep_going")
        if prompt.code == "session.confirm_switch":
            return _tap(prompt, "action.stay")
        key = _prompt_step(prompt)
        if state is not None and (state.get("session") or {}).get("current") != key:
            raise AutopilotStuck(f"{self.spec.name}: buttons are for {key!r}, the engine asks {state['session']!r}")
        step = self.spec.get_step(key)
        self._count_refusals(step, codes)
        if prompt.code == "summary":
            return _tap(prompt, "action.submit")
        if prompt.code != "question":
            raise AutopilotStuck(f"{self.spec.name}: unexpected prompt {prompt.code}")
        event = self._answer(step, prompt)
        if event is None:  # no valid answer can be built (e.g. an odd regex): leave it out if allowed
            if step.required:
                raise AutopilotStuck(f"{self.spec.name}: no valid answer for required step {key!r}")
            return _tap(prompt, "action.skip")
        return event

    # -- answering one question -------------------------------------------
    def _count_refusals(self, step: Step, codes: list[str]) -> None:
        if not any(code.startswith("error.") for code in codes):
            return
        count = self.attempts[step.key] = self.attempts.get(step.key, 0) + 1
        limit = MAX_DATE_ATTEMPTS if step.kind == "date" else MAX_ATTEMPTS
        if count > limit:
            raise AutopilotStuck(f"{self.spec.name}: answers to {step.key!r} refused {count} times: {codes}")

    def _answer(self, step: Step, prompt: Message) -> Event | None:
        kind = step.kind
        if kind == "single_choice":
            return self._pick(self._safe(step, _actions(prompt, "action.choice"))).event
        if kind == "multiple_choice":
            return self._toggle_or_done(step, prompt)
        if kind == "yes_no":
            # Typed, as many residents do. "Yes" goes on in the demos; "no" only when "yes" leads to an exit.
            avoid = self._exit_values.get(step.key, [])
            says_yes = not any(_means_yes(value) for value in avoid)
            return Event(type="text", text="はい" if says_yes else "いいえ")
        if kind == "number":
            text = self._number_text(step)
            return None if text is None else Event(type="text", text=text)
        if kind == "date":
            return self._date_event(step, prompt)
        if kind == "short_text":
            text = _short_text(step)
            return None if text is None else Event(type="text", text=text)
        if kind == "long_text":
            return Event(type="text", text=PLAIN_TEXT[: step.options.get("max_length") or 1000])
        if kind == "image":
            max_bytes = step.options.get("max_bytes") or IMAGE_DATA["size"]
            data = {**IMAGE_DATA, "size": min(IMAGE_DATA["size"], max_bytes)}
            return replace(_tap(prompt, "action.camera_roll"), data=data)
        if kind == "location":
            return replace(_tap(prompt, "action.location"), data=dict(LOCATION_DATA))
        raise AutopilotStuck(f"{self.spec.name}: no idea how to answer a {kind!r} step")

    def _safe(self, step: Step, actions: list) -> list:
        """The choice buttons that cannot lead to an exit step (all of them if none is safe)."""
        avoid = self._exit_values.get(step.key)
        if not avoid:
            return actions
        safe = [action for action in actions if action.event.value not in avoid]
        return safe or actions

    def _pick(self, actions: list):
        if not actions:
            raise AutopilotStuck(f"{self.spec.name}: a choice question without choice buttons")
        return actions[0] if self.rng is None else self.rng.choice(actions)

    def _toggle_or_done(self, step: Step, prompt: Message) -> Event:
        target = self._targets.get(step.key)
        if target is None:
            # Drawn once per step so that repeated toggles head for the same count.
            low = max(1, step.options.get("min_selected") or 0)
            high = min(step.options.get("max_selected") or len(step.choices), len(step.choices), low + 2)
            if low > high:
                raise AutopilotStuck(f"{self.spec.name}: {step.key!r} cannot be answered ({low} > {high})")
            target = self._targets[step.key] = low if self.rng is None else self.rng.randint(low, high)
        if prompt.params.get("selected_count", 0) >= target:
            return _tap(prompt, "action.done")
        # A sensitive step does not say which choices are selected, only how many: remember our own taps.
        tapped = self._tapped.setdefault(step.key, set())
        toggles = self._safe(step, _actions(prompt, "action.toggle"))
        unselected = [a for a in toggles if not a.params.get("selected") and a.event.value not in tapped]
        if unselected:
            event = self._pick(unselected).event
            tapped.add(event.value)
            return event
        return _tap(prompt, "action.page_next")  # everything on this page is taken: look further

    def _number_text(self, step: Step) -> str | None:
        options = step.options
        minimum, maximum = options.get("min"), options.get("max")
        low = minimum if minimum is not None else (min(0, maximum) if maximum is not None else 0)
        high = maximum if maximum is not None else low + 100
        if options.get("integer", True):
            low, high = math.ceil(low), math.floor(high)
            if low > high:
                return None
            return str(low if self.rng is None else self.rng.randint(low, high))
        if self.rng is None:
            value = low
        else:
            value = min(max(round(self.rng.uniform(low, high), 2), low), high)
        text = repr(float(value))  # repr round-trips exactly, so a bound stays within range
        return format(value, "f") if "e" in text else text

    def _date_event(self, step: Step, prompt: Message) -> Event:
        picker = next((a for a in prompt.actions if a.code == "action.date_picker"), None)
        if picker is None:
            raise AutopilotStuck(f"{self.spec.name}: a date question without a date picker")
        tried = self._tried_dates.get(step.key)
        day = date.fromisoformat(picker.options["initial"]) if tried is None else tried + timedelta(days=1)
        latest = picker.options.get("max")
        if latest and day > date.fromisoformat(latest):
            raise AutopilotStuck(f"{self.spec.name}: no acceptable date for {step.key!r} up to {latest}")
        self._tried_dates[step.key] = day
        return replace(picker.event, value=day.isoformat())


def exit_values(spec: ProcedureSpec) -> dict[str, list]:
    """{step key: answer values that an exit step's condition looks for}.

    Conservative: every value named by equals/one_of anywhere in an exit's
    condition counts, whatever the all/any structure around it; the robot
    steers clear of them so that it reaches the confirmation.
    """
    found: dict[str, list] = {}

    def walk(condition) -> None:
        if not isinstance(condition, dict):
            return
        for group in ("all", "any"):
            for item in condition.get(group) or ():
                walk(item)
        key, op = condition.get("step"), condition.get("op")
        if op == "equals":
            found.setdefault(key, []).append(condition.get("value"))
        elif op == "one_of":
            found.setdefault(key, []).extend(condition.get("values") or [])

    for step in spec.steps:
        if step.kind == "exit":
            walk(step.condition)
    return found


def _means_yes(value) -> bool:
    """How a condition may spell a yes/no "yes" (see procedures/engine/conditions.py)."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in ("yes", "true", "はい")


def _actions(prompt: Message, code: str) -> list:
    return [action for action in prompt.actions if action.code == code and action.event is not None]


def _tap(prompt: Message, code: str) -> Event:
    actions = _actions(prompt, code)
    if not actions:
        raise AutopilotStuck(f"no {code} button in {prompt.code} ({[a.code for a in prompt.actions]})")
    return actions[0].event


def _prompt_step(prompt: Message) -> str:
    """The step a prompt asks: every prompt carries navigation buttons (at least 中止) naming it."""
    for action in prompt.actions:
        if action.event is not None and action.event.step:
            return action.event.step
    raise AutopilotStuck(f"cannot tell which step {prompt.code} asks")


def _short_text(step: Step) -> str | None:
    options = step.options
    max_length = options.get("max_length") or 100
    text_format = options.get("format") or "none"
    if text_format == "regex":
        pattern = options.get("pattern") or ""
        candidates = (options.get("pattern_hint") or "", *REGEX_SAMPLES)
        return next((c for c in candidates if c and len(c) <= max_length and re.fullmatch(pattern, c)), None)
    if text_format in FORMAT_SAMPLES:
        return next((c for c in FORMAT_SAMPLES[text_format] if len(c) <= max_length), None)
    return PLAIN_TEXT[:max_length]


# --------------------------------------------------------------------------
# Driving whole conversations
# --------------------------------------------------------------------------

# send(event) -> (messages, state or None): one resident input through whatever is measured.
Send = Callable[[Event], tuple[Sequence[Message], dict | None]]


def drive(send: Send, pilot: Autopilot, *, max_turns: int = 1000) -> int:
    """Complete one conversation through `send`; returns the number of events sent."""
    event = pilot.start_event()
    for turn in range(1, max_turns + 1):
        messages, state = send(event)
        event = pilot.next_event(messages, state)
        if event is None:
            return turn
    raise AutopilotStuck(f"{pilot.spec.name}: not completed after {max_turns} events")


@dataclass(frozen=True)
class Turn:
    """One engine call as it happened: replaying (state, event, now) gives the same result."""

    state: dict | None
    event: Event
    now: datetime
    result: Result


def drive_engine(
    catalog: Catalog,
    procedure_id: int,
    *,
    now: datetime,
    rng: random.Random | None = None,
    gap: timedelta = timedelta(seconds=20),
    max_turns: int = 1000,
) -> list[Turn]:
    """Complete one conversation with the pure engine and return every turn of it."""
    spec = catalog.current_spec(procedure_id)
    if spec is None:
        raise AutopilotStuck(f"procedure {procedure_id} is not open in the catalog")
    turns: list[Turn] = []
    state: dict | None = None
    clock = now

    def send(event: Event):
        nonlocal state, clock
        result = engine_step(catalog, state, event, clock)
        turns.append(Turn(state, event, clock, result))
        state = result.state
        clock += gap  # residents take a few seconds per answer; dates depend on the clock
        return result.messages, result.state

    drive(send, Autopilot(spec, procedure_id, rng=rng), max_turns=max_turns)
    return turns


def submits_of(turns: Sequence[Turn]) -> list[Submit]:
    return [effect for turn in turns for effect in turn.result.effects if isinstance(effect, Submit)]


# --------------------------------------------------------------------------
# Generated procedures
# --------------------------------------------------------------------------

# Relative weights of the step kinds in the body of a generated procedure.
KIND_WEIGHTS = {
    "short_text": 6,
    "long_text": 2,
    "number": 5,
    "date": 3,
    "single_choice": 6,
    "multiple_choice": 4,
    "yes_no": 5,
    "image": 2,
    "location": 2,
    "message": 2,
    "exit": 1,
}
CONDITION_PROBABILITY = 0.35
CONDITION_KINDS = ("single_choice", "multiple_choice", "number", "yes_no")
REGEX_OPTIONS = (("[0-9]{3}", "3桁の数字（例：123）"), ("[A-Z]{3}", "英大文字3文字（例：ABC）"), ("[a-z]+-[0-9]", "例：a-1"))


def generate_procedure(seed: int, *, n_steps: int = 50, procedure_id: int = 1, version_id: int = 1) -> dict:
    """Spec data (as parse_spec reads it) for a deterministic procedure of `n_steps` steps.

    An intro message, then mixed input and flow steps, about a third of them
    behind a condition on an earlier choice, number or yes/no answer (sometimes
    all/any groups, so answers get pruned in chains), and a confirmation and a
    completion at the end. Exits are conditional on a "no" to an earlier
    yes/no question, which the autopilot never answers, so it always reaches
    the end. Same seed, same procedure.
    """
    if n_steps < 4:
        raise ValueError("a generated procedure needs at least 4 steps")
    rng = random.Random(seed)
    kinds, weights = zip(*KIND_WEIGHTS.items(), strict=True)
    steps: list[dict] = [{"key": "intro", "kind": "message", "label": f"生成された手続き {seed} です。"}]
    for index in range(1, n_steps - 2):
        kind = rng.choices(kinds, weights)[0]
        yes_no_keys = [s["key"] for s in steps if s["kind"] == "yes_no"]
        if kind == "exit" and not yes_no_keys:
            kind = "message"
        step = {"key": f"q{index:02d}_{kind}", "kind": kind, "label": f"質問{index}（{kind}）"}
        if kind == "exit":
            step["label"] = f"終了{index}：対象外です。"
            step["condition"] = {"step": rng.choice(yes_no_keys), "op": "equals", "value": False}
        else:
            _fill_step(rng, step, index)
            referable = [s for s in steps if s["kind"] in CONDITION_KINDS]
            if index > 2 and referable and rng.random() < CONDITION_PROBABILITY:
                step["condition"] = _condition(rng, referable, steps)
        steps.append(step)
    steps.append({"key": "confirm", "kind": "confirmation", "label": "入力内容を確認してください。"})
    steps.append({"key": "done", "kind": "completion", "label": "受け付けました。"})
    numeric = [s["key"] for s in steps if s["kind"] in CONDITION_KINDS]
    computed = [
        {
            "key": "fee_total",
            "label": "手数料合計",
            "unit": "円",
            "constant": rng.choice([0, 100, 300]),
            "terms": [{"step": key, "factor": rng.choice([1, 10, 100])} for key in rng.sample(numeric, min(4, len(numeric)))],
        }
    ]
    return {
        "procedure_id": procedure_id,
        "version_id": version_id,
        "name": f"生成手続き{seed}",
        "description": "ベンチマーク用に生成した手続きです。",
        "keywords": [f"生成{seed}"],
        "receipt_prefix": f"GEN{seed % 1000}",
        "steps": steps,
        "computed": computed,
    }


def generated_spec(seed: int, *, n_steps: int = 50, procedure_id: int = 1, version_id: int = 1) -> ProcedureSpec:
    """The parsed generated procedure; raises ValueError if it would not pass publishing."""
    spec = parse_spec(generate_procedure(seed, n_steps=n_steps, procedure_id=procedure_id, version_id=version_id))
    problems = validate_spec(spec)
    if problems:
        raise ValueError(f"generated procedure {seed} would not publish: {problems}")
    return spec


def _fill_step(rng: random.Random, step: dict, index: int) -> None:
    """Kind-specific options and choices, plus the odd optional or sensitive step."""
    kind = step["kind"]
    if kind not in ("message",):
        step["required"] = rng.random() > 0.15
        step["sensitive"] = rng.random() < 0.15
    if kind == "short_text":
        text_format = rng.choice(["none", "none", "phone", "postal_code", "email", "katakana", "regex"])
        options = {"format": text_format, "max_length": {"phone": 20, "postal_code": 8, "katakana": 50}.get(text_format, 100)}
        if text_format == "regex":
            options["pattern"], options["pattern_hint"] = rng.choice(REGEX_OPTIONS)
        step["options"] = options
    elif kind == "long_text":
        step["options"] = {"max_length": rng.choice([200, 500, 1000])}
    elif kind == "number":
        integer = rng.random() < 0.8
        minimum = rng.randint(0, 10) if integer else rng.choice([0.5, 1.25])
        step["options"] = {"min": minimum, "max": minimum + rng.randint(1, 100), "integer": integer, "unit": rng.choice(["", "個", "cm"])}
    elif kind == "date":
        if rng.random() < 0.7:  # an appointment: a window in the future on some weekdays
            min_days = rng.randint(0, 5)
            step["options"] = {
                "min_days": min_days,
                "max_days": min_days + rng.randint(20, 90),
                "weekdays": sorted(rng.sample(range(7), rng.randint(2, 7))),
                "allow_holidays": rng.random() < 0.5,
                "excluded_dates": sorted({f"2026-12-{rng.randint(1, 31):02d}" for _ in range(rng.randint(0, 4))}),
            }
        else:  # a date of birth
            step["options"] = {"min_days": -36500, "max_days": -6570}
    elif kind in ("single_choice", "multiple_choice"):
        count = rng.randint(2, 20) if kind == "single_choice" else rng.randint(3, 16)
        step["choices"] = [
            {"value": f"c{j}", "label": f"選択肢{index}-{j}", "amount": rng.choice([0, 100, 200, 500])}
            for j in range(1, count + 1)
        ]
        if kind == "multiple_choice":
            minimum = rng.randint(1, 2)
            step["options"] = {"min_selected": minimum, "max_selected": rng.choice([None, minimum + rng.randint(0, 3)])}
    elif kind == "image":
        step["options"] = {"max_bytes": rng.choice([1024 * 1024, 5 * 1024 * 1024])}


def _condition(rng: random.Random, referable: list[dict], steps: list[dict]) -> dict:
    if rng.random() < 0.2 and len(referable) > 1:
        first, second = rng.sample(referable, 2)
        return {rng.choice(["all", "any"]): [_leaf(rng, first, steps), _leaf(rng, second, steps)]}
    return _leaf(rng, rng.choice(referable), steps)


def _leaf(rng: random.Random, ref: dict, steps: list[dict]) -> dict:
    key, kind = ref["key"], ref["kind"]
    if rng.random() < 0.1:
        return {"step": key, "op": rng.choice(["answered", "not_answered"])}
    if kind == "yes_no":
        return {"step": key, "op": "equals", "value": rng.random() < 0.7}
    if kind == "number":
        options = ref["options"]
        value = rng.randint(math.ceil(options["min"]), math.floor(options["max"]))
        return {"step": key, "op": "compare", "operator": rng.choice(["lt", "le", "gt", "ge", "eq", "ne"]), "value": value}
    values = [choice["value"] for choice in ref["choices"]]
    if rng.random() < 0.5:
        return {"step": key, "op": "equals", "value": rng.choice(values)}
    return {"step": key, "op": "one_of", "values": rng.sample(values, rng.randint(1, min(3, len(values))))}
