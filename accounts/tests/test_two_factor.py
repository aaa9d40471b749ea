"""Staff pass a TOTP one-time code after the password (settings.STAFF_REQUIRE_2FA, on in production)."""

from __future__ import annotations

import base64
import datetime as dt
import re
from urllib.parse import quote

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.tests.conftest import client_from, current_code, is_logged_in, log_in
from audit import actions
from audit.models import AuditEntry
from procedures.tests.factories import StaffUserFactory
from staff.models import Department, Role, StaffMembership

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 5, 11, 9, 0, tzinfo=dt.UTC)
VERIFY = reverse("accounts:otp_verify")
SETUP = reverse("accounts:otp_setup")
ADMIN = reverse("admin:index")


@pytest.fixture(autouse=True)
def two_factor(settings):
    settings.STAFF_REQUIRE_2FA = True


@pytest.fixture
def frozen():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def device(kaori):
    return TOTPDevice.objects.create(user=kaori, name="TOTP", confirmed=True)


def submit(client: Client, url: str, code: str, next_url: str = ADMIN):
    return client.post(url, {"token": code, "next": next_url})


def test_the_password_alone_leads_to_the_code_page_not_the_admin(kaori, device, frozen):
    client = client_from("198.51.100.7")
    response = log_in(client, "kaori")
    assert response.status_code == 302 and is_logged_in(client)

    admin = client.get(ADMIN)
    assert admin.status_code == 302 and admin["Location"] == f"{VERIFY}?next={quote(ADMIN, safe='')}"
    page = client.get(admin["Location"])
    assert "6桁の確認コードを入力してください" in page.content.decode()
    for url in (reverse("admin:procedures_application_changelist"), reverse("procedures:simulator")):
        assert client.get(url)["Location"].startswith(VERIFY)


def test_the_right_code_opens_the_admin(kaori, device, frozen):
    client = client_from("198.51.100.7")
    log_in(client, "kaori")
    response = submit(client, VERIFY, current_code(device))
    assert response.status_code == 302 and response["Location"] == ADMIN
    assert client.get(ADMIN).status_code == 200


def test_a_wrong_code_is_refused_with_what_to_do_and_counts_as_a_failed_login(kaori, device, frozen):
    client = client_from("198.51.100.7")
    log_in(client, "kaori")
    wrong = f"{(int(current_code(device)) + 1) % 1_000_000:06d}"
    page = submit(client, VERIFY, wrong)
    assert page.status_code == 200 and "確認コードが違います。" in page.content.decode()
    assert client.get(ADMIN).status_code == 302
    failed = AuditEntry.objects.get(action=actions.LOGIN_FAILED)
    assert failed.actor_display == "kaori" and wrong not in str(failed.details)

    # django-otp makes the next try wait a moment, even with the right code.
    page = submit(client, VERIFY, current_code(device))
    assert "数秒待ってから" in page.content.decode()
    frozen.shift(dt.timedelta(seconds=30))
    assert submit(client, VERIFY, current_code(device)).status_code == 302
    assert client.get(ADMIN).status_code == 200


@pytest.mark.parametrize("code", ["", "12345", "abcdef", "1234567"])
def test_a_malformed_code_is_explained(kaori, device, frozen, code):
    client = client_from("198.51.100.7")
    log_in(client, "kaori")
    page = submit(client, VERIFY, code).content.decode()
    assert "6桁の数字" in page
    assert not AuditEntry.objects.filter(action=actions.LOGIN_FAILED).exists()


def test_a_code_cannot_be_used_twice(kaori, device, frozen):
    first = client_from("198.51.100.7")
    log_in(first, "kaori")
    code = current_code(device)
    assert submit(first, VERIFY, code).status_code == 302
    second = client_from("198.51.100.7")
    log_in(second, "kaori")
    assert "確認コードが違います。" in submit(second, VERIFY, code).content.decode()


def test_wrong_codes_count_towards_the_lockout_and_end_the_login(kaori, device, frozen):
    client = client_from("198.51.100.7")
    log_in(client, "kaori")
    for _attempt in range(4):
        frozen.shift(dt.timedelta(seconds=60))  # past django-otp's own slowing down
        assert submit(client, VERIFY, "000000").status_code == 200
    frozen.shift(dt.timedelta(seconds=60))
    locked = submit(client, VERIFY, "000000")
    assert locked.status_code == 429 and "ログインを一時停止しています" in locked.content.decode()
    assert not is_logged_in(client)
    assert AuditEntry.objects.filter(action=actions.LOCKOUT, actor_display="kaori").exists()
    assert log_in(client, "kaori").status_code == 429


def test_a_staff_member_without_a_device_enrols_with_a_local_qr_code(kaori, frozen):
    client = client_from("198.51.100.7")
    log_in(client, "kaori")
    verify = client.get(client.get(ADMIN)["Location"])
    assert verify.status_code == 302 and verify["Location"].startswith(SETUP)

    page = client.get(verify["Location"]).content.decode()
    assert "二段階認証の登録" in page and "認証アプリ" in page
    source = re.search(r'<img id="otp-qr" src="([^"]+)"', page).group(1)
    assert source.startswith("data:image/svg+xml;base64,")
    assert b"<svg" in base64.b64decode(source.split(",", 1)[1])
    pending = TOTPDevice.objects.get(user=kaori, confirmed=False)
    key = re.search(r'<code id="otp-key">([^<]+)</code>', page).group(1).replace(" ", "")
    assert base64.b32decode(key) == pending.bin_key
    assert client.get(SETUP).content.decode().count(key[:4]) >= 1  # a reload shows the same key
    assert TOTPDevice.objects.filter(user=kaori).count() == 1

    assert "確認コードが違います。" in submit(client, SETUP, "000000").content.decode()
    frozen.shift(dt.timedelta(seconds=30))
    response = submit(client, SETUP, current_code(pending))
    assert response.status_code == 302 and response["Location"] == ADMIN
    assert client.get(ADMIN).status_code == 200
    assert TOTPDevice.objects.get(user=kaori).confirmed
    assert AuditEntry.objects.get(action=actions.OTP_ENROL).actor == kaori


def test_an_enrolled_staff_member_cannot_enrol_another_device(kaori, device, frozen):
    client = client_from("198.51.100.7")
    log_in(client, "kaori")
    assert client.get(SETUP)["Location"].startswith(VERIFY)
    assert TOTPDevice.objects.filter(user=kaori).count() == 1


def test_an_unverified_post_to_a_json_endpoint_gets_a_json_refusal(kaori, device, frozen):
    client = client_from("198.51.100.7")
    log_in(client, "kaori")
    response = client.post(reverse("procedures:simulator_send"), {}, content_type="application/json")
    assert response.status_code == 403 and "二段階認証が済んでいません" in response.json()["error"]


def test_logout_stays_open_before_the_code(kaori, device, frozen):
    client = client_from("198.51.100.7")
    log_in(client, "kaori")
    client.post(reverse("admin:logout"))
    assert not is_logged_in(client)


def test_people_who_are_not_staff_are_not_asked(db):
    user = StaffUserFactory(username="resident", is_staff=False, is_superuser=False)
    client = Client()
    client.force_login(user)
    assert client.get(VERIFY)["Location"] == ADMIN


def test_with_the_setting_off_the_password_is_enough(kaori, settings):
    settings.STAFF_REQUIRE_2FA = False
    client = client_from("198.51.100.7")
    log_in(client, "kaori")
    assert client.get(ADMIN).status_code == 200


# --------------------------------------------------------------------------
# A lost phone: a system administrator resets the device, the next login enrols again
# --------------------------------------------------------------------------


def _reset_in_admin(client: Client, user):
    return client.post(
        reverse("admin:auth_user_changelist"), {"action": "reset_two_factor", "_selected_action": [user.pk]}, follow=True
    )


def _verified_admin(frozen) -> Client:
    admin_user = StaffUserFactory(username="sysadmin", is_superuser=False)
    StaffMembership.objects.create(user=admin_user, role=Role.SYSTEM_ADMIN)
    device = TOTPDevice.objects.create(user=admin_user, name="TOTP", confirmed=True)
    client = client_from("198.51.100.1")
    log_in(client, "sysadmin")
    assert submit(client, VERIFY, current_code(device)).status_code == 302
    return client


def test_a_system_administrator_resets_a_lost_device(kaori, device, frozen):
    admin = _verified_admin(frozen)
    page = _reset_in_admin(admin, kaori).content.decode()
    assert "1 人の二段階認証をリセットしました。" in page
    assert not TOTPDevice.objects.filter(user=kaori).exists()
    entry = AuditEntry.objects.get(action=actions.OTP_RESET)
    assert entry.details == {"user_id": kaori.pk, "devices": 1} and entry.actor.username == "sysadmin"

    client = client_from("198.51.100.7")
    log_in(client, "kaori")
    assert client.get(client.get(ADMIN)["Location"])["Location"].startswith(SETUP)


def test_a_session_verified_with_a_reset_device_must_enrol_again(kaori, device, frozen):
    client = client_from("198.51.100.7")
    log_in(client, "kaori")
    submit(client, VERIFY, current_code(device))
    _reset_in_admin(_verified_admin(frozen), kaori)
    assert client.get(ADMIN)["Location"].startswith(VERIFY)


@pytest.mark.parametrize("role", [Role.DEPARTMENT_STAFF, Role.AUDITOR])
def test_other_roles_cannot_reset_a_device(kaori, device, settings, role):
    settings.STAFF_REQUIRE_2FA = False
    member = StaffUserFactory(username="member", is_superuser=False)
    StaffMembership.objects.create(user=member, role=role, department=Department.objects.create(name="環境課", code="env"))
    client = Client()
    client.force_login(member)
    _reset_in_admin(client, kaori)
    assert TOTPDevice.objects.filter(user=kaori).exists()
    assert not AuditEntry.objects.filter(action=actions.OTP_RESET).exists()


def test_django_otps_own_device_admin_is_not_offered(admin_client, settings):
    settings.STAFF_REQUIRE_2FA = False
    page = admin_client.get(ADMIN)
    assert page.status_code == 200 and "otp_totp" not in page.content.decode()
