"""Writes for staff logins: the TOTP second factor, and a system administrator's unlock and reset.

A wrong one-time code is a failed login like a wrong password: it is sent as Django's
user_login_failed, so django-axes counts it towards the lockout and the audit log records it.
"""

from __future__ import annotations

import enum

import django_otp
from axes.utils import reset as axes_reset
from django.contrib.auth import logout
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit import actions
from audit.services import audit_record
from staff import policy


class CodeCheck(enum.Enum):
    PASSED = "passed"
    WRONG = "wrong"
    # django-otp slows down repeated wrong codes on a device (1 s, 2 s, 4 s…): even a right code waits.
    TOO_SOON = "too_soon"
    # The wrong codes (and passwords) reached the limit: the login is over, the person is logged out.
    LOCKED_OUT = "locked_out"


def _check_administrator(actor, user) -> None:
    if actor is not None and not policy.can(actor, policy.ADMINISTER, user):
        raise PermissionDenied


def _device_ready(device: TOTPDevice) -> bool:
    allowed, _details = device.verify_is_allowed()
    return allowed


@transaction.atomic
def otp_check(*, request, device: TOTPDevice, token: str) -> CodeCheck:
    """Check the one-time code of the logged-in user's confirmed device; mark the session verified."""
    if not _device_ready(device):
        return CodeCheck.TOO_SOON
    if device.verify_token(token):
        django_otp.login(request, device)
        return CodeCheck.PASSED
    user_login_failed.send(
        sender=__name__, credentials={"username": request.user.get_username()}, request=request
    )
    if getattr(request, "axes_locked_out", False):
        logout(request)
        return CodeCheck.LOCKED_OUT
    return CodeCheck.WRONG


@transaction.atomic
def otp_device_pending(*, user) -> TOTPDevice:
    """The device being enrolled: kept until confirmed, so reloading the page shows the same QR code."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="TOTP", confirmed=False)
    return device


@transaction.atomic
def otp_enrol(*, request, device: TOTPDevice, token: str) -> bool:
    """Confirm the device with a first code from the app. A wrong code here is no failed login:
    the person is looking at the key, so guessing would gain nothing."""
    device = TOTPDevice.objects.select_for_update().get(pk=device.pk, user=request.user, confirmed=False)
    if not device.verify_token(token):
        return False
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    TOTPDevice.objects.filter(user=request.user).exclude(pk=device.pk).delete()
    django_otp.login(request, device)
    audit_record(
        actor=request.user, action=actions.OTP_ENROL, obj=request.user, details={"user_id": request.user.pk},
        request=request,
    )
    return True


@transaction.atomic
def otp_reset(*, actor, user, request=None) -> int:
    """Remove the user's devices (a lost phone): the next login enrols a new one. Returns how many."""
    _check_administrator(actor, user)
    removed, _by_model = TOTPDevice.objects.filter(user=user).delete()
    audit_record(
        actor=actor, action=actions.OTP_RESET, obj=user, details={"user_id": user.pk, "devices": removed},
        request=request,
    )
    return removed


@transaction.atomic
def login_unlock(*, actor, user, request=None) -> int:
    """Clear the failed logins counted for the user's name, from every address. Returns how many were cleared."""
    _check_administrator(actor, user)
    cleared = axes_reset(username=user.get_username())
    audit_record(
        actor=actor, action=actions.LOGIN_UNLOCK, obj=user, details={"user_id": user.pk, "cleared": cleared},
        request=request,
    )
    return cleared
