"""Reads for sending broadcasts: chunks due, what is queued against LINE's quota, a run's progress."""

from __future__ import annotations

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from broadcasts.models import BroadcastChunk, BroadcastRun

UNSETTLED = (BroadcastChunk.Status.PENDING, BroadcastChunk.Status.SENDING)


def chunks_due(*, now) -> QuerySet[BroadcastChunk]:
    """Chunks of sending runs to send now: pending and due, or held by a sender whose lease ran out."""
    return BroadcastChunk.objects.filter(
        Q(status=BroadcastChunk.Status.PENDING, next_attempt_at__lte=now)
        | Q(status=BroadcastChunk.Status.SENDING, lease_until__lt=now),
        run__status=BroadcastRun.Status.SENDING,
    ).order_by("next_attempt_at", "pk")


def chunks_unsettled() -> QuerySet[BroadcastChunk]:
    """Chunks of sending runs still to be sent (now or later)."""
    return BroadcastChunk.objects.filter(status__in=UNSETTLED, run__status=BroadcastRun.Status.SENDING)


def recipients_queued(*, other_than_run_id: int) -> int:
    """Recipients of chunks not yet sent in other runs: LINE will count them against this month's quota."""
    queued = chunks_unsettled().exclude(run_id=other_than_run_id)
    return queued.aggregate(total=Sum("recipient_count"))["total"] or 0


def run_unsettled(run_id: int) -> bool:
    return BroadcastChunk.objects.filter(run_id=run_id, status__in=UNSETTLED).exists()


def run_recipient_totals(run_id: int) -> dict[str, int]:
    """Recipients per chunk status of one run."""
    rows = (
        BroadcastChunk.objects.filter(run_id=run_id)
        .values("status")
        .annotate(recipients=Sum("recipient_count"))
        .order_by()
    )
    return {row["status"]: row["recipients"] or 0 for row in rows}


def run_progress(run: BroadcastRun) -> dict:
    """What the run's progress bar shows: counts and every chunk (no recipient ids, no texts)."""
    run.refresh_from_db()
    settled = run.delivered + run.failed
    finished = run.status not in (BroadcastRun.Status.PENDING, BroadcastRun.Status.SENDING)
    chunks = [
        {
            "number": chunk.position + 1,
            "status": chunk.status,
            "status_label": str(chunk.get_status_display()),
            "recipients": chunk.recipient_count,
            "attempts": chunk.attempts,
            "last_error": chunk.last_error,
            "sent_at": timezone.localtime(chunk.sent_at).strftime("%Y-%m-%d %H:%M:%S") if chunk.sent_at else "",
        }
        for chunk in run.chunks.order_by("position").only(
            "position", "status", "recipient_count", "attempts", "last_error", "sent_at"
        )
    ]
    return {
        "status": run.status,
        "status_label": str(run.get_status_display()),
        "finished": finished,
        "total": run.recipients_total,
        "delivered": run.delivered,
        "failed": run.failed,
        "remaining": max(run.recipients_total - settled, 0),
        "skipped_blocked": run.skipped_blocked,
        "skipped_opted_out": run.skipped_opted_out,
        "percent": round(100 * settled / run.recipients_total) if run.recipients_total else 100 * finished,
        "refused_reason": run.refused_reason,
        "chunks": chunks,
    }
