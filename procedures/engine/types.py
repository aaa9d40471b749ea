"""Plain data that goes in and out of the engine. No Django, no I/O.

Inputs are `Event`s that a channel (LINE, the simulator, a web form) builds
from what the resident did. Outputs are channel-neutral `Message`s made of
message codes and parameters; procedures/texts.py renders them in Japanese and
each channel lays them out (messaging/line/render.py for LINE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from procedures.spec import ProcedureSpec

STATE_SCHEMA_VERSION = 1

# Event types a channel may send.
EVENT_TYPES = (
    "text",  # text: what the resident typed
    "choice",  # step, value: a tapped choice button (value of a Choice, or "yes"/"no")
    "command",  # name (+ step, value): back, cancel, confirm_cancel, keep_going, edit, submit, done, skip, page, switch, stay
    "date",  # step, value: "YYYY-MM-DD" from a date picker (or typed)
    "image",  # step, data: {"ref": str, "content_type": str, "size": int}
    "location",  # step, data: {"latitude": float, "longitude": float, "address": str, "title": str}
    "sticker",  # nothing useful
    "start",  # value: procedure id (int) from a postback or a rich-menu action
)

# Not sent by a channel: procedures' services build it after checking a correction request
# (procedures/correspondence.py), so a browser or a postback can never forge its data:
#   data: {"correction_id": int, "token": str, "procedure_id": int, "version_id": int,
#          "receipt_number": str, "answers": {key: value}, "keys": [step keys to ask again]}
CORRECTION_EVENT = "correction"


@dataclass(frozen=True)
class Event:
    type: str
    text: str = ""
    value: Any = None
    step: str = ""  # the step a button belongs to, so a tap on an old button is recognised
    name: str = ""  # command name for type "command"
    data: dict = field(default_factory=dict)
    session: str = ""  # the session a button belongs to


@dataclass(frozen=True)
class Action:
    """A button or quick reply. `event` is what the channel sends back when it is tapped.

    kind: "postback" (send `event`), "date_picker" (send a date event; options min, max, initial),
    "location" (ask LINE for a location), "camera" / "camera_roll" (ask for an image).
    """

    code: str
    params: dict = field(default_factory=dict)
    event: Event | None = None
    kind: str = "postback"
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SummaryRow:
    key: str
    label: str
    value: Any  # display value; already masked for sensitive steps
    kind: str
    masked: bool = False
    edit: Action | None = None


@dataclass(frozen=True)
class Message:
    """One channel-neutral message.

    layout: "text" (plain), "question" (text with quick-reply `actions`),
    "buttons" (a card with at most a few `actions`), "confirm" (two actions, yes/no),
    "summary" (confirmation: `rows` plus `actions`).
    """

    code: str
    params: dict = field(default_factory=dict)
    layout: str = "text"
    actions: tuple[Action, ...] = ()
    rows: tuple[SummaryRow, ...] = ()


@dataclass(frozen=True)
class Submit:
    """Effect: create the application. `submission_key` makes a repeated final tap harmless."""

    procedure_id: int | None
    version_id: int | None
    submission_key: str
    answers: dict
    computed: dict


@dataclass(frozen=True)
class Resubmit:
    """Effect: the corrected answers of an existing application (a correction conversation ended).

    `token` is the correction request's own token, checked again by the service that applies it.
    """

    correction_id: int
    token: str
    procedure_id: int
    version_id: int
    submission_key: str
    answers: dict
    computed: dict


@dataclass(frozen=True)
class Result:
    state: dict
    messages: tuple[Message, ...]
    effects: tuple = ()


@dataclass(frozen=True)
class Catalog:
    """What the engine may start or continue: published specs, looked up by id or keyword.

    `versions` holds every spec a session may be pinned to (the current published
    version of each open procedure, plus the versions that running sessions
    started on); `current` maps an open procedure id to its current version id.
    A procedure missing from `current` is closed: sessions on it end politely.
    """

    versions: dict[int, ProcedureSpec]
    current: dict[int, int]
    idle_timeout: timedelta = timedelta(hours=24)

    def current_spec(self, procedure_id: int) -> ProcedureSpec | None:
        version_id = self.current.get(procedure_id)
        return self.versions.get(version_id) if version_id is not None else None

    def match_keyword(self, text: str) -> ProcedureSpec | None:
        normalized = text.strip()
        for procedure_id in sorted(self.current):
            spec = self.current_spec(procedure_id)
            if spec and normalized in spec.keywords:
                return spec
        return None

    def open_specs(self) -> list[ProcedureSpec]:
        return [spec for pid in sorted(self.current) if (spec := self.current_spec(pid))]
