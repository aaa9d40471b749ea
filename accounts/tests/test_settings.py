"""Login hardening settings come from the environment: on in production, off for the demo, bad values named."""

from __future__ import annotations

import json

import pytest

from tests.test_settings import clean_env, production_env, run_code

CODE = (
    "import json; from django.conf import settings as s; print(json.dumps({'2fa': s.STAFF_REQUIRE_2FA,"
    " 'limit': s.AXES_FAILURE_LIMIT, 'minutes': s.AXES_COOLOFF_TIME.total_seconds() / 60,"
    " 'idle': s.SESSION_COOKIE_AGE, 'every_request': s.SESSION_SAVE_EVERY_REQUEST}))"
)


def values(env: dict) -> dict:
    result = run_code(CODE, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_requires_the_second_factor_and_has_the_documented_defaults(tmp_path):
    assert values(production_env(tmp_path)) == {
        "2fa": True, "limit": 5, "minutes": 30, "idle": 30 * 60, "every_request": True
    }


def test_the_demo_needs_no_second_factor_unless_asked(tmp_path):
    assert values(clean_env(tmp_path, GOVTECH_DEMO="1"))["2fa"] is False
    assert values(clean_env(tmp_path, GOVTECH_DEMO="1", GOVTECH_STAFF_REQUIRE_2FA="1"))["2fa"] is True


def test_the_limits_are_read_from_the_environment(tmp_path):
    env = production_env(
        tmp_path, GOVTECH_LOGIN_FAILURE_LIMIT="3", GOVTECH_LOGIN_LOCKOUT_MINUTES="15", DJANGO_SESSION_IDLE_MINUTES="10"
    )
    assert values(env) | {"2fa": None} == {"2fa": None, "limit": 3, "minutes": 15, "idle": 600, "every_request": True}


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("GOVTECH_LOGIN_FAILURE_LIMIT", "0"),
        ("GOVTECH_LOGIN_LOCKOUT_MINUTES", "half an hour"),
        ("DJANGO_SESSION_IDLE_MINUTES", "0"),
        ("GOVTECH_STAFF_REQUIRE_2FA", "maybe"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(tmp_path, name, raw):
    result = run_code(CODE, production_env(tmp_path, **{name: raw}))
    assert result.returncode != 0 and name in result.stderr
