"""The local demo's staff login (make run).

The demo needs one staff account that a person can log in with right away. Its
password is random, made once and kept in VAR_DIR so that re-running the demo
prints the same login; it is never a fixed value in the code, and nothing here
runs outside demo mode.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

DEMO_USERNAME = "demo"
CREDENTIAL_FILE_NAME = "demo_password"


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    created: bool


def password_file() -> Path:
    return Path(settings.VAR_DIR) / CREDENTIAL_FILE_NAME


def _demo_password() -> str:
    path = password_file()
    if path.exists():
        password = path.read_text(encoding="utf-8").strip()
        if password:
            return password
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    path.write_text(password + "\n", encoding="utf-8")
    path.chmod(0o600)
    return password


def ensure_demo_staff() -> DemoLogin:
    """Create the demo superuser, or bring it back to the stored password and rights.

    Idempotent: the first call makes the password and the user; later calls
    keep both. Refuses to run unless settings.DEMO_MODE is on, so a deployment
    can never get a known login by accident.
    """
    if not settings.DEMO_MODE:
        raise ImproperlyConfigured(
            "The demo staff login exists only in demo mode (GOVTECH_DEMO=1); refusing to create it."
        )
    password = _demo_password()
    user_model = get_user_model()
    with transaction.atomic():
        user, created = user_model.objects.get_or_create(
            username=DEMO_USERNAME,
            defaults={"is_staff": True, "is_superuser": True, "is_active": True},
        )
        if created or not (user.is_staff and user.is_superuser and user.is_active) or not user.check_password(password):
            user.is_staff = user.is_superuser = user.is_active = True
            user.set_password(password)
            user.save()
    return DemoLogin(username=DEMO_USERNAME, password=password, created=created)
