"""Reads for staff logins: second-factor devices and lockouts."""

from __future__ import annotations

from django_otp.plugins.otp_totp.models import TOTPDevice


def is_staff_account(user) -> bool:
    return bool(getattr(user, "is_authenticated", False) and (user.is_staff or user.is_superuser))


def needs_second_factor(user) -> bool:
    """A staff member logged in with the password who has not passed the one-time code yet."""
    is_verified = getattr(user, "is_verified", None)
    return is_staff_account(user) and not (is_verified is not None and is_verified())


def confirmed_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
