"""The cache's counter for LINE's rate limiter (govtech/cache.py), on each backend settings can pick.

Each test has its own key prefix, so nothing is cleared (a FLUSHDB would wipe other users' data on a
shared Redis). The Redis cases need REDIS_URL and are skipped otherwise.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings as django_settings

from govtech.cache import LocMemCache, RedisCache

START = datetime(2030, 1, 7, 9, 20, tzinfo=ZoneInfo("Asia/Tokyo"))
REDIS_URL = django_settings.REDIS_URL
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="needs Redis (REDIS_URL)")


def locmem() -> LocMemCache:
    return LocMemCache(f"test-{uuid.uuid4().hex}", {})


def on_redis() -> RedisCache:
    return RedisCache(REDIS_URL, {"KEY_PREFIX": f"test-{uuid.uuid4().hex}"})


def test_a_local_counter_starts_at_one_counts_up_and_starts_again_once_expired():
    cache = locmem()
    with time_machine.travel(START, tick=False) as clock:
        assert [cache.incr_or_create("calls", timeout=2) for _ in range(3)] == [1, 2, 3]
        assert cache.incr_or_create("other", timeout=2) == 1
        clock.shift(timedelta(seconds=1.5))
        assert cache.incr_or_create("calls", timeout=2) == 4  # counting does not extend its life
        clock.shift(timedelta(seconds=0.6))
        assert cache.incr_or_create("calls", timeout=2) == 1


@pytest.mark.parametrize("make", [locmem, pytest.param(on_redis, marks=needs_redis)], ids=["locmem", "redis"])
@pytest.mark.parametrize("timeout", [0, -1, 1.5])
def test_a_counter_without_a_lifetime_in_whole_seconds_is_refused(make, timeout):
    with pytest.raises(ValueError, match="positive timeout in whole seconds"):
        make().incr_or_create("calls", timeout=timeout)


@needs_redis
def test_a_redis_counter_is_created_with_its_lifetime_and_counting_keeps_it():
    cache = on_redis()
    key = cache.make_and_validate_key("calls")
    client = cache._cache.get_client(key, write=True)
    assert cache.incr_or_create("calls", timeout=30) == 1
    assert 0 < client.ttl(key) <= 30
    client.pexpire(key, 5000)  # as if 25 s had passed
    assert [cache.incr_or_create("calls", timeout=30) for _ in range(2)] == [2, 3]
    assert 0 < client.pttl(key) <= 5000  # the window's end did not move
    client.delete(key)


@needs_redis
def test_a_redis_count_is_one_round_trip_on_a_client_kept_for_the_process(monkeypatch):
    cache = on_redis()
    cache.incr_or_create("calls", timeout=5)  # loads the script once
    client = cache._cache.get_client(write=True)
    assert cache._cache.get_client(write=True) is client
    commands: list[str] = []
    execute = client.execute_command
    monkeypatch.setattr(client, "execute_command", lambda *args, **options: commands.append(args[0]) or execute(*args, **options))
    assert cache.incr_or_create("calls", timeout=5) == 2
    assert commands == ["EVALSHA"]
    client.delete(cache.make_and_validate_key("calls"))
