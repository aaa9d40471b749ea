"""The conversation engine: pure Python, deterministic, no Django and no I/O.

    result = step(catalog, state, event, now)

See core.py for the state layout and types.py for the data that goes in and out.
"""

from procedures.engine.core import ACTION_CODES, MESSAGE_CODES, empty_state, step
from procedures.engine.handlers import HANDLERS, UnknownStepKind, get_handler
from procedures.engine.types import (
    CORRECTION_EVENT,
    EVENT_TYPES,
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

__all__ = [
    "ACTION_CODES",
    "CORRECTION_EVENT",
    "EVENT_TYPES",
    "HANDLERS",
    "MESSAGE_CODES",
    "STATE_SCHEMA_VERSION",
    "Action",
    "Catalog",
    "Event",
    "Message",
    "Result",
    "Resubmit",
    "Submit",
    "SummaryRow",
    "UnknownStepKind",
    "empty_state",
    "get_handler",
    "step",
]
