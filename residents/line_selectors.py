"""Reads about residents that involve the LINE channel (messaging rows) or staff access.

Kept apart from the residents' other modules, which procedures may import: procedures must not
depend on messaging, not even indirectly (.importlinter, "procedures-without-channels").
"""

from __future__ import annotations

import re
from datetime import datetime

from django.db.models import Exists, F, Min, OuterRef, Q, QuerySet

from audit import actions as audit_actions
from audit.models import AuditEntry
from messaging.models import LineFollowEvent, LineUser, OutboxMessage
from procedures.models import Application
from residents.models import Resident
from staff import policy

# What a LINE user id looks like; anything else (a simulator run, an application entered by
# staff) cannot receive pushes nor have a LINE profile.
LINE_USER_ID = re.compile(r"^U[0-9a-f]{32}$")


def residents_with_stale_profile(*, refreshed_before: datetime) -> QuerySet[Resident]:
    """Real LINE residents whose profile was never fetched or is older than `refreshed_before`, oldest first.

    Residents who blocked the account are left out: LINE answers 404 for them.
    """
    blocked = LineUser.objects.filter(resident=OuterRef("pk"), is_following=False)
    return (
        Resident.objects.filter(is_simulated=False, line_user_id__regex=LINE_USER_ID.pattern)
        .filter(Q(profile_refreshed_at__isnull=True) | Q(profile_refreshed_at__lt=refreshed_before))
        .exclude(Exists(blocked))
        .order_by(F("profile_refreshed_at").asc(nulls_first=True), "pk")
    )


def resident_line_users(resident: Resident) -> QuerySet[LineUser]:
    return LineUser.objects.filter(resident=resident).order_by("pk")


def resident_follow_events(resident: Resident) -> QuerySet[LineFollowEvent]:
    """Follow / unfollow (block) history, newest first."""
    return LineFollowEvent.objects.filter(line_user__resident=resident).order_by("-occurred_at", "-pk")


def resident_first_followed_at(resident: Resident) -> datetime | None:
    return (
        resident_follow_events(resident)
        .filter(kind=LineFollowEvent.Kind.FOLLOW)
        .aggregate(first=Min("occurred_at"))["first"]
    )


def resident_is_blocking(resident: Resident) -> bool:
    """True when the resident has blocked the account (LINE refuses pushes to them)."""
    return (
        LineUser.objects.filter(Q(resident=resident) | Q(line_user_id=resident.line_user_id))
        .filter(is_following=False)
        .exists()
    )


def resident_outbox_messages(resident: Resident) -> QuerySet[OutboxMessage]:
    """Every message sent (or to be sent) to the resident, newest first."""
    return OutboxMessage.objects.filter(line_user_id=resident.line_user_id).order_by("-created_at", "-pk")


def resident_message_senders(resident: Resident, *, viewer) -> dict[int, str]:
    """Outbox row id -> the staff member who wrote it, for the personal messages sent from the admin.

    Only those written on behalf of a department `viewer` may view (all, for a city-wide viewer):
    who in another department wrote to the resident tells which office they deal with.
    """
    entries = AuditEntry.objects.filter(
        action=audit_actions.RESIDENT_MESSAGE, object_type=Resident._meta.label_lower, object_id=str(resident.pk)
    )
    if not policy.sees_all(viewer, Resident):
        entries = entries.filter(department__in=policy.departments_for(viewer, policy.VIEW))
    entries = entries.values_list("actor_display", "details")
    senders = {}
    for actor, details in entries:
        for outbox_id in (details or {}).get("outbox", []):
            senders[outbox_id] = actor
    return senders


def resident_applications(*, resident: Resident, viewer) -> QuerySet[Application]:
    """The resident's applications that `viewer` may view, newest first."""
    return (
        policy.applications_visible_to(viewer, action=policy.VIEW)
        .filter(resident=resident)
        .select_related("procedure", "status")
        .order_by("-submitted_at", "-pk")
    )


def resident_message_department_id(*, user, resident: Resident) -> int | None:
    """The department on whose behalf `user` writes to `resident` (for the audit log).

    None for a system administrator (city-wide); otherwise the department of the newest application
    of the resident that the user may process (see resident_message_allowed).
    """
    if policy.can(user, policy.ADMINISTER, resident):
        return None
    application = (
        policy.applications_visible_to(user, action=policy.PROCESS)
        .filter(resident=resident)
        .select_related("procedure")
        .order_by("-submitted_at", "-pk")
        .first()
    )
    return application.procedure.department_id if application is not None else None


def resident_message_allowed(*, user, resident: Resident) -> bool:
    """System administrators, and staff who may process one of the resident's applications."""
    return (
        policy.can(user, policy.ADMINISTER, resident)
        or policy.applications_visible_to(user, action=policy.PROCESS).filter(resident=resident).exists()
    )
