"""Reads for the LINE channel."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from messaging.models import InboxEvent, OutboxMessage


def inbox_waiting_user_ids(*, received_before: datetime, limit: int = 500) -> list[str]:
    """Users with pending events that should have been picked up by now (the sweep wakes them)."""
    return list(
        InboxEvent.objects.filter(status=InboxEvent.Status.PENDING, received_at__lt=received_before)
        .exclude(line_user_id="")
        .order_by()
        .values_list("line_user_id", flat=True)
        .distinct()[:limit]
    )


def inbox_next_pending(*, line_user_id: str) -> QuerySet[InboxEvent]:
    """A resident's pending events, oldest first (LINE's timestamp, then arrival)."""
    return InboxEvent.objects.filter(line_user_id=line_user_id, status=InboxEvent.Status.PENDING).order_by(
        "line_timestamp", "id"
    )


def outbox_due(*, now: datetime) -> QuerySet[OutboxMessage]:
    """Rows that may be sent now: due, and no earlier row of the same resident is still unsent.

    A row left "sending" past its lease (a sender that died) is due again. Rows that are failed or
    "unknown" (waiting for staff) do not hold back the resident's later rows.
    """
    unsent = (OutboxMessage.Status.PENDING, OutboxMessage.Status.SENDING)
    earlier_unsent = OutboxMessage.objects.filter(
        line_user_id=OuterRef("line_user_id"), id__lt=OuterRef("id"), status__in=unsent
    )
    due = Q(status=OutboxMessage.Status.PENDING, next_attempt_at__lte=now) | Q(
        status=OutboxMessage.Status.SENDING, lease_until__lt=now
    )
    return OutboxMessage.objects.filter(due).filter(~Exists(earlier_unsent))


def outbox_due_exists(*, now: datetime) -> bool:
    return outbox_due(now=now).exists()
