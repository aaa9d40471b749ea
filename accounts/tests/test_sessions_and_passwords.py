"""Staff sessions end when idle; passwords must be long and not guessable."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings as django_settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from procedures.tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 5, 11, 9, 0, tzinfo=dt.UTC)
ADMIN = reverse("admin:index")


def test_a_session_lasts_thirty_idle_minutes_by_default():
    assert django_settings.SESSION_COOKIE_AGE == 30 * 60
    assert django_settings.SESSION_SAVE_EVERY_REQUEST


def test_each_request_pushes_the_idle_timeout_forward_and_an_idle_session_ends(admin_user):
    with time_machine.travel(START, tick=False) as clock:
        client = Client()
        client.force_login(admin_user)
        for _step in range(3):  # 75 minutes in all, never 30 idle
            clock.shift(dt.timedelta(minutes=25))
            assert client.get(ADMIN).status_code == 200
        clock.shift(dt.timedelta(minutes=31))
        response = client.get(ADMIN)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("Sh0rt!pass", "このパスワードは短すぎます。最低 12 文字以上必要です。"),
        ("password1234", "このパスワードは一般的すぎます。"),
        ("830519274610", "このパスワードは数字しか使われていません。"),
        ("sato.hanako.city", "このパスワードは ユーザー名 と似すぎています。"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason_in_japanese(password, message):
    user = StaffUserFactory.build(username="sato.hanako.city", email="sato@example.jp")
    with pytest.raises(ValidationError) as refused:
        validate_password(password, user)
    assert message in refused.value.messages


def test_a_long_unusual_password_is_accepted():
    user = StaffUserFactory.build(username="sato.hanako.city")
    validate_password("kawa-no-nagare 1957 ame", user)


def test_the_admin_refuses_a_weak_password_for_a_new_staff_account(admin_client):
    response = admin_client.post(
        reverse("admin:auth_user_add"),
        {"username": "newcomer", "password1": "short", "password2": "short", "usable_password": "true"},
    )
    assert response.status_code == 200
    assert "このパスワードは短すぎます。" in response.content.decode()
