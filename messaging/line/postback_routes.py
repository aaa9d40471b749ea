"""Postbacks that are not buttons of the conversation: other apps register a handler for them.

Engine buttons carry `1.<signature>.<payload>` (messaging/line/postback.py). Other features put
their own signed data behind a prefix of their own, e.g. `rm.` for rich-menu tiles; the app
registers its handler in its AppConfig.ready(), so this channel never imports those apps.

A handler checks its own signature and answers either with an engine Event (the conversation goes
on as if the resident had typed or tapped it) or with texts to reply, never both.

Some features build their buttons as engine-signed commands instead (a campaign's yes/no question
is an engine Message): `register_command` names the command, and its handler answers with the
engine Messages to send, outside any conversation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from procedures.engine.types import Event

PREFIX_SEPARATOR = "."


@dataclass(frozen=True)
class PostbackOutcome:
    event: Event | None = None
    texts: tuple[str, ...] = field(default_factory=tuple)


# handler(data=..., params=..., line_user_id=..., resident=..., now=...) -> PostbackOutcome
Handler = Callable[..., PostbackOutcome]
_HANDLERS: dict[str, Handler] = {}


def register(prefix: str, handler: Handler) -> None:
    if not prefix.isalpha() or prefix in _HANDLERS and _HANDLERS[prefix] is not handler:
        raise ValueError(f"postback prefix {prefix!r} is not a free alphabetic prefix")
    _HANDLERS[prefix] = handler


def prefix_of(data: Any) -> str | None:
    """The registered prefix `data` starts with, or None (then it is an engine button or foreign)."""
    if not isinstance(data, str):
        return None
    prefix, separator, _rest = data.partition(PREFIX_SEPARATOR)
    return prefix if separator and prefix in _HANDLERS else None


def handle(*, data: str, params: dict | None, line_user_id: str, resident, now: datetime) -> PostbackOutcome:
    prefix = prefix_of(data)
    if prefix is None:
        raise ValueError("no handler for this postback")
    return _HANDLERS[prefix](data=data, params=params or {}, line_user_id=line_user_id, resident=resident, now=now)


# handler(event=..., line_user_id=...) -> the engine Messages to reply
CommandHandler = Callable[..., Any]
_COMMANDS: dict[str, CommandHandler] = {}


def register_command(name: str, handler: CommandHandler) -> None:
    if name in _COMMANDS and _COMMANDS[name] is not handler:
        raise ValueError(f"postback command {name!r} already has a handler")
    _COMMANDS[name] = handler


def command_handler(event: Event | None) -> CommandHandler | None:
    if event is None or event.type != "command":
        return None
    return _COMMANDS.get(event.name)
