"""Personal notices to one resident, independent of the channel that carries them.

Procedures decide *that* a resident is told something (a status change); a channel
app decides *how* (messaging/ for LINE: rendered and written to its outbox in the
caller's transaction). Channels register a deliverer when Django starts, so this app
never imports them.
"""

from collections.abc import Callable

from procedures.engine.types import Message

# deliver(line_user_id, messages) -> True when the channel took the notice for this resident.
Deliverer = Callable[[str, tuple[Message, ...]], bool]

_deliverers: list[Deliverer] = []


def deliverer_register(deliver: Deliverer) -> None:
    if deliver not in _deliverers:
        _deliverers.append(deliver)


def notice_send(*, line_user_id: str, messages: tuple[Message, ...]) -> bool:
    """Hand the notice to the first channel that can reach this resident; False when none can."""
    return any(deliver(line_user_id, messages) for deliver in _deliverers)
