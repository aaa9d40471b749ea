"""LINE's per-channel rate limits, shared by every sender process through Django's cache.

A fixed-window counter: the calls of one operation in one window are counted under the key
`line-rate:<operation>:<window number>`, with the cache's atomic `incr_or_create`
(govtech/cache.py), so on Redis every worker process draws on the same counters in one round trip.
With LocMem (the local demo, tests) the counters are per process: right for one process, too
generous for several (deployments set REDIS_URL).

A caller is never made to sleep: `acquire` answers at once with how long to wait, and the sender
puts the row back until then, so the worker stays free for other work.

Limits (settings.LINE_RATE_LIMITS, from the environment) are calls per window; the window is one
second, or one hour for broadcast and narrowcast (which LINE counts together) and for creating
and deleting rich menus.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache

REPLY = "reply"
PUSH = "push"
MULTICAST = "multicast"
BROADCAST = "broadcast"
NARROWCAST = "narrowcast"
PROFILE = "profile"  # getProfile (residents.line_services: display name and picture)
RICH_MENU_BULK = "rich_menu_bulk"  # link / unlink a rich menu for up to 500 users (broadcasts.richmenu.linking)
RICH_MENU_CREATE = "rich_menu_create"  # broadcasts.richmenu.deploy; LINE allows 100 an hour
RICH_MENU_DELETE = "rich_menu_delete"  # likewise, counted apart from creating

WINDOW_SECONDS = {
    REPLY: 1,
    PUSH: 1,
    MULTICAST: 1,
    BROADCAST: 3600,
    PROFILE: 1,
    RICH_MENU_BULK: 1,
    RICH_MENU_CREATE: 3600,
    RICH_MENU_DELETE: 3600,
}
_SAME_COUNTER = {NARROWCAST: BROADCAST}  # LINE's 60 an hour is for broadcast and narrowcast together


def acquire(operation: str, *, now: float | None = None) -> float:
    """Take one call of `operation` (reply, push, multicast, broadcast, narrowcast).

    0.0: the call may go now. Otherwise the window's calls are used up and the answer is the seconds
    until the next window; the caller must not call LINE, and asks again after that.
    `now` is a Unix timestamp (default: the current time).
    """
    counter = _SAME_COUNTER.get(operation, operation)
    limit = settings.LINE_RATE_LIMITS[counter]
    window_seconds = WINDOW_SECONDS[counter]
    now = time.time() if now is None else now
    window = math.floor(now / window_seconds)
    key = f"line-rate:{counter}:{window}"
    # The key lives a little longer than its window, so a late caller still finds it; after
    # that it expires by itself (a new window has a new key, nothing needs resetting).
    count = cache.incr_or_create(key, timeout=window_seconds + 1)
    if count <= limit:
        return 0.0
    wait = (window + 1) * window_seconds - now
    # Rounded up to the microsecond (what a datetime keeps), so `now + wait` is never a hair
    # before the next window and does not land in the full one again.
    return max(math.ceil(wait * 1_000_000) / 1_000_000, 0.000001)


def retry_at(operation: str, now: datetime) -> datetime | None:
    """`acquire` for callers that keep datetimes: None when the call may go now, else when to ask again."""
    wait = acquire(operation, now=now.timestamp())
    return now + timedelta(seconds=wait) if wait else None
