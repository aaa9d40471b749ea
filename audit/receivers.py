"""Logins, failed logins, lockouts and logouts go to the audit log (django.contrib.auth and django-axes signals)."""

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from audit import actions
from audit.services import MAX_ACTOR_DISPLAY, audit_record


@receiver(user_logged_in, dispatch_uid="audit.login")
def record_login(sender, request, user, **kwargs):
    audit_record(actor=user, action=actions.LOGIN, request=request)


@receiver(user_logged_out, dispatch_uid="audit.logout")
def record_logout(sender, request, user, **kwargs):
    if user is not None and user.is_authenticated:
        audit_record(actor=user, action=actions.LOGOUT, request=request)


@receiver(user_login_failed, dispatch_uid="audit.login_failed")
def record_login_failed(sender, credentials, request=None, **kwargs):
    """The name that was tried is kept; the password never is (Django already masks it in `credentials`)."""
    field = get_user_model().USERNAME_FIELD
    tried = credentials.get(field, credentials.get("username", "")) if isinstance(credentials, dict) else ""
    audit_record(
        actor=None,
        action=actions.LOGIN_FAILED,
        request=request,
        actor_display=str(tried or "")[:MAX_ACTOR_DISPLAY],
    )


@receiver(user_locked_out, dispatch_uid="audit.lockout")
def record_lockout(sender, request, username, **kwargs):
    """Sent when the failures reach the limit, and again for each attempt refused during the lockout."""
    audit_record(
        actor=None,
        action=actions.LOCKOUT,
        request=request,
        actor_display=str(username or "")[:MAX_ACTOR_DISPLAY],
    )
