"""Fixtures shared by every test: the fake LINE API server (messaging/line/fakeline), fast hashing, own cache keys."""

import uuid

import pytest

pytest_plugins = ["messaging.line.fakeline.pytest_plugin"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's production work factor costs ~0.3 s per staff user a test creates; the hasher
    # is not what any test checks, so tests use a cheap one (production settings are unchanged).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _own_cache_keys(settings):
    # LINE's rate-limit counters (and anything else cached) live under a key prefix of the test's
    # own: on a shared Redis, tests running at once or at the same frozen time never share a
    # counter, and nothing needs clearing (a FLUSHDB would wipe other users' data).
    settings.CACHES = {"default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}
