"""The local demo's staff login and LINE channel (make run).

The demo needs one staff account that a person can log in with right away. Its
password is random, made once and kept in VAR_DIR so that re-running the demo
prints the same login; it is never a fixed value in the code, and nothing here
runs outside demo mode. The same goes for the demo's LINE channel secret and
access token, used with the fake LINE API that the demo runs unless the
operator set a LINE channel in the environment.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
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


# --------------------------------------------------------------------------
# The demo's LINE channel: the fake LINE API (manage.py fakeline) unless the
# operator configured a LINE channel in the environment.
# --------------------------------------------------------------------------

LINE_CHANNEL_FILE_NAME = "demo_line_channel.json"
# Any of these set in the environment means the operator chose the LINE channel: no fake then.
OPERATOR_LINE_VARIABLES = (
    "LINE_CHANNEL_SECRET",
    "LINE_CHANNEL_ACCESS_TOKEN",
    "LINE_API_BASE_URL",
    "LINE_API_DATA_BASE_URL",
)


@dataclass(frozen=True)
class DemoLineChannel:
    channel_secret: str
    access_token: str


def line_channel_file() -> Path:
    return Path(settings.VAR_DIR) / LINE_CHANNEL_FILE_NAME


def operator_line_variables(environ: Mapping[str, str]) -> list[str]:
    """The LINE variables the operator set (non-empty) in `environ`."""
    return [name for name in OPERATOR_LINE_VARIABLES if (environ.get(name) or "").strip()]


def ensure_demo_line_channel() -> DemoLineChannel:
    """The demo channel's secret and access token for the fake LINE: random, made once, kept in VAR_DIR.

    They only ever sign the simulator's webhooks and authenticate against the local fake; like the demo
    password, nothing here runs outside demo mode.
    """
    if not settings.DEMO_MODE:
        raise ImproperlyConfigured("The demo LINE channel exists only in demo mode (GOVTECH_DEMO=1).")
    path = line_channel_file()
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            channel = DemoLineChannel(str(stored["channel_secret"]), str(stored["access_token"]))
        except (ValueError, KeyError, TypeError):
            channel = None
        if channel and channel.channel_secret and channel.access_token:
            return channel
    channel = DemoLineChannel(channel_secret=secrets.token_hex(16), access_token=secrets.token_urlsafe(48))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"channel_secret": channel.channel_secret, "access_token": channel.access_token}) + "\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return channel


def fake_line_environment(port: int, channel: DemoLineChannel, host: str = "127.0.0.1") -> dict[str, str]:
    """What the web server and the task cluster need in their environment to use the fake LINE on `port`."""
    return {
        "LINE_API_BASE_URL": f"http://{host}:{port}",
        "LINE_API_DATA_BASE_URL": f"http://{host}:{port + 1}",
        "LINE_CHANNEL_SECRET": channel.channel_secret,
        "LINE_CHANNEL_ACCESS_TOKEN": channel.access_token,
    }
