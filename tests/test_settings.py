"""Settings come from the environment and fail loudly on bad values.

Settings are read once at import, so the cases that depend on the environment
evaluate them in a fresh interpreter with a controlled environment.
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from govtech.env import env_bool, env_int, env_list, env_log_level, env_str

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PREFIXES = ("DJANGO_", "GOVTECH_", "DATABASE_", "REDIS_", "LINE_", "Q_", "DEMO_")

# A deployment must set it (govtech/crypto.py); tests/test_encryption.py checks what happens without.
ENCRYPTION_KEY = Fernet.generate_key().decode()
PRODUCTION = {
    "GOVTECH_ENCRYPTION_KEYS": ENCRYPTION_KEY,
    "DJANGO_ALLOWED_HOSTS": "city.example.jp",
    "DJANGO_SECURE": "1",
    "DJANGO_DEBUG": "0",
}


def clean_env(tmp_path, **values) -> dict:
    """The current environment without any project variable, plus `values`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(PROJECT_PREFIXES)}
    env.update(
        DJANGO_SETTINGS_MODULE="govtech.settings",
        GOVTECH_VAR_DIR=str(tmp_path / "var"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(values)
    return env


def run_python(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def run_code(code: str, env: dict) -> subprocess.CompletedProcess:
    return run_python(env, "-c", code)


def check_deploy(env: dict) -> subprocess.CompletedProcess:
    return run_python(env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")


def settings_values(tmp_path, **values) -> dict:
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({"
        "'engine': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']),"
        "'q': {k: v for k, v in s.Q_CLUSTER.items() if k in ('orm', 'redis')},"
        "'cache': s.CACHES['default']['BACKEND'], 'debug': s.DEBUG, 'secure': s.SESSION_COOKIE_SECURE,"
        "'hsts': s.SECURE_HSTS_SECONDS, 'ssl_redirect': s.SECURE_SSL_REDIRECT}))"
    )
    result = run_code(code, clean_env(tmp_path, GOVTECH_ENCRYPTION_KEYS=ENCRYPTION_KEY, **values))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def production_env(tmp_path, **values) -> dict:
    return clean_env(tmp_path, **{"DJANGO_SECRET_KEY": secrets.token_urlsafe(64), **PRODUCTION, **values})


# --------------------------------------------------------------------------
# The env helpers.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "si"])
def test_env_bool_refuses_an_unknown_value_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("X", raw)
    with pytest.raises(ImproperlyConfigured, match=r"\bX\b"):
        env_bool("X")


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("Yes", True), (" on ", True), ("0", False), ("off", False)]
)
def test_env_bool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("X", raw)
    assert env_bool("X", not expected) is expected


def test_env_bool_default_when_unset(monkeypatch):
    monkeypatch.delenv("X", raising=False)
    assert env_bool("X", True) is True
    assert env_bool("X") is False


@pytest.mark.parametrize("raw", ["", "  "])
def test_env_bool_empty_value_keeps_the_default_so_a_blank_line_never_turns_security_off(monkeypatch, raw):
    monkeypatch.setenv("X", raw)
    assert env_bool("X", True) is True
    assert env_bool("X", False) is False


def test_env_int_refuses_a_non_integer_naming_the_variable(monkeypatch):
    monkeypatch.setenv("X", "12a")
    with pytest.raises(ImproperlyConfigured, match=r"X must be an integer"):
        env_int("X", 3)


def test_env_int_refuses_a_value_below_the_minimum(monkeypatch):
    monkeypatch.setenv("X", "0")
    with pytest.raises(ImproperlyConfigured, match=r"X must be at least 1"):
        env_int("X", 3, minimum=1)


def test_env_int_reads_a_value_and_defaults_when_empty(monkeypatch):
    monkeypatch.setenv("X", " 42 ")
    assert env_int("X", 3, minimum=1) == 42
    monkeypatch.setenv("X", "")
    assert env_int("X", 3) == 3


def test_env_list_and_str(monkeypatch):
    monkeypatch.setenv("X", " a.example.jp, ,b.example.jp ")
    assert env_list("X", ["default"]) == ["a.example.jp", "b.example.jp"]
    monkeypatch.delenv("X")
    assert env_list("X", ["default"]) == ["default"]
    assert env_str("X", "fallback") == "fallback"


def test_env_log_level_reads_any_case_and_defaults_when_empty(monkeypatch):
    monkeypatch.setenv("X", " warning ")
    assert env_log_level("X", "INFO") == "WARNING"
    monkeypatch.setenv("X", "")
    assert env_log_level("X", "INFO") == "INFO"


# --------------------------------------------------------------------------
# Settings as a deployment sees them.
# --------------------------------------------------------------------------


def test_defaults_are_sqlite_orm_broker_and_debug_off(tmp_path):
    values = settings_values(tmp_path, DJANGO_SECRET_KEY=secrets.token_urlsafe(64))
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["q"] == {"orm": "default"}
    assert values["cache"] == "govtech.cache.LocMemCache"
    assert values["debug"] is False
    # Outside demo and tests, security is on unless switched off explicitly.
    assert values["secure"] is True
    assert values["ssl_redirect"] is True
    assert values["hsts"] > 0


def test_database_url_switches_to_postgresql(tmp_path):
    values = settings_values(
        tmp_path,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DATABASE_URL="postgres://govtech:pw@db.internal:5432/city",
    )
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["name"] == "city"


def test_redis_url_switches_the_task_broker_and_the_cache_to_redis(tmp_path):
    values = settings_values(
        tmp_path, DJANGO_SECRET_KEY=secrets.token_urlsafe(64), REDIS_URL="redis://redis.internal:6379/0"
    )
    assert values["q"] == {"redis": "redis://redis.internal:6379/0"}
    assert values["cache"] == "govtech.cache.RedisCache"


def test_missing_secret_key_outside_demo_and_tests_refuses_to_start(tmp_path):
    result = run_code("import django.conf as c; c.settings.SECRET_KEY", clean_env(tmp_path, **PRODUCTION))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY is not set" in result.stderr
    assert not (tmp_path / "var" / "secret_key").exists()


def test_demo_mode_keeps_a_generated_secret_key_on_disk(tmp_path):
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = run_code(code, clean_env(tmp_path, GOVTECH_DEMO="1"))
    second = run_code(code, clean_env(tmp_path, GOVTECH_DEMO="1"))
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    assert len(key) >= 50 and key == second.stdout.strip()
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DJANGO_DEBUG", "maybe"),
        ("Q_WORKERS", "0"),
        ("DATABASE_CONN_MAX_AGE", "soon"),
        ("LOG_LEVEL", "verbose"),
        ("Q_LOG_LEVEL", "INFOO"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(tmp_path, variable, value):
    env = production_env(tmp_path, **{variable: value})
    result = run_code("from django.conf import settings; settings.DEBUG", env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and variable in result.stderr


def test_check_deploy_passes_with_production_values(tmp_path):
    result = check_deploy(production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_security_is_switched_off(tmp_path):
    """The guard above can fail: switching DJANGO_SECURE off is reported."""
    result = check_deploy(production_env(tmp_path, DJANGO_SECURE="0"))
    assert result.returncode != 0
    assert "security.W012" in result.stdout + result.stderr  # SESSION_COOKIE_SECURE
