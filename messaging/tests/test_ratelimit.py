"""LINE's rate limits: a fixed-window counter in the cache, and the sender putting rows back.

Time is frozen with time-machine (nothing sleeps). The counters of each test live under their own
cache key prefix, so nothing is cleared: on a shared Redis a FLUSHDB would wipe other users' data.
The cases that share counters between threads need Redis (and PostgreSQL for the sender's row
locks); they are skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.cache import caches
from django.db import connection
from django.utils import timezone

from messaging import ratelimit, services
from messaging.models import OutboxMessage
from messaging.tests.test_webhook import line_channel, user_id, wakeups  # noqa: F401 (autouse fixtures)

JST = ZoneInfo("Asia/Tokyo")
START = datetime(2030, 1, 7, 9, 20, 0, 250000, tzinfo=JST)  # a quarter into a second, 20 minutes into an hour
NEXT_SECOND = START.replace(microsecond=0) + timedelta(seconds=1)
PUSH = "/v2/bot/message/push"
REPLY = "/v2/bot/message/reply"
ON_REDIS = django_settings.CACHES["default"]["BACKEND"].endswith("RedisCache")


@pytest.fixture(autouse=True)
def limits(settings):
    """Small limits (each test counts under its own cache keys: conftest.py)."""
    settings.LINE_RATE_LIMITS = {"reply": 2, "push": 3, "multicast": 2, "broadcast": 2}
    return settings.LINE_RATE_LIMITS


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def takes(operation: str, times: int, **kwargs) -> list[float]:
    return [ratelimit.acquire(operation, **kwargs) for _ in range(times)]


# --------------------------------------------------------------------------
# The limiter
# --------------------------------------------------------------------------


def test_calls_under_the_limit_go_and_the_next_waits_for_the_next_window(clock):
    assert takes("push", 3) == [0.0, 0.0, 0.0]
    assert takes("push", 2) == [0.75, 0.75]  # the rest of this second, as often as asked
    clock.shift(0.5)
    assert ratelimit.acquire("push") == 0.25


def test_a_new_window_starts_a_new_count(clock):
    takes("push", 4)
    clock.move_to(NEXT_SECOND)
    assert takes("push", 4) == [0.0, 0.0, 0.0, 1.0]


def test_operations_are_counted_apart(clock):
    takes("push", 4)
    assert takes("reply", 2) == [0.0, 0.0]
    assert takes("multicast", 2) == [0.0, 0.0]


def test_broadcast_has_an_hourly_window_shared_with_narrowcast(clock):
    assert ratelimit.acquire("broadcast") == 0.0
    assert ratelimit.acquire("narrowcast") == 0.0
    assert ratelimit.acquire("broadcast") == pytest.approx(40 * 60 - 0.25)  # until 10:00
    assert ratelimit.retry_at("narrowcast", timezone.now()) == datetime(2030, 1, 7, 10, 0, tzinfo=JST)
    clock.shift(timedelta(minutes=30))  # 09:50: still the same hour
    assert ratelimit.acquire("broadcast") > 0
    clock.move_to(datetime(2030, 1, 7, 10, 0, tzinfo=JST))
    assert takes("broadcast", 3) == [0.0, 0.0, 3600.0]


def test_retry_at_is_exactly_the_start_of_the_next_window(clock):
    takes("push", 3)
    assert ratelimit.retry_at("push", timezone.now()) == NEXT_SECOND
    clock.move_to(NEXT_SECOND)
    assert ratelimit.retry_at("push", timezone.now()) is None


def test_an_explicit_time_chooses_the_window():
    at = START.timestamp()
    assert takes("push", 4, now=at) == [0.0, 0.0, 0.0, 0.75]
    assert ratelimit.acquire("push", now=at + 1) == 0.0


def test_an_unknown_operation_is_a_programming_error():
    with pytest.raises(KeyError):
        ratelimit.acquire("bulk-push")


def test_limits_are_read_from_the_environment_and_checked(tmp_path):
    code = "import json; from django.conf import settings; print(json.dumps(settings.LINE_RATE_LIMITS))"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LINE_", "DJANGO_", "GOVTECH_"))}
    env.update(DJANGO_SETTINGS_MODULE="govtech.settings", GOVTECH_TESTING="1", GOVTECH_VAR_DIR=str(tmp_path))

    def read(**values):
        return subprocess.run(  # noqa: S603 - our own interpreter and settings
            [sys.executable, "-c", code], env={**env, **values}, capture_output=True, text=True, timeout=60, check=False
        )

    assert json.loads(read().stdout) == {
        "reply": 2000,
        "push": 2000,
        "multicast": 200,
        "broadcast": 60,
        "profile": 2000,
        "rich_menu_bulk": 2000,
        "rich_menu_create": 100,
        "rich_menu_delete": 100,
    }
    assert json.loads(read(LINE_RATE_PUSH_PER_SECOND="100").stdout)["push"] == 100
    refused = read(LINE_RATE_BROADCAST_PER_HOUR="0")
    assert refused.returncode != 0 and "LINE_RATE_BROADCAST_PER_HOUR" in refused.stderr


# --------------------------------------------------------------------------
# The sender
# --------------------------------------------------------------------------


def queue(n: int, *, reply_token: str = "") -> OutboxMessage:
    now = timezone.now()
    return OutboxMessage.objects.create(
        line_user_id=user_id(n),
        kind="reply" if reply_token else "push",
        reply_token=reply_token,
        reply_token_expires_at=now + timedelta(seconds=50) if reply_token else None,
        payload=[{"type": "text", "text": f"受け付けました {n}"}],
        next_attempt_at=now,
    )


def pushed_keys(fake_line) -> list[str]:
    return [call.headers.get("x-line-retry-key") for call in fake_line.calls(PUSH)]


@pytest.mark.django_db
def test_a_push_over_the_limit_waits_for_the_next_window_and_is_sent_once(fake_line, clock):
    rows = [queue(n) for n in range(1, 5)]
    run = services.outbox_send()
    assert (run.sent, run.deferred) == (3, 1)
    late = OutboxMessage.objects.get(pk=rows[3].pk)
    # Put back as if never claimed, due at the next second: no sleeping in the worker.
    assert (late.status, late.attempts, late.next_attempt_at, late.claim_token) == ("pending", 0, NEXT_SECOND, None)
    assert services.outbox_send().sent == 0  # not due yet: no call
    assert len(fake_line.calls(PUSH)) == 3

    clock.move_to(NEXT_SECOND)
    assert services.outbox_send().sent == 1
    late.refresh_from_db()
    assert (late.status, late.attempts, late.sent_via) == ("sent", 1, "push")
    assert sorted(pushed_keys(fake_line)) == sorted(str(row.retry_key) for row in rows)  # each sent once
    for n in range(1, 5):
        assert fake_line.messages_sent_to(user_id(n)) == [{"type": "text", "text": f"受け付けました {n}"}]


@pytest.mark.django_db
def test_a_reply_over_the_limit_keeps_its_fresh_token_for_the_next_window(fake_line, clock):
    rows = [queue(n, reply_token=fake_line.issue_reply_token(user_id(n))) for n in range(1, 4)]
    assert services.outbox_send().deferred == 1
    late = OutboxMessage.objects.get(pk=rows[2].pk)
    assert (late.status, late.attempts, late.reply_attempted_at) == ("pending", 0, None)  # the token was not used

    clock.move_to(NEXT_SECOND)
    assert services.outbox_send().sent == 1
    late.refresh_from_db()
    assert (late.status, late.sent_via) == ("sent", "reply")
    assert len(fake_line.calls(REPLY)) == 3 and fake_line.calls(PUSH) == []


@pytest.mark.django_db
def test_a_push_after_a_refused_reply_is_deferred_and_never_replied_again(fake_line, clock, limits):
    limits["push"] = 1
    queue(1)
    refused = queue(2, reply_token="a-token-line-does-not-know")
    assert services.outbox_send().deferred == 1
    refused.refresh_from_db()
    # LINE was called (the reply was refused): that attempt stays recorded, and the reply is spent.
    assert (refused.status, refused.attempts, refused.next_attempt_at) == ("pending", 1, NEXT_SECOND)
    assert refused.reply_attempted_at is not None

    clock.move_to(NEXT_SECOND)
    assert services.outbox_send().sent == 1
    refused.refresh_from_db()
    assert (refused.status, refused.sent_via) == ("sent", "push")
    assert len(fake_line.calls(REPLY)) == 1  # the refused token was not tried again


@pytest.mark.django_db
def test_a_run_stops_claiming_once_the_limit_is_used_up(fake_line, clock, limits):
    limits["push"] = 1
    rows = [queue(n) for n in range(1, 4)]
    run = services.outbox_send(batch_size=1)
    assert (run.sent, run.deferred) == (1, 1)
    untouched = OutboxMessage.objects.get(pk=rows[2].pk)
    assert (untouched.status, untouched.attempts, untouched.next_attempt_at) == ("pending", 0, START)


@pytest.mark.django_db
def test_a_deferred_row_still_holds_back_the_residents_later_rows(fake_line, clock, limits):
    limits["push"] = 1
    queue(1)
    first, second = queue(2), queue(2)
    services.outbox_send()
    clock.move_to(NEXT_SECOND)
    services.outbox_send()  # one push this second: the resident's first row, not the second
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("sent", "pending")


# --------------------------------------------------------------------------
# Shared between processes (Redis)
# --------------------------------------------------------------------------


def in_threads(count: int, work) -> list:
    """Run `work(index)` in `count` threads started together; their results, in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = work(index)
        except BaseException as error:  # reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.skipif(not ON_REDIS, reason="counters shared between processes need the Redis cache (REDIS_URL)")
def test_clients_sharing_redis_never_take_more_than_the_limit_in_a_window(limits):
    limits["push"] = 5
    second = START.timestamp()

    def work(_index):
        client = caches["default"]  # each thread has its own cache object and Redis connections
        granted = {window: 0 for window in (0, 1)}
        for window in granted:
            for _ in range(20):
                granted[window] += ratelimit.acquire("push", now=second + window) == 0.0
        return client, granted

    results = in_threads(2, work)
    assert results[0][0] is not results[1][0]
    for window in (0, 1):
        assert sum(granted[window] for _client, granted in results) == 5


@pytest.mark.skipif(
    not ON_REDIS or django_settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
    reason="two senders at once need PostgreSQL (row locks) and Redis (shared counters)",
)
@pytest.mark.django_db(transaction=True)
def test_two_senders_sharing_redis_send_no_more_than_the_limit_and_nothing_twice(fake_line, clock, limits):
    assert connection.vendor == "postgresql"
    limits["push"] = 5
    rows = [queue(n) for n in range(1, 13)]

    def send(_index):
        try:
            return services.outbox_send(batch_size=2)
        finally:
            connection.close()  # this thread's own database connection

    for window, at in enumerate((START, NEXT_SECOND), start=1):
        clock.move_to(at)
        runs = in_threads(2, send)
        assert sum(run.sent for run in runs) == 5  # this window's five, between them
        assert len(fake_line.calls(PUSH)) == 5 * window
    keys = pushed_keys(fake_line)
    assert len(keys) == len(set(keys)) == 10  # no row pushed twice
    sent = OutboxMessage.objects.filter(status="sent")
    assert sent.count() == 10 and {row.attempts for row in sent} == {1}
    assert not OutboxMessage.objects.filter(pk__in=[row.pk for row in rows], status="sending").exists()
