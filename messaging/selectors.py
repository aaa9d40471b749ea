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


OUTBOX_UNSENT = (OutboxMessage.Status.PENDING, OutboxMessage.Status.SENDING)


def outbox_due(*, now: datetime) -> QuerySet[OutboxMessage]:
    """Rows that may be sent now: due, and no earlier row of the same resident is still unsent.

    A row left "sending" past its lease (a sender that died) is due again. Rows that are failed or
    "unknown" (waiting for staff) do not hold back the resident's later rows. `outbox_queue_of`
    with `outbox_row_is_due` reads the same for a few residents.
    """
    earlier_unsent = OutboxMessage.objects.filter(
        line_user_id=OuterRef("line_user_id"), id__lt=OuterRef("id"), status__in=OUTBOX_UNSENT
    )
    due = Q(status=OutboxMessage.Status.PENDING, next_attempt_at__lte=now) | Q(
        status=OutboxMessage.Status.SENDING, lease_until__lt=now
    )
    return OutboxMessage.objects.filter(due).filter(~Exists(earlier_unsent))


def outbox_due_exists(*, now: datetime) -> bool:
    return outbox_due(now=now).exists()


def outbox_queue_of(*, line_user_ids) -> QuerySet[OutboxMessage]:
    """The unsent rows of these residents in the order they go out: what `outbox_due` looks through."""
    return OutboxMessage.objects.filter(line_user_id__in=line_user_ids, status__in=OUTBOX_UNSENT).order_by("id")


def outbox_row_is_due(row: OutboxMessage, now: datetime) -> bool:
    """The row's own half of `outbox_due`: waiting and due, or "sending" past its lease."""
    if row.status == OutboxMessage.Status.PENDING:
        return row.next_attempt_at <= now
    return row.status == OutboxMessage.Status.SENDING and row.lease_until is not None and row.lease_until < now
