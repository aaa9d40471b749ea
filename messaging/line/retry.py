"""When to call LINE again after a call that did not go through (shared by every sender).

Worth another try: no answer (time-out, network), 429 (rate limit or monthly limit) and 5xx. A sender
retries with the same X-Line-Retry-Key, so a call LINE did act on is answered 409 instead of being
delivered twice. Any other 4xx is LINE refusing the request itself: trying again would not help.
"""

from __future__ import annotations

import random
from datetime import timedelta

from messaging.line.client import SendResult

BACKOFF_MAX_SECONDS = 600


def retryable(result: SendResult) -> bool:
    return result.status is None or result.status == 429 or result.status >= 500


def backoff(attempts: int, base_seconds: float) -> timedelta:
    """Exponential back-off with jitter: about base, 2 × base, 4 × base … up to BACKOFF_MAX_SECONDS."""
    delay = min(BACKOFF_MAX_SECONDS, base_seconds * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=delay * random.uniform(0.5, 1.5))


def delay(attempts: int, result: SendResult | None) -> timedelta:
    """How long to wait before attempt `attempts` + 1: LINE's Retry-After when it sent one, else a back-off."""
    if result is not None and result.retry_after is not None:
        return timedelta(seconds=min(result.retry_after, BACKOFF_MAX_SECONDS))
    return backoff(attempts, 10 if result is not None and result.status == 429 else 5)
