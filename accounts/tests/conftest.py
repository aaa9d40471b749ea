"""Staff logins over the real admin login page, from a fixed client address."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP

from procedures.tests.factories import StaffUserFactory

PASSWORD = "correct horse battery staple"  # StaffUserFactory's
WRONG = "Tr0ub4dor&3-not-it"
LOGIN = reverse("admin:login")


def client_from(address: str, **extra) -> Client:
    return Client(REMOTE_ADDR=address, **extra)


def log_in(client: Client, username: str, password: str = PASSWORD, next_url: str = "/admin/"):
    return client.post(LOGIN, {"username": username, "password": password, "next": next_url})


def is_logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def current_code(device) -> str:
    """The code an authenticator app shows now for this device (time is frozen by the tests)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():0{device.digits}d}"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Logging in through the form hashes the password each time: the production hasher is slow on purpose."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def kaori(db):
    return StaffUserFactory(username="kaori", is_superuser=False)
