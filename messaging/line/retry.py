"""When to call LINE again after a call that did not go through (shared by every sender).

Worth another try: no answer (time-out, network), 429 for a rate limit, and 5xx. A sender retries
with the same X-Line-Retry-Key, so a call LINE did act on is answered 409 instead of being delivered
twice. Any other 4xx is LINE refusing the request itself: trying again would not help. Neither would
the 429 for the channel's monthly message limit, which holds until next month or a plan change:
retried, it would hold the resident's later messages (replies too, which the limit does not count)
behind it for the whole back-off, until their reply tokens expired.
"""

from __future__ import annotations

import random
from datetime import timedelta

from messaging.line.client import SendResult

BACKOFF_MAX_SECONDS = 600


MONTHLY_LIMIT_HINT = (
    "LINE の今月の送信上限に達したため送れませんでした。翌月になるか、料金プランの上限を変えてから再送してください"
)


def monthly_limit_reached(result: SendResult) -> bool:
    """LINE's answer once the channel has used up this month's messages (a 429 like a rate limit's,
    told apart by its message: "You have reached your monthly limit.")."""
    return result.status == 429 and "monthly limit" in result.error.lower()


def retryable(result: SendResult) -> bool:
    if monthly_limit_reached(result):
        return False
    return result.status is None or result.status == 429 or result.status >= 500


def describe(result: SendResult) -> str:
    """What LINE answered, as the row's last error (staff read it)."""
    answer = f"{result.status or 'no answer'}: {result.error}"
    return f"{MONTHLY_LIMIT_HINT}（{answer}）" if monthly_limit_reached(result) else answer


def backoff(attempts: int, base_seconds: float) -> timedelta:
    """Exponential back-off with jitter: about base, 2 × base, 4 × base … up to BACKOFF_MAX_SECONDS."""
    delay = min(BACKOFF_MAX_SECONDS, base_seconds * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=delay * random.uniform(0.5, 1.5))


def delay(attempts: int, result: SendResult | None) -> timedelta:
    """How long to wait before attempt `attempts` + 1: LINE's Retry-After when it sent one, else a back-off."""
    if result is not None and result.retry_after is not None:
        return timedelta(seconds=min(result.retry_after, BACKOFF_MAX_SECONDS))
    return backoff(attempts, 10 if result is not None and result.status == 429 else 5)
