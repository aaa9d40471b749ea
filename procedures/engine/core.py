"""The conversation engine: `step(catalog, state, event, now) -> Result`.

Deterministic and free of I/O: everything it needs comes in as arguments, and
everything it wants done goes out as messages (codes + params) and effects.

State (JSON-serialisable):
    {"schema_version": 1,
     "session": None | {
         "id", "procedure_id", "version_id", "started_at", "updated_at",
         "answers": {key: value},
         "history": [input-step keys passed (answered or skipped), in step order],
         "current": key of the step being asked (an input step or a confirmation),
         "mode": "asking" | "editing" | "confirm_cancel" | "confirm_switch",
         "resume_mode": mode to return to after a confirm_* question,
         "pending_procedure": procedure id waiting for confirm_switch,
         "page": choice page, "selection": multiple-choice selection in progress,
         "correction": None | {"id", "token", "receipt_number", "keys", "original"}},
     "last_submission": None | {"session", "procedure_id", "version_id", "submitted_at"}}

"editing" means the resident came from a confirmation: after each answer the
flow resumes from the top, asking only applicable steps not yet passed, and so
returns to the confirmation.

A correction session (started by a CORRECTION_EVENT) is an editing session on an
existing application: it starts with the application's answers, every applicable
step passed except the `keys` staff marked, so the editing walk asks exactly those
plus any step a changed answer makes applicable (answers of steps that stop applying
are dropped), shows the confirmation and ends with a Resubmit effect. Only the marked
steps and steps without an original answer can be changed from the confirmation.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone

from procedures.engine import validators
from procedures.engine.computed import compute
from procedures.engine.conditions import evaluate, prune
from procedures.engine.handlers import (
    NO_WORDS,
    YES_WORDS,
    Answered,
    AskContext,
    Invalid,
    Pending,
    Skipped,
    command,
    get_handler,
)
from procedures.engine.types import (
    CORRECTION_EVENT,
    STATE_SCHEMA_VERSION,
    Action,
    Catalog,
    Event,
    Message,
    Resubmit,
    Result,
    Submit,
    SummaryRow,
)
from procedures.spec import ProcedureSpec, Step

try:
    from zoneinfo import ZoneInfo

    TOKYO = ZoneInfo("Asia/Tokyo")
except Exception:  # no tz database: Japan has had no daylight saving since 1951
    TOKYO = timezone(timedelta(hours=9), "JST")

MODES = ("asking", "editing", "confirm_cancel", "confirm_switch")
CONFIRM_MODES = ("confirm_cancel", "confirm_switch")

# Words a resident may type instead of tapping a navigation button (compared after NFKC + lower()).
BACK_WORDS = frozenset({"戻る", "もどる", "戻", "前の質問", "back"})
CANCEL_WORDS = frozenset({"やめる", "止める", "辞める", "キャンセル", "中止", "cancel"})
SKIP_WORDS = frozenset({"スキップ", "とばす", "飛ばす", "skip"})
KEEP_WORDS = frozenset({"変更しない", "そのまま"})
SUBMIT_WORDS = frozenset({"送信", "送信する", "申し込む", "申込む", "この内容で申し込む"})

MASK = "●●●●"
# Set in the state after an internal error; any successful step builds a state without it.
INTERNAL_ERROR_MARK = "internal_error"

# Every message code the engine emits (procedures/texts.py renders each one).
MESSAGE_CODES = (
    "menu",
    "menu.empty",
    "procedure.started",
    "procedure.not_open",
    "procedure.closed",
    "procedure.completed",
    "procedure.exited",
    "procedure.ended",
    "procedure.already_submitted",
    "step.message",
    "question",
    "summary",
    "confirmation.use_buttons",
    "session.expired",
    "session.reset",
    "session.confirm_cancel",
    "session.cancelled",
    "session.confirm_switch",
    "session.already_in_progress",
    "button.stale",
    "nav.cannot_go_back",
    "nav.cannot_skip",
    "nav.nothing_to_keep",
    "error.internal",
    "error.empty",
    "error.too_long",
    "error.not_a_number",
    "error.not_an_integer",
    "error.out_of_range",
    "error.bad_format",
    "error.not_a_date",
    "error.date_not_allowed",
    "error.unknown_choice",
    "error.too_few_selected",
    "error.too_many_selected",
    "error.wrong_input_type",
    "error.image_type",
    "error.image_too_large",
    "error.bad_image",
    "error.bad_location",
    "correction.started",
    "correction.completed",
    "correction.unavailable",
    "correction.in_progress",
    "correction.finish_current_first",
)

ACTION_CODES = (
    "action.start",
    "action.choice",
    "action.toggle",
    "action.done",
    "action.page_prev",
    "action.page_next",
    "action.yes",
    "action.no",
    "action.date_picker",
    "action.camera",
    "action.camera_roll",
    "action.location",
    "action.skip",
    "action.keep",
    "action.back",
    "action.cancel",
    "action.edit",
    "action.submit",
    "action.confirm_cancel",
    "action.keep_going",
    "action.switch",
    "action.stay",
    "action.resubmit",
)


def empty_state(last_submission: dict | None = None) -> dict:
    return {"schema_version": STATE_SCHEMA_VERSION, "session": None, "last_submission": last_submission}


def step(catalog: Catalog, state: dict | None, event: Event, now: datetime) -> Result:
    """Handle one resident event. Never raises; always returns at least one message."""
    try:
        return _Turn(catalog, now).run(state, event)
    except Exception:
        # Last resort so a resident never gets silence; the property tests assert it never happens.
        return Result(state=_state_after_internal_error(state), messages=(Message("error.internal"),))


def _state_after_internal_error(state) -> dict:
    """Keep the resident's progress after a first internal error; reset only if it happens again.

    A second failure in a row suggests the state itself is what breaks the engine, and
    keeping it would answer every later message with the same error until expiry.
    """
    loaded, reset = _load_state(state)
    if reset or (isinstance(state, dict) and state.get(INTERNAL_ERROR_MARK)):
        return empty_state(_load_last_submission(state))
    return {**loaded, INTERNAL_ERROR_MARK: True}


# --------------------------------------------------------------------------
# Loading and checking input
# --------------------------------------------------------------------------


def _aware(now) -> datetime:
    if not isinstance(now, datetime):
        raise TypeError("now must be a datetime")
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def _parse_time(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(value) -> int | None:
    if _is_int(value):
        return value
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        return int(value.strip())
    return None


def _load_last_submission(state) -> dict | None:
    if not isinstance(state, dict):
        return None
    last = state.get("last_submission")
    if isinstance(last, dict) and isinstance(last.get("session"), str):
        try:
            return json.loads(json.dumps(last))
        except (TypeError, ValueError):
            return None
    return None


_SESSION_FIELDS = {
    "id": str,
    "procedure_id": int,
    "version_id": int,
    "started_at": str,
    "updated_at": str,
    "answers": dict,
    "history": list,
    "current": str,
    "mode": str,
    "page": int,
}


def _session_is_sound(session) -> bool:
    if not isinstance(session, dict):
        return False
    for name, kind in _SESSION_FIELDS.items():
        value = session.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            return False
    if session["mode"] not in MODES or _parse_time(session["updated_at"]) is None:
        return False
    if not all(isinstance(key, str) for key in session["history"]):
        return False
    selection = session.get("selection")
    if selection is not None and not (isinstance(selection, list) and all(isinstance(v, str) for v in selection)):
        return False
    if session.get("resume_mode") not in (None, "asking", "editing"):
        return False
    pending = session.get("pending_procedure")
    if not (pending is None or _is_int(pending)):
        return False
    return session.get("correction") is None or _correction_is_sound(session["correction"])


def _correction_is_sound(correction) -> bool:
    return (
        isinstance(correction, dict)
        and _is_int(correction.get("id"))
        and isinstance(correction.get("token"), str)
        and isinstance(correction.get("receipt_number"), str)
        and isinstance(correction.get("original"), dict)
        and isinstance(correction.get("keys"), list)
        and all(isinstance(key, str) for key in correction["keys"])
    )


def _load_state(state) -> tuple[dict, bool]:
    """A private, JSON-clean copy of the state, and whether it had to be reset."""
    if state is None or state == {}:
        return empty_state(), False
    if not isinstance(state, dict) or state.get("schema_version") != STATE_SCHEMA_VERSION:
        return empty_state(_load_last_submission(state)), True
    try:
        loaded = json.loads(json.dumps(state, allow_nan=False))
    except (TypeError, ValueError):
        return empty_state(_load_last_submission(state)), True
    session = loaded.get("session")
    result = empty_state(_load_last_submission(loaded))
    if session is None:
        return result, False
    if not _session_is_sound(session):
        return result, True
    result["session"] = session
    return result, False


def _sanitize_event(event) -> Event:
    if not isinstance(event, Event):
        return Event(type="unknown")

    def text(value):
        return value if isinstance(value, str) else ""

    return Event(
        type=text(event.type),
        text=text(event.text),
        value=copy.deepcopy(event.value),
        step=text(event.step),
        name=text(event.name),
        data=copy.deepcopy(event.data) if isinstance(event.data, dict) else {},
        session=text(event.session),
    )


# --------------------------------------------------------------------------
# One turn of the conversation
# --------------------------------------------------------------------------


class _Turn:
    def __init__(self, catalog: Catalog, now: datetime):
        self.catalog = catalog
        self.now = _aware(now)
        self.today = self.now.astimezone(TOKYO).date()
        self.messages: list[Message] = []
        self.effects: list = []
        self.state: dict = empty_state()
        self.spec: ProcedureSpec | None = None

    # -- plumbing --------------------------------------------------------
    @property
    def session(self) -> dict | None:
        return self.state["session"]

    def say(self, code: str, params: dict | None = None, **fields) -> None:
        self.messages.append(Message(code, params or {}, **fields))

    def run(self, state, event) -> Result:
        event = _sanitize_event(event)
        self.state, reset = _load_state(state)
        if reset:
            self.say("session.reset")
        dropped = reset
        if self.session is not None:
            dropped = self._drop_if_over() or dropped
        if self.session is not None:
            self.session["updated_at"] = self.now.isoformat()
            self._in_session(event)
        else:
            self._no_session(event, dropped)
        if not self.messages:  # defensive: every path above speaks
            self.say("button.stale")
        return Result(state=self.state, messages=tuple(self.messages), effects=tuple(self.effects))

    def _end_session(self) -> None:
        self.state["session"] = None
        self.spec = None

    def _drop_if_over(self) -> bool:
        """End a session that expired, was unpublished, or no longer fits its spec."""
        session = self.session
        spec = self.catalog.versions.get(session["version_id"])
        name = spec.name if spec else ""
        updated = _parse_time(session["updated_at"])
        if self.now - updated > self.catalog.idle_timeout:
            self._end_session()
            self.say("session.expired", {"name": name})
            return True
        if session["procedure_id"] not in self.catalog.current or spec is None:
            self._end_session()
            self.say("procedure.closed", {"name": name})
            return True
        keys = {step.key for step in spec.steps}
        current = next((step for step in spec.steps if step.key == session["current"]), None)
        if (
            current is None
            or not (current.is_input or current.kind == "confirmation")
            or not set(session["answers"]) <= keys
            or not set(session["history"]) <= keys
        ):
            self._end_session()
            self.say("session.reset")
            return True
        self.spec = spec
        return False

    # -- without a session ---------------------------------------------
    def _no_session(self, event: Event, dropped: bool) -> None:
        if event.type == CORRECTION_EVENT:
            self._start_correction(event.data)
            return
        if event.type == "start":
            self._start_by_id(event.value)
            return
        if event.type == "text":
            pid = self._keyword_procedure(event.text)
            if pid is not None:
                self._start(pid)
                return
        if event.type == "command" and event.name == "submit":
            last = self.state["last_submission"]
            if last and (not event.session or event.session == last.get("session")):
                self.say("procedure.already_submitted")
                return
        if event.type in ("choice", "command", "date") and not dropped:
            self.say("button.stale")
        self._menu()

    def _menu(self) -> None:
        actions = []
        names = []
        for pid in sorted(self.catalog.current):
            spec = self.catalog.current_spec(pid)
            if spec is None:
                continue
            names.append(spec.name)
            actions.append(Action("action.start", {"label": spec.name}, Event(type="start", value=pid)))
        if not actions:
            self.say("menu.empty")
            return
        self.say("menu", {"procedures": names}, layout="question", actions=tuple(actions))

    def _keyword_procedure(self, text: str) -> int | None:
        spec = self.catalog.match_keyword(text) if text.strip() else None
        if spec is None:
            return None
        for pid in sorted(self.catalog.current):
            if self.catalog.current_spec(pid) is spec:
                return pid
        return None

    def _start_by_id(self, value) -> None:
        pid = _as_int(value)
        if pid is None or self.catalog.current_spec(pid) is None:
            self.say("procedure.not_open")
            self._menu()
            return
        self._start(pid)

    def _start(self, pid: int) -> None:
        version_id = self.catalog.current[pid]
        spec = self.catalog.versions[version_id]
        previous = self.session["id"] if self.session else None
        last = (self.state["last_submission"] or {}).get("session")
        base = f"{pid}-{version_id}-{int(self.now.timestamp() * 1000)}"
        session_id, suffix = base, 1
        while session_id in (previous, last):  # two starts within one millisecond
            session_id, suffix = f"{base}.{suffix}", suffix + 1
        now = self.now.isoformat()
        self.state["session"] = {
            "id": session_id,
            "procedure_id": pid,
            "version_id": version_id,
            "started_at": now,
            "updated_at": now,
            "answers": {},
            "history": [],
            "current": "",
            "mode": "asking",
            "resume_mode": None,
            "pending_procedure": None,
            "page": 0,
            "selection": None,
        }
        self.spec = spec
        self.say("procedure.started", {"name": spec.name, "description": spec.description})
        self._advance(0)

    def _start_correction(self, data: dict) -> None:
        """Open a correction session on an existing application's answers (see the module docstring)."""
        correction_id, version_id = data.get("correction_id"), data.get("version_id")
        procedure_id, answers = data.get("procedure_id"), data.get("answers")
        spec = self.catalog.versions.get(version_id) if _is_int(version_id) else None
        if (
            spec is None
            or not _is_int(correction_id)
            or procedure_id != spec.procedure_id
            or procedure_id not in self.catalog.current
            or not isinstance(answers, dict)
            or not isinstance(data.get("token"), str)
        ):
            self.say("correction.unavailable")
            return
        inputs = {step.key: step for step in spec.steps if step.is_input}
        keys = [key for key in data.get("keys") or () if isinstance(key, str) and key in inputs]
        if not keys:
            self.say("correction.unavailable")
            return
        answers = {key: value for key, value in answers.items() if key in inputs}
        receipt_number = str(data.get("receipt_number") or "")
        now = self.now.isoformat()
        self.spec = spec
        self.state["session"] = {
            "id": f"c{correction_id}-{int(self.now.timestamp() * 1000)}",
            "procedure_id": procedure_id,
            "version_id": version_id,
            "started_at": now,
            "updated_at": now,
            "answers": answers,
            "history": [key for key, step in inputs.items() if key not in keys and evaluate(step.condition, answers)],
            "current": "",
            "mode": "editing",
            "resume_mode": None,
            "pending_procedure": None,
            "page": 0,
            "selection": None,
            "correction": {
                "id": correction_id,
                "token": data["token"],
                "receipt_number": receipt_number,
                "keys": keys,
                "original": copy.deepcopy(answers),
            },
        }
        self.say(
            "correction.started",
            {"name": spec.name, "receipt_number": receipt_number, "labels": [inputs[key].label for key in keys]},
        )
        self._resume()

    def _correctable(self, key: str) -> bool:
        """Outside a correction every step; in one, the marked steps and those without an original answer."""
        correction = self.session.get("correction")
        return correction is None or key in correction["keys"] or key not in correction["original"]

    # -- with a session ------------------------------------------------
    def _in_session(self, event: Event) -> None:
        session = self.session
        if event.type == CORRECTION_EVENT:
            # A second tap on a correction button while something is already being entered.
            same = (session.get("correction") or {}).get("id") == event.data.get("correction_id")
            code = "correction.in_progress" if same else "correction.finish_current_first"
            self.say(code, {"name": self.spec.name})
            self._ask_current()
            return
        if event.type == "command" and event.name == "submit" and event.session and event.session != session["id"]:
            if event.session == (self.state["last_submission"] or {}).get("session"):
                self.say("procedure.already_submitted")
                self._ask_current()
                return
        if self._wants_other_procedure(event):
            return
        if session["mode"] == "confirm_cancel":
            self._on_confirm_cancel(event)
            return
        if session["mode"] == "confirm_switch":
            self._on_confirm_switch(event)
            return
        if event.type in ("choice", "command", "date") and self._is_stale(event):
            self.say("button.stale")
            self._ask_current()
            return
        current = self._current_step()
        if event.type == "text":
            typed = validators.normalize_typed(event.text)
            word_command = self._typed_command(typed, current)
            if word_command:
                event = Event(type="command", name=word_command)
        if event.type == "command" and self._on_command(event, current):
            return
        if current.kind == "confirmation":
            self.say("confirmation.use_buttons")
            self._ask_current()
            return
        self._on_answer(current, event)

    def _typed_command(self, typed: str, current: Step) -> str | None:
        if typed in BACK_WORDS:
            return "back"
        if typed in CANCEL_WORDS:
            return "cancel"
        if current.kind == "confirmation":
            return "submit" if typed in SUBMIT_WORDS else None
        if typed in SKIP_WORDS and not current.required:
            return "skip"
        if typed in KEEP_WORDS and current.key in self.session["answers"]:
            return "keep"
        return None

    def _is_stale(self, event: Event) -> bool:
        session = self.session
        return bool(
            (event.session and event.session != session["id"]) or (event.step and event.step != session["current"])
        )

    def _wants_other_procedure(self, event: Event) -> bool:
        """A keyword or start button for a procedure while one is running: ask before switching."""
        session = self.session
        if event.type == "start":
            pid = _as_int(event.value)
            if pid == session["procedure_id"]:
                self.say("session.already_in_progress", {"name": self.spec.name})
                self._ask_current()
                return True
            if pid is None or self.catalog.current_spec(pid) is None:
                self.say("procedure.not_open")
                self._ask_current()
                return True
        elif event.type == "text":
            pid = self._keyword_procedure(event.text)
            if pid is None or pid == session["procedure_id"]:
                return False  # the same procedure's keyword may well be an answer
        else:
            return False
        if session["mode"] not in CONFIRM_MODES:
            session["resume_mode"] = session["mode"]
        session["mode"] = "confirm_switch"
        session["pending_procedure"] = pid
        self._ask_current()
        return True

    def _resume_mode(self) -> None:
        session = self.session
        session["mode"] = session.get("resume_mode") or "asking"
        session["resume_mode"] = None
        session["pending_procedure"] = None

    def _confirm_answer(self, event: Event, yes_command: str, no_command: str) -> bool | None:
        if event.type == "command" and not self._is_stale(event):
            if event.name == yes_command:
                return True
            if event.name == no_command:
                return False
        if event.type == "text":
            typed = validators.normalize_typed(event.text)
            if typed in YES_WORDS:
                return True
            if typed in NO_WORDS:
                return False
        return None

    def _on_confirm_cancel(self, event: Event) -> None:
        answer = self._confirm_answer(event, "confirm_cancel", "keep_going")
        if answer is None:
            self._ask_current()
        elif answer:
            name = self.spec.name
            self._end_session()
            self.say("session.cancelled", {"name": name})
        else:
            self._resume_mode()
            self._ask_current()

    def _on_confirm_switch(self, event: Event) -> None:
        answer = self._confirm_answer(event, "switch", "stay")
        if answer is None:
            self._ask_current()
            return
        pid = self.session.get("pending_procedure")
        if answer and pid is not None and self.catalog.current_spec(pid) is not None:
            self._start(pid)
            return
        if answer:
            self.say("procedure.not_open")
        self._resume_mode()
        self._ask_current()

    def _on_command(self, event: Event, current: Step) -> bool:
        """Navigation commands; False passes the event on to the step handler (page, done)."""
        name = event.name
        session = self.session
        if name == "back":
            self._back()
        elif name == "cancel":
            session["resume_mode"] = session["mode"]
            session["mode"] = "confirm_cancel"
            self._ask_current()
        elif name == "skip" and current.is_input:
            if current.required:
                self.say("nav.cannot_skip")
                self._ask_current()
            else:
                self._store(current, None)
        elif name == "keep" and current.is_input:
            if current.key in session["answers"]:
                self._store(current, session["answers"][current.key])
            else:
                self.say("nav.nothing_to_keep")
                self._ask_current()
        elif name == "edit" and current.kind == "confirmation":
            self._edit(event.value, current)
        elif name == "submit" and current.kind == "confirmation":
            session["mode"] = "asking"
            self._advance(self._index(current.key) + 1)
        elif name in ("page", "done") and current.is_input:
            return False
        else:
            self.say("button.stale")
            self._ask_current()
        return True

    def _on_answer(self, current: Step, event: Event) -> None:
        session = self.session
        outcome = get_handler(current.kind).accept(current, event, self._ask_context(current))
        if isinstance(outcome, Answered):
            self._store(current, outcome.value)
        elif isinstance(outcome, Skipped):
            self._store(current, None)
        elif isinstance(outcome, Pending):
            if outcome.page is not None:
                session["page"] = outcome.page
            if outcome.selection is not None:
                session["selection"] = list(outcome.selection)
            self._ask_current()
        else:
            assert isinstance(outcome, Invalid)
            self.say(outcome.code, outcome.params)
            self._ask_current()

    # -- moving through the steps ---------------------------------------
    def _index(self, key: str) -> int:
        return self.spec.step_index(key)

    def _current_step(self) -> Step:
        return self.spec.get_step(self.session["current"])

    def _applies(self, step: Step) -> bool:
        return evaluate(step.condition, self.session["answers"])

    def _mark_passed(self, key: str) -> None:
        history = set(self.session["history"]) | {key}
        self.session["history"] = [step.key for step in self.spec.steps if step.key in history]

    def _store(self, step: Step, value) -> None:
        """Record an answer (None: skipped), clear answers that no longer apply, move on."""
        session = self.session
        answers = dict(session["answers"])
        if value is None:
            answers.pop(step.key, None)
        else:
            answers[step.key] = value
        answers, removed = prune(self.spec, answers)
        session["answers"] = answers
        session["history"] = [key for key in session["history"] if key not in removed]
        self._mark_passed(step.key)
        if session["mode"] == "editing":
            self._resume()
        else:
            self._advance(self._index(step.key) + 1)

    def _ask_step(self, step: Step, mode: str) -> None:
        session = self.session
        session["current"] = step.key
        session["mode"] = mode
        session["page"] = 0
        answer = session["answers"].get(step.key)
        session["selection"] = list(answer) if step.kind == "multiple_choice" and isinstance(answer, list) else None
        if step.kind == "multiple_choice" and session["selection"] is None:
            session["selection"] = []
        self._ask_current()

    def _advance(self, start: int) -> None:
        """Walk forward from `start`: speak message steps, stop at the next thing to ask or do."""
        for step in self.spec.steps[start:]:
            if not self._applies(step):
                continue
            handler = get_handler(step.kind)
            if handler.is_input:
                self._ask_step(step, "asking")
                return
            if not handler.enter(self, step):
                return
        self._fall_off_end()

    def _first_missing(self, before: int) -> Step | None:
        """An applicable input step before `before` that was never passed or lacks a required answer."""
        session = self.session
        for step in self.spec.steps[:before]:
            if step.is_input and self._applies(step):
                if step.key not in session["history"] or (step.required and step.key not in session["answers"]):
                    return step
        return None

    def _resume(self) -> None:
        """After an edit: ask newly applicable steps, then go back to the confirmation (or an exit)."""
        session = self.session
        for step in self.spec.steps:
            if not self._applies(step) or step.kind == "message":
                continue
            if step.is_input:
                if step.key not in session["history"] or (step.required and step.key not in session["answers"]):
                    self._ask_step(step, "editing")
                    return
                continue
            get_handler(step.kind).enter(self, step)
            return
        self._fall_off_end()

    def _fall_off_end(self) -> None:
        name = self.spec.name
        self._end_session()
        self.say("procedure.ended", {"name": name})

    def _back_target(self) -> Step | None:
        session = self.session
        current_index = self._index(session["current"])
        for key in reversed(session["history"]):
            step = self.spec.get_step(key)
            if self._index(key) < current_index and step.is_input and self._applies(step) and self._correctable(key):
                return step
        return None

    def _back(self) -> None:
        session = self.session
        target = self._back_target()
        if target is None:
            self.say("nav.cannot_go_back")
            self._ask_current()
            return
        if session["mode"] != "editing":
            # Going back in the normal flow re-walks the later steps (their answers stay as current values).
            target_index = self._index(target.key)
            session["history"] = [key for key in session["history"] if self._index(key) < target_index]
        self._ask_step(target, session["mode"])

    def _edit(self, key, confirmation: Step) -> None:
        confirmation_index = self._index(confirmation.key)
        step = next((s for s in self.spec.steps[:confirmation_index] if s.key == key), None)
        if step is None or not step.is_input or not self._applies(step) or not self._correctable(step.key):
            self.say("button.stale")
            self._ask_current()
            return
        self._ask_step(step, "editing")

    # -- flow steps (called by the flow handlers) ------------------------
    def show_confirmation(self, step: Step) -> None:
        missing = self._first_missing(self._index(step.key))
        if missing is not None:
            self._ask_step(missing, "editing")
            return
        session = self.session
        session["current"] = step.key
        session["mode"] = "asking"
        session["page"] = 0
        session["selection"] = None
        self._ask_current()

    def complete(self, step: Step) -> None:
        session = self.session
        index = self._index(step.key)
        missing = self._first_missing(index)
        if missing is not None:
            self._ask_step(missing, "editing")
            return
        answers = {}
        for input_step in self.spec.steps[:index]:
            if not input_step.is_input or input_step.key not in session["answers"] or not self._applies(input_step):
                continue
            value = session["answers"][input_step.key]
            problem = get_handler(input_step.kind).validate(input_step, value, self.today)
            if problem is not None:
                # e.g. a date that was fine yesterday but is too early today
                self.say(problem.code, problem.params)
                self._ask_step(input_step, "editing")
                return
            answers[input_step.key] = value
        computed = compute(self.spec, answers)
        if session.get("correction") is not None:
            self._resubmit(answers, computed)
            return
        self.effects.append(
            Submit(
                procedure_id=session["procedure_id"],
                version_id=session["version_id"],
                submission_key=session["id"],
                answers=copy.deepcopy(answers),
                computed=computed,
            )
        )
        self.say(
            "procedure.completed",
            {
                "name": self.spec.name,
                "label": step.label,
                "help": step.help_text,
                "receipt_prefix": self.spec.receipt_prefix,
                "receipt_number": None,  # filled in by the caller once the application exists
                "computed": self._computed_rows(computed),
            },
        )
        self._end_submitted()

    def _end_submitted(self) -> None:
        """End the session, remembering it so that a second tap on its last button is recognised."""
        session = self.session
        self.state["last_submission"] = {
            "session": session["id"],
            "procedure_id": session["procedure_id"],
            "version_id": session["version_id"],
            "submitted_at": self.now.isoformat(),
        }
        self._end_session()

    def _resubmit(self, answers: dict, computed: dict) -> None:
        session = self.session
        correction = session["correction"]
        self.effects.append(
            Resubmit(
                correction_id=correction["id"],
                token=correction["token"],
                procedure_id=session["procedure_id"],
                version_id=session["version_id"],
                submission_key=session["id"],
                answers=copy.deepcopy(answers),
                computed=computed,
            )
        )
        self.say("correction.completed", {"name": self.spec.name, "receipt_number": correction["receipt_number"]})
        self._end_submitted()

    def exit(self, step: Step) -> None:
        self.say("procedure.exited", {"name": self.spec.name, "label": step.label, "help": step.help_text})
        self._end_session()

    # -- building messages ---------------------------------------------
    def _ask_context(self, step: Step) -> AskContext:
        session = self.session
        return AskContext(
            session_id=session["id"],
            today=self.today,
            answer=session["answers"].get(step.key),
            answered=step.key in session["answers"],
            page=session["page"],
            selection=tuple(session.get("selection") or ()),
        )

    def _nav(self, step: Step, name: str, code: str) -> Action:
        return Action(code, {}, command(self._ask_context(step), step, name))

    def _ask_current(self) -> None:
        session = self.session
        step = self._current_step()
        if session["mode"] == "confirm_cancel":
            self.say(
                "session.confirm_cancel",
                {"name": self.spec.name},
                layout="confirm",
                actions=(
                    self._nav(step, "confirm_cancel", "action.confirm_cancel"),
                    self._nav(step, "keep_going", "action.keep_going"),
                ),
            )
            return
        if session["mode"] == "confirm_switch":
            pending = self.catalog.current_spec(session.get("pending_procedure"))
            self.say(
                "session.confirm_switch",
                {"current": self.spec.name, "next": pending.name if pending else ""},
                layout="confirm",
                actions=(self._nav(step, "switch", "action.switch"), self._nav(step, "stay", "action.stay")),
            )
            return
        if step.kind == "confirmation":
            self._say_summary(step)
            return
        self._say_question(step)

    def _say_question(self, step: Step) -> None:
        session = self.session
        handler = get_handler(step.kind)
        context = self._ask_context(step)
        extra, actions = handler.question(step, context)
        params = {
            "label": step.label,
            "help": step.help_text,
            "kind": step.kind,
            "required": step.required,
            "has_current": context.answered,
            **extra,
        }
        if context.answered and not step.sensitive:
            params["current"] = handler.display(step, context.answer)
        if context.answered:
            actions.append(self._nav(step, "keep", "action.keep"))
        if not step.required:
            actions.append(self._nav(step, "skip", "action.skip"))
        if self._back_target() is not None:
            actions.append(self._nav(step, "back", "action.back"))
        actions.append(self._nav(step, "cancel", "action.cancel"))
        if session["mode"] == "editing":
            params["editing"] = True
        self.say("question", params, layout="question", actions=tuple(actions))

    def _computed_rows(self, computed: dict) -> list[dict]:
        return [
            {"key": item.key, "label": item.label, "value": computed.get(item.key, 0), "unit": item.unit}
            for item in self.spec.computed
        ]

    def _say_summary(self, step: Step) -> None:
        session = self.session
        answers = session["answers"]
        context = self._ask_context(step)
        rows = []
        for input_step in self.spec.steps[: self._index(step.key)]:
            if not input_step.is_input or not self._applies(input_step):
                continue
            answered = input_step.key in answers
            if answered and input_step.sensitive:
                value, masked = MASK, True
            elif answered:
                value, masked = get_handler(input_step.kind).display(input_step, answers[input_step.key]), False
            else:
                value, masked = None, False  # an optional step that was skipped
            rows.append(
                SummaryRow(
                    key=input_step.key,
                    label=input_step.label,
                    value=value,
                    kind=input_step.kind,
                    masked=masked,
                    edit=Action(
                        "action.edit",
                        {"label": input_step.label},
                        command(context, step, "edit", input_step.key),
                    )
                    if self._correctable(input_step.key)
                    else None,
                )
            )
        included = {key: value for key, value in answers.items() if self._applies(self.spec.get_step(key))}
        submit_code = "action.submit" if session.get("correction") is None else "action.resubmit"
        actions = [Action(submit_code, {}, command(context, step, "submit"))]
        if self._back_target() is not None:
            actions.append(self._nav(step, "back", "action.back"))
        actions.append(self._nav(step, "cancel", "action.cancel"))
        params = {
            "name": self.spec.name,
            "label": step.label,
            "help": step.help_text,
            "computed": self._computed_rows(compute(self.spec, included)),
        }
        self.say("summary", params, layout="summary", actions=tuple(actions), rows=tuple(rows))

