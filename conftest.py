"""Fixtures shared by every test: the fake LINE API server (messaging/line/fakeline), fast hashing."""

import pytest

pytest_plugins = ["messaging.line.fakeline.pytest_plugin"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2's production work factor costs ~0.3 s per staff user a test creates; the hasher
    # is not what any test checks, so tests use a cheap one (production settings are unchanged).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
