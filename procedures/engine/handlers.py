"""One handler per step kind, looked up in HANDLERS by `get_handler(kind)`.

Input handlers turn an Event into an outcome (Answered, Skipped, Invalid or
Pending), build the kind-specific part of the question, re-validate a stored
answer and give its display form for the confirmation summary. Flow handlers
(message, confirmation, completion, exit) tell the conversation what to do
when the flow reaches them; they call back into the flow object of core.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from procedures.engine import validators
from procedures.engine.types import Action, Event
from procedures.spec import DEFAULT_IMAGE_MAX_BYTES, IMAGE_TYPES, REJECTED_IMAGE_REF_PREFIX, STEP_KINDS, Step

# LINE shows at most 13 quick replies: up to 13 choices fit on one page, more are
# paged 11 at a time, leaving room for the 前へ/次へ buttons.
MAX_UNPAGED_CHOICES = 13
PAGE_SIZE = 11

YES_WORDS = frozenset({"はい", "yes", "y", "うん", "ok", "はい。"})
NO_WORDS = frozenset({"いいえ", "no", "n", "いや", "いいえ。"})
DONE_WORDS = frozenset({"完了", "選択完了", "決定", "おわり", "終わり", "done"})
NEXT_PAGE_WORDS = frozenset({"次へ", "つぎへ", "次"})
PREVIOUS_PAGE_WORDS = frozenset({"前へ", "まえへ", "前"})


class UnknownStepKind(ValueError):
    pass


@dataclass(frozen=True)
class AskContext:
    """What a handler needs to ask or check: no session internals beyond these."""

    session_id: str
    today: date
    answer: Any = None
    answered: bool = False
    page: int = 0
    selection: tuple = ()


@dataclass(frozen=True)
class Answered:
    value: Any


@dataclass(frozen=True)
class Skipped:
    """An optional step left unanswered."""


@dataclass(frozen=True)
class Invalid:
    code: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Pending:
    """Stay on the step (another page, a toggled selection) and ask again."""

    page: int | None = None
    selection: tuple | None = None


def button(ctx: AskContext, step: Step, event_type: str, **fields) -> Event:
    return Event(type=event_type, step=step.key, session=ctx.session_id, **fields)


def command(ctx: AskContext, step: Step, name: str, value=None) -> Event:
    return button(ctx, step, "command", name=name, value=value)


class StepHandler:
    kind = ""
    is_input = True
    expected = "text"  # what "wrong_input_type" tells the resident to send

    # -- asking --------------------------------------------------------
    def question(self, step: Step, ctx: AskContext) -> tuple[dict, list[Action]]:
        """Kind-specific question params and actions (navigation is added by the core)."""
        return {}, []

    # -- answering -----------------------------------------------------
    def accept(self, step: Step, event: Event, ctx: AskContext):
        method = getattr(self, f"on_{event.type}", None)
        if method is None:
            return self.wrong_type()
        return method(step, event, ctx)

    def wrong_type(self) -> Invalid:
        return Invalid("error.wrong_input_type", {"expected": self.expected})

    # -- stored answers ------------------------------------------------
    def validate(self, step: Step, value, today: date) -> Invalid | None:
        """Check a stored answer again (before submitting, and in the property tests)."""
        return None

    def display(self, step: Step, value):
        """Channel-neutral display value for summaries and "current answer" lines."""
        return value


def _invalid(error) -> Invalid | None:
    return Invalid(*error) if error else None


# --------------------------------------------------------------------------
# Text and numbers
# --------------------------------------------------------------------------


class ShortTextHandler(StepHandler):
    kind = "short_text"

    def question(self, step, ctx):
        options = step.options
        return {
            "max_length": options.get("max_length"),
            "format": options.get("format") or "none",
            "hint": options.get("pattern_hint") or "",
        }, []

    def on_text(self, step, event, ctx):
        value, error = validators.check_short_text(event.text, step.options)
        return _invalid(error) or Answered(value)

    def validate(self, step, value, today):
        if not isinstance(value, str):
            return self.wrong_type()
        normalized, error = validators.check_short_text(value, step.options)
        if error:
            return Invalid(*error)
        if normalized != value:
            return Invalid("error.bad_format", {"format": step.options.get("format") or "none"})
        return None


class LongTextHandler(StepHandler):
    kind = "long_text"

    def question(self, step, ctx):
        return {"max_length": step.options.get("max_length")}, []

    def on_text(self, step, event, ctx):
        value, error = validators.check_text(event.text, step.options.get("max_length") or 1000)
        return _invalid(error) or Answered(value)

    def validate(self, step, value, today):
        if not isinstance(value, str):
            return self.wrong_type()
        _, error = validators.check_text(value, step.options.get("max_length") or 1000)
        return _invalid(error)


class NumberHandler(StepHandler):
    kind = "number"
    expected = "number"

    def question(self, step, ctx):
        options = step.options
        return {
            "min": options.get("min"),
            "max": options.get("max"),
            "unit": options.get("unit") or "",
            "integer": options.get("integer", True),
        }, []

    def on_text(self, step, event, ctx):
        options = step.options
        number, error = validators.parse_number(
            event.text, integer=options.get("integer", True), unit=options.get("unit") or ""
        )
        if error:
            return Invalid(*error)
        return _invalid(validators.check_number(number, options)) or Answered(number)

    def validate(self, step, value, today):
        return _invalid(validators.check_number(value, step.options))

    def display(self, step, value):
        return {"number": value, "unit": step.options.get("unit") or ""}


# --------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------


class DateHandler(StepHandler):
    kind = "date"
    expected = "date"

    def question(self, step, ctx):
        options = step.options
        earliest, latest = validators.date_bounds(options, ctx.today)
        initial = None
        if ctx.answered and isinstance(ctx.answer, str) and not step.sensitive:
            initial = validators.parse_date(ctx.answer, ctx.today)
            if initial and validators.check_date(initial, options, ctx.today):
                initial = None
        initial = initial or validators.first_allowed_date(options, ctx.today) or earliest or ctx.today
        if latest and initial > latest:
            initial = latest
        picker = {
            "min": earliest.isoformat() if earliest else None,
            "max": latest.isoformat() if latest else None,
            "initial": initial.isoformat(),
        }
        params = {
            "min": picker["min"],
            "max": picker["max"],
            "weekdays": list(options.get("weekdays", range(7))),
            "allow_holidays": options.get("allow_holidays", True),
        }
        action = Action(
            "action.date_picker", {}, button(ctx, step, "date"), kind="date_picker", options=picker
        )
        return params, [action]

    def _check(self, step, day: date | None, today: date):
        if day is None:
            return Invalid("error.not_a_date", {})
        return _invalid(validators.check_date(day, step.options, today)) or Answered(day.isoformat())

    def _future_only(self, step) -> bool:
        min_days = step.options.get("min_days")
        return min_days is not None and min_days >= 0

    def on_text(self, step, event, ctx):
        if not any(ch.isdigit() for ch in validators.nfkc(event.text)):
            return self.wrong_type()
        return self._check(step, validators.parse_date(event.text, ctx.today, future=self._future_only(step)), ctx.today)

    def on_date(self, step, event, ctx):
        value = event.value if isinstance(event.value, str) else ""
        return self._check(step, validators.parse_date(value, ctx.today, future=self._future_only(step)), ctx.today)

    def validate(self, step, value, today):
        if not isinstance(value, str):
            return Invalid("error.not_a_date", {})
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return Invalid("error.not_a_date", {})
        if day.isoformat() != value:
            return Invalid("error.not_a_date", {})
        return _invalid(validators.check_date(day, step.options, today))


# --------------------------------------------------------------------------
# Choices
# --------------------------------------------------------------------------


def page_count(step: Step) -> int:
    count = len(step.choices)
    return 1 if count <= MAX_UNPAGED_CHOICES else math.ceil(count / PAGE_SIZE)


def page_choices(step: Step, page: int):
    if page_count(step) == 1:
        return step.choices
    return step.choices[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]


def _clamp_page(step: Step, page) -> int:
    if isinstance(page, bool) or not isinstance(page, int):
        return 0
    return max(0, min(page, page_count(step) - 1))


def _page_actions(step: Step, ctx: AskContext, page: int) -> list[Action]:
    actions = []
    if page > 0:
        actions.append(Action("action.page_prev", {"page": page}, command(ctx, step, "page", page - 1)))
    if page < page_count(step) - 1:
        actions.append(Action("action.page_next", {"page": page + 2}, command(ctx, step, "page", page + 1)))
    return actions


def find_typed_choice(step: Step, text: str):
    """A choice by typed label (loosely compared) or by its 1-based number in the full list."""
    typed = validators.normalize_typed(text)
    for choice in step.choices:
        if validators.normalize_typed(choice.label) == typed or validators.normalize_typed(choice.value) == typed:
            return choice
    if typed.isdigit() and typed.isascii() and 1 <= int(typed) <= len(step.choices):
        return step.choices[int(typed) - 1]
    return None


class _ChoiceHandler(StepHandler):
    expected = "choice"

    def _paging_command(self, step, event, ctx):
        if event.name != "page":
            return None
        value = event.value
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < page_count(step):
            return Invalid("error.unknown_choice", {})
        return Pending(page=value)

    def _typed_page(self, step, typed: str, ctx):
        if page_count(step) > 1 and typed in NEXT_PAGE_WORDS and ctx.page < page_count(step) - 1:
            return Pending(page=ctx.page + 1)
        if page_count(step) > 1 and typed in PREVIOUS_PAGE_WORDS and ctx.page > 0:
            return Pending(page=ctx.page - 1)
        return None

    def label_of(self, step, value) -> str:
        for choice in step.choices:
            if choice.value == value:
                return choice.label
        return str(value)


class SingleChoiceHandler(_ChoiceHandler):
    kind = "single_choice"

    def question(self, step, ctx):
        page = _clamp_page(step, ctx.page)
        actions = [
            Action("action.choice", {"label": choice.label}, button(ctx, step, "choice", value=choice.value))
            for choice in page_choices(step, page)
        ]
        actions += _page_actions(step, ctx, page)
        return {"page": page + 1, "pages": page_count(step), "choice_count": len(step.choices)}, actions

    def on_choice(self, step, event, ctx):
        if any(choice.value == event.value for choice in step.choices):
            return Answered(event.value)
        return Invalid("error.unknown_choice", {})

    def on_text(self, step, event, ctx):
        paged = self._typed_page(step, validators.normalize_typed(event.text), ctx)
        if paged:
            return paged
        choice = find_typed_choice(step, event.text)
        return Answered(choice.value) if choice else Invalid("error.unknown_choice", {})

    def on_command(self, step, event, ctx):
        return self._paging_command(step, event, ctx) or self.wrong_type()

    def validate(self, step, value, today):
        if not isinstance(value, str) or all(choice.value != value for choice in step.choices):
            return Invalid("error.unknown_choice", {})
        return None

    def display(self, step, value):
        return self.label_of(step, value)


class MultipleChoiceHandler(_ChoiceHandler):
    kind = "multiple_choice"

    def question(self, step, ctx):
        page = _clamp_page(step, ctx.page)
        selected = set(ctx.selection)
        # A sensitive step shows only how many are selected, never which.
        shown = set() if step.sensitive else selected
        actions = [
            Action(
                "action.toggle",
                {"label": choice.label, "selected": choice.value in shown},
                button(ctx, step, "choice", value=choice.value),
            )
            for choice in page_choices(step, page)
        ]
        actions.append(Action("action.done", {"count": len(selected)}, command(ctx, step, "done")))
        actions += _page_actions(step, ctx, page)
        params = {
            "page": page + 1,
            "pages": page_count(step),
            "choice_count": len(step.choices),
            "selected_count": len(selected),
            "min_selected": step.options.get("min_selected"),
            "max_selected": step.options.get("max_selected"),
        }
        if not step.sensitive:
            params["selected"] = [choice.label for choice in step.choices if choice.value in selected]
        return params, actions

    def _toggle(self, step, value, ctx):
        selected = set(ctx.selection)
        selected.symmetric_difference_update({value})
        return Pending(selection=tuple(choice.value for choice in step.choices if choice.value in selected))

    def _done(self, step, ctx):
        selection = list(ctx.selection)
        if not selection and not step.required:
            return Skipped()
        error = self._count_error(step, selection)
        return error or Answered(selection)

    def _count_error(self, step, selection) -> Invalid | None:
        minimum = step.options.get("min_selected") or 0
        maximum = step.options.get("max_selected")
        if len(selection) < minimum:
            return Invalid("error.too_few_selected", {"min": minimum})
        if maximum is not None and len(selection) > maximum:
            return Invalid("error.too_many_selected", {"max": maximum})
        return None

    def on_choice(self, step, event, ctx):
        if any(choice.value == event.value for choice in step.choices):
            return self._toggle(step, event.value, ctx)
        return Invalid("error.unknown_choice", {})

    def on_text(self, step, event, ctx):
        typed = validators.normalize_typed(event.text)
        if typed in DONE_WORDS:
            return self._done(step, ctx)
        paged = self._typed_page(step, typed, ctx)
        if paged:
            return paged
        choice = find_typed_choice(step, event.text)
        return self._toggle(step, choice.value, ctx) if choice else Invalid("error.unknown_choice", {})

    def on_command(self, step, event, ctx):
        if event.name == "done":
            return self._done(step, ctx)
        return self._paging_command(step, event, ctx) or self.wrong_type()

    def validate(self, step, value, today):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return Invalid("error.unknown_choice", {})
        ordered = [choice.value for choice in step.choices if choice.value in value]
        if ordered != value:  # unknown values, duplicates or a different order
            return Invalid("error.unknown_choice", {})
        return self._count_error(step, value)

    def display(self, step, value):
        return [self.label_of(step, item) for item in value] if isinstance(value, list) else []


class YesNoHandler(StepHandler):
    kind = "yes_no"
    expected = "yes_no"

    def question(self, step, ctx):
        return {}, [
            Action("action.yes", {}, button(ctx, step, "choice", value="yes")),
            Action("action.no", {}, button(ctx, step, "choice", value="no")),
        ]

    def on_choice(self, step, event, ctx):
        if event.value in ("yes", True):
            return Answered(True)
        if event.value in ("no", False):
            return Answered(False)
        return Invalid("error.unknown_choice", {})

    def on_text(self, step, event, ctx):
        typed = validators.normalize_typed(event.text)
        if typed in YES_WORDS:
            return Answered(True)
        if typed in NO_WORDS:
            return Answered(False)
        return Invalid("error.unknown_choice", {})

    def validate(self, step, value, today):
        return None if isinstance(value, bool) else Invalid("error.unknown_choice", {})


# --------------------------------------------------------------------------
# Images and locations
# --------------------------------------------------------------------------


class ImageHandler(StepHandler):
    kind = "image"
    expected = "image"

    def question(self, step, ctx):
        max_bytes = step.options.get("max_bytes") or DEFAULT_IMAGE_MAX_BYTES
        return {"max_bytes": max_bytes, "max_mb": round(max_bytes / (1024 * 1024), 1)}, [
            Action("action.camera", {}, button(ctx, step, "image"), kind="camera"),
            Action("action.camera_roll", {}, button(ctx, step, "image"), kind="camera_roll"),
        ]

    def _check(self, step, data) -> Invalid | None:
        if not isinstance(data, dict):
            return Invalid("error.bad_image", {})
        ref, content_type, size = data.get("ref"), data.get("content_type"), data.get("size")
        if not isinstance(ref, str) or not ref or isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return Invalid("error.bad_image", {})
        if content_type not in IMAGE_TYPES:
            return Invalid("error.image_type", {})
        max_bytes = step.options.get("max_bytes") or DEFAULT_IMAGE_MAX_BYTES
        if ref.startswith(REJECTED_IMAGE_REF_PREFIX):
            # The channel did not keep the file (its own limit may be lower than the step's).
            channel_max = data.get("max_bytes")
            if isinstance(channel_max, int) and not isinstance(channel_max, bool) and 0 < channel_max < max_bytes:
                max_bytes = channel_max
            size = max(size, max_bytes + 1)
        if size > max_bytes:
            return Invalid("error.image_too_large", {"max_bytes": max_bytes, "max_mb": round(max_bytes / (1024 * 1024), 1)})
        return None

    def on_image(self, step, event, ctx):
        error = self._check(step, event.data)
        if error:
            return error
        data = event.data
        return Answered({"ref": data["ref"], "content_type": data["content_type"], "size": data["size"]})

    def validate(self, step, value, today):
        if not isinstance(value, dict) or set(value) != {"ref", "content_type", "size"}:
            return Invalid("error.bad_image", {})
        return self._check(step, value)

    def display(self, step, value):
        return {"images": 1}


def _finite_in(value, limit: float) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and -limit <= value <= limit
    )


class LocationHandler(StepHandler):
    kind = "location"
    expected = "location"

    def question(self, step, ctx):
        return {}, [Action("action.location", {}, button(ctx, step, "location"), kind="location")]

    def _check(self, data) -> Invalid | None:
        if not isinstance(data, dict):
            return Invalid("error.bad_location", {})
        if not _finite_in(data.get("latitude"), 90) or not _finite_in(data.get("longitude"), 180):
            return Invalid("error.bad_location", {})
        if not isinstance(data.get("address", ""), str) or not isinstance(data.get("title", ""), str):
            return Invalid("error.bad_location", {})
        return None

    def on_location(self, step, event, ctx):
        error = self._check(event.data)
        if error:
            return error
        data = event.data
        return Answered(
            {
                "latitude": data["latitude"],
                "longitude": data["longitude"],
                "address": (data.get("address") or "")[:500],
                "title": (data.get("title") or "")[:200],
            }
        )

    def validate(self, step, value, today):
        if not isinstance(value, dict) or set(value) != {"latitude", "longitude", "address", "title"}:
            return Invalid("error.bad_location", {})
        return self._check(value)

    def display(self, step, value):
        return dict(value) if isinstance(value, dict) else {}


# --------------------------------------------------------------------------
# Flow steps: `enter` returns True when the flow continues with the next step.
# --------------------------------------------------------------------------


class FlowHandler(StepHandler):
    is_input = False

    def enter(self, flow, step: Step) -> bool:
        raise NotImplementedError


class MessageHandler(FlowHandler):
    kind = "message"

    def enter(self, flow, step):
        flow.say("step.message", {"label": step.label, "help": step.help_text})
        return True


class ConfirmationHandler(FlowHandler):
    kind = "confirmation"

    def enter(self, flow, step):
        flow.show_confirmation(step)
        return False


class CompletionHandler(FlowHandler):
    kind = "completion"

    def enter(self, flow, step):
        flow.complete(step)
        return False


class ExitHandler(FlowHandler):
    kind = "exit"

    def enter(self, flow, step):
        flow.exit(step)
        return False


HANDLERS: dict[str, StepHandler] = {
    handler.kind: handler
    for handler in (
        ShortTextHandler(),
        LongTextHandler(),
        NumberHandler(),
        DateHandler(),
        SingleChoiceHandler(),
        MultipleChoiceHandler(),
        YesNoHandler(),
        ImageHandler(),
        LocationHandler(),
        MessageHandler(),
        ConfirmationHandler(),
        CompletionHandler(),
        ExitHandler(),
    )
}
assert set(HANDLERS) == set(STEP_KINDS), "every step kind of the spec needs a handler"


def get_handler(kind: str) -> StepHandler:
    try:
        return HANDLERS[kind]
    except (KeyError, TypeError):
        raise UnknownStepKind(f"unknown step kind {kind!r}; known kinds: {', '.join(HANDLERS)}") from None
