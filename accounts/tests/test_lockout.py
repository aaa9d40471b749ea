"""django-axes: wrong passwords in a row stop the login of that name from that address for a while."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts.tests.conftest import LOGIN, PASSWORD, WRONG, client_from, is_logged_in, log_in
from audit import actions
from audit.models import AuditEntry
from procedures.tests.factories import StaffUserFactory
from staff.models import Role, StaffMembership

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 5, 11, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def lock_out(client: Client, username: str = "kaori"):
    for _attempt in range(4):
        assert log_in(client, username, WRONG).status_code == 200  # the form again, with its error
    return log_in(client, username, WRONG)


def test_five_wrong_passwords_lock_the_login_and_the_right_one_is_then_refused(kaori, frozen):
    client = client_from("198.51.100.7")
    fifth = lock_out(client)

    assert fifth.status_code == 429
    page = fifth.content.decode()
    assert "ログインを一時停止しています" in page and "5 回続けて間違えた" in page
    assert "30 分ほど待って" in page and "システム管理者にログイン停止の解除" in page

    refused = log_in(client, "kaori", PASSWORD)
    assert refused.status_code == 429 and not is_logged_in(client)


def test_the_lockout_is_recorded_in_the_audit_log_without_the_password(kaori, frozen):
    client = client_from("198.51.100.7", HTTP_USER_AGENT="Mozilla/5.0 test")
    lock_out(client)

    entry = AuditEntry.objects.get(action=actions.LOCKOUT)
    assert (entry.actor, entry.actor_display, entry.ip) == (None, "kaori", "198.51.100.7")
    assert AuditEntry.objects.filter(action=actions.LOGIN_FAILED).count() == 5
    assert not any(WRONG in str(row) for row in AuditEntry.objects.values_list())


def test_the_lockout_ends_after_the_cool_off(kaori, frozen):
    client = client_from("198.51.100.7")
    lock_out(client)
    frozen.shift(dt.timedelta(minutes=29))
    assert log_in(client, "kaori", PASSWORD).status_code == 429
    frozen.shift(dt.timedelta(minutes=2))
    assert log_in(client, "kaori", PASSWORD).status_code == 302 and is_logged_in(client)


def test_other_users_and_other_addresses_are_not_locked(kaori, frozen):
    StaffUserFactory(username="takeshi", is_superuser=False)
    lock_out(client_from("198.51.100.7"))

    same_address = client_from("198.51.100.7")
    assert log_in(same_address, "takeshi").status_code == 302 and is_logged_in(same_address)
    elsewhere = client_from("203.0.113.9")
    assert log_in(elsewhere, "kaori").status_code == 302 and is_logged_in(elsewhere)


def test_a_right_password_before_the_limit_starts_the_count_again(kaori, frozen):
    client = client_from("198.51.100.7")
    for _attempt in range(4):
        log_in(client, "kaori", WRONG)
    assert log_in(client, "kaori").status_code == 302
    client.post(reverse("admin:logout"))
    for _attempt in range(4):
        assert log_in(client, "kaori", WRONG).status_code == 200


def test_the_limit_and_the_cool_off_come_from_settings(kaori, frozen, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = dt.timedelta(minutes=10)
    client = client_from("198.51.100.7")
    assert log_in(client, "kaori", WRONG).status_code == 200
    page = log_in(client, "kaori", WRONG)
    assert page.status_code == 429 and "2 回続けて" in page.content.decode() and "10 分ほど" in page.content.decode()


def test_behind_the_proxy_each_client_is_counted_by_its_forwarded_address(kaori, frozen, settings):
    """Every request comes from the proxy's address; the proxy appends the client's to X-Forwarded-For."""
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxy = "10.0.0.2"
    attacker = client_from(proxy, HTTP_X_FORWARDED_FOR="192.0.2.1, 198.51.100.7")
    lock_out(attacker)
    assert AuditEntry.objects.get(action=actions.LOCKOUT).actor_display == "kaori"

    # The attacker cannot escape by putting another address first: only the proxy's entry counts.
    spoofing = client_from(proxy, HTTP_X_FORWARDED_FOR="203.0.113.50, 198.51.100.7")
    assert log_in(spoofing, "kaori").status_code == 429
    colleague = client_from(proxy, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert log_in(colleague, "kaori").status_code == 302 and is_logged_in(colleague)


# --------------------------------------------------------------------------
# Unlocking: a system administrator in the admin, or the command line
# --------------------------------------------------------------------------


def _unlock_in_admin(admin: Client, user):
    return admin.post(
        reverse("admin:auth_user_changelist"), {"action": "unlock_login", "_selected_action": [user.pk]}, follow=True
    )


def test_a_system_administrator_unlocks_the_login_in_the_admin(kaori, frozen):
    lock_out(client_from("198.51.100.7"))
    admin_user = StaffUserFactory(username="sysadmin", is_superuser=False)
    StaffMembership.objects.create(user=admin_user, role=Role.SYSTEM_ADMIN)
    admin = Client()
    admin.force_login(admin_user)

    response = _unlock_in_admin(admin, kaori)
    assert "1 人のログイン停止を解除しました。" in response.content.decode()

    client = client_from("198.51.100.7")
    assert log_in(client, "kaori").status_code == 302 and is_logged_in(client)
    entry = AuditEntry.objects.get(action=actions.LOGIN_UNLOCK)
    assert entry.actor == admin_user and entry.details == {"user_id": kaori.pk, "cleared": 1}


@pytest.mark.parametrize("role", [Role.DEPARTMENT_STAFF, Role.AUDITOR])
def test_other_roles_cannot_unlock(kaori, frozen, role):
    from staff.models import Department

    lock_out(client_from("198.51.100.7"))
    member = StaffUserFactory(username="member", is_superuser=False)
    StaffMembership.objects.create(user=member, role=role, department=Department.objects.create(name="環境課", code="env"))
    client = Client()
    client.force_login(member)

    _unlock_in_admin(client, kaori)
    assert log_in(client_from("198.51.100.7"), "kaori").status_code == 429
    assert not AuditEntry.objects.filter(action=actions.LOGIN_UNLOCK).exists()


def test_the_unlock_command_lifts_the_lockout_and_is_recorded(kaori, frozen, capsys):
    lock_out(client_from("198.51.100.7"))
    call_command("unlock_login", "kaori")
    assert "職員「kaori」のログイン停止を解除しました" in capsys.readouterr().out
    assert log_in(client_from("198.51.100.7"), "kaori").status_code == 302
    entry = AuditEntry.objects.get(action=actions.LOGIN_UNLOCK)
    assert entry.actor is None and entry.details["user_id"] == kaori.pk


def test_the_unlock_command_names_an_unknown_user(db):
    with pytest.raises(CommandError, match="職員「nobody」は見つかりません"):
        call_command("unlock_login", "nobody")
    assert not AuditEntry.objects.exists()


def test_the_login_page_still_works_for_a_get(db):
    assert Client().get(LOGIN).status_code == 200
