"""Django's cache backends with what LINE's rate limiter needs from them (messaging/ratelimit.py).

`incr_or_create(key, timeout=...)` adds one to a counter and gives the new count, creating it at 1
with `timeout` seconds to live when it is missing: on Redis one atomic round trip (a Lua script),
where Django's `add` and `incr` make three (SET NX, then EXISTS and INCRBY).

The Redis client is also kept per connection pool: Django builds a new `redis.Redis` (with its few
hundred response callbacks) for every cache call, about a tenth of a millisecond each time on the
inbox worker's path (bench/README.md).
"""

from __future__ import annotations

from django.core.cache.backends import locmem, redis

# INCR, and the time to live set by the call that created the counter: atomic, so a counter never
# outlives its window whatever happens to the caller.
_INCR_OR_CREATE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""


def _check_timeout(timeout) -> None:
    # Whole seconds: Redis's EXPIRE refuses anything else, and it runs after the INCR.
    if type(timeout) is not int or timeout <= 0:
        raise ValueError("a counter needs a positive timeout in whole seconds")


class RedisCacheClient(redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}
        self._incr_or_create = None

    def get_client(self, key=None, *, write=False):
        # A client only holds its pool (which looks after forks and threads), so one per pool will do.
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client

    def incr_or_create(self, key, timeout: int) -> int:
        client = self.get_client(key, write=True)
        if self._incr_or_create is None:
            self._incr_or_create = client.register_script(_INCR_OR_CREATE)  # EVALSHA, loaded once
        return int(self._incr_or_create(keys=[key], args=[timeout], client=client))


class RedisCache(redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient

    def incr_or_create(self, key, *, timeout: int, version=None) -> int:
        _check_timeout(timeout)
        key = self.make_and_validate_key(key, version=version)
        return self._cache.incr_or_create(key, timeout)


class LocMemCache(locmem.LocMemCache):
    """Counters per process: right for one process (the local demo, tests), not shared between several."""

    def incr_or_create(self, key, *, timeout: int, version=None) -> int:
        _check_timeout(timeout)
        while True:
            if self.add(key, 1, timeout=timeout, version=version):
                return 1
            try:
                return self.incr(key, version=version)
            except ValueError:  # expired between the two: create it again
                continue
