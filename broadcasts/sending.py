"""Sending a broadcast run: its recipients frozen into chunks, each chunk one multicast with its own retry key.

    broadcast_run_prepare (task broadcast_run_prepare_task, queued when a run is created):
        the audience's residents, less those who blocked the account and (unless it is an
        emergency) those whose receive settings leave the broadcast's category out
        -> LINE's monthly quota (the whole run is refused when it does not fit)
        -> chunks of at most 500 LINE user ids, in ONE transaction --on commit--> the chunk sender
    broadcast_chunks_send (task send_broadcast_chunks, or `manage.py broadcast_worker`): claims one due
        chunk at a time (FOR UPDATE SKIP LOCKED, a lease, committed before the call), takes a turn
        from LINE's multicast rate limit (messaging/ratelimit.py), multicasts with the chunk's retry
        key and records the outcome with the run's counts; the last chunk to settle finishes the run.
    broadcast_sweep (every minute, migration 0006_sending_sweep_schedule): prepares runs whose wake-up
        was lost or whose quota could not be read, and wakes the sender for chunks due again.

Exactly once: a chunk's recipients and retry key never change. A sender killed during the call leaves
its chunk "sending" until the lease runs out; then another sender sends the same request again and LINE,
if it had accepted the first, answers 409 (counted as sent). So nobody gets a run twice, and everybody
gets it as long as attempts remain.

Logs carry ids and counts, never LINE user ids nor texts.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.tasks import async_task

from broadcasts import selectors
from broadcasts.models import MULTICAST_MAX_RECIPIENTS, Broadcast, BroadcastChunk, BroadcastRun
from messaging import ratelimit
from messaging.line import retry
from messaging.line.client import LineClient, SendResult
from messaging.models import LineChannelSettings, LineUser
from messaging.services import RETRY_KEY_WINDOW
from residents.models import Resident, ResidentCategory
from residents.segments import InvalidSegmentRules, segment_residents

logger = logging.getLogger(__name__)

CHUNK_LEASE = timedelta(minutes=2)  # > one multicast call, bounded by the client's time-out
CHUNK_MAX_ATTEMPTS = 10
CLAIM_CANDIDATES = 5  # due chunks looked at per claim when other senders take some first
PREPARE_GRACE = timedelta(seconds=30)  # a new run's own wake-up is probably on its way


def wake_preparer(run_id: int) -> None:
    async_task("broadcasts.tasks.broadcast_run_prepare_task", run_id)


def wake_sender() -> None:
    async_task("broadcasts.tasks.send_broadcast_chunks")


# --------------------------------------------------------------------------
# Recipients
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipients:
    line_user_ids: list[str]
    skipped_blocked: int
    skipped_opted_out: int


def _audience(broadcast: Broadcast) -> QuerySet[Resident]:
    if broadcast.audience == Broadcast.Audience.SEGMENT:
        if broadcast.segment is None:
            raise InvalidSegmentRules([_("セグメントが選ばれていません。")])
        # The rules as submitted (and approved), not as the segment reads now.
        return segment_residents(broadcast.segment_rules if broadcast.segment_rules is not None else broadcast.segment)
    return Resident.objects.all()


def broadcast_recipients(broadcast: Broadcast) -> Recipients:
    """Who the broadcast reaches now, and how many of its audience are left out and why.

    The audience is every resident known to the channel (linked to a LINE user), or a segment's
    residents; "category" is everyone, for the broadcast's topic. From the audience, residents who
    blocked the account are skipped (counted first: they receive nothing at all), then – unless the
    broadcast is an emergency – residents whose receive settings leave the broadcast's category out.
    A resident who never made receive settings receives every category. Simulated residents are
    recipients like any other: the simulator reads what the fake LINE delivered to them.
    """
    residents = _audience(broadcast).filter(Exists(LineUser.objects.filter(resident=OuterRef("pk"))))
    following = Exists(LineUser.objects.filter(resident=OuterRef("pk"), is_following=True))
    skipped_blocked = residents.exclude(following).count()
    residents = residents.filter(following)
    skipped_opted_out = 0
    if broadcast.category_id is not None and not broadcast.is_emergency:
        chose = ResidentCategory.objects.filter(resident=OuterRef("pk"), category_id=broadcast.category_id)
        receives = Q(receive_settings_at__isnull=True) | Q(Exists(chose))
        skipped_opted_out = residents.exclude(receives).count()
        residents = residents.filter(receives)
    line_user_ids = list(residents.order_by("pk").values_list("line_user_id", flat=True))
    return Recipients(line_user_ids, skipped_blocked, skipped_opted_out)


# --------------------------------------------------------------------------
# Preparing a run
# --------------------------------------------------------------------------


class QuotaUnreadable(Exception):
    """LINE did not tell this month's quota (retried by the sweep)."""


def _quota_remaining() -> int | None:
    """This month's messages LINE has left for the channel (None: no limit)."""
    with LineClient() as line:
        quota = line.quota()
    if not quota.result.ok:
        raise QuotaUnreadable(retry.describe(quota.result))
    return quota.remaining


def _quota_shortfall(run_id: int, count: int, line_remaining: int | None) -> str:
    """ "" when LINE's monthly quota leaves room for `count` more messages, else why not (for people).

    LINE counts a multicast as one message per recipient, whatever the number of messages in it.
    Chunks of other runs still waiting to be sent will draw on the same quota.
    """
    if line_remaining is None:
        return ""
    remaining = max(line_remaining - selectors.recipients_queued(other_than_run_id=run_id), 0)
    if count <= remaining:
        return ""
    return _(
        "今月の LINE のメッセージ送信数の上限を超えるため、配信しませんでした"
        "（配信対象 %(count)s 人、今月の残り %(remaining)s 通）。"
        "LINE Official Account Manager で上限を見直すか、配信先を絞ってください。"
    ) % {"count": f"{count:,}", "remaining": f"{remaining:,}"}


def broadcast_run_prepare(*, run_id: int, now=None) -> str:
    """Freeze a pending run's recipients into chunks and wake the sender; returns the run's status.

    Idempotent: a run that is no longer pending (prepared already, refused, cancelled) is left alone,
    so a repeated task or the sweep never writes a second set of chunks. When LINE's quota cannot be
    read, the run stays pending and the sweep tries again.
    """
    now = now or timezone.now()
    run = BroadcastRun.objects.select_related("broadcast__segment").get(pk=run_id)
    if run.status != BroadcastRun.Status.PENDING:
        return run.status
    try:
        recipients = broadcast_recipients(run.broadcast)
    except InvalidSegmentRules as error:
        reason = _("セグメントの条件に誤りがあるため、配信しませんでした（%(problems)s）。") % {
            "problems": "; ".join(error.problems)
        }
        return _run_refuse(run_id, reason, now)
    count = len(recipients.line_user_ids)
    line_remaining = None
    if count:
        try:
            line_remaining = _quota_remaining()
        except QuotaUnreadable as error:
            logger.warning("broadcast run %s: LINE's quota could not be read (%s); retried by the sweep", run_id, error)
            return run.status
        shortfall = _quota_shortfall(run_id, count, line_remaining)
        if shortfall:
            return _run_refuse(run_id, shortfall, now)
    return _run_start(run_id, recipients, now, line_remaining)


def _locked_pending_run(run_id: int) -> BroadcastRun | None:
    """The run, locked with its broadcast, when it is still to be started (else None).

    Staff who cancel a broadcast or send it back to draft cancel its runs not started yet, but a
    run the scheduler was creating at that moment was not committed when they looked: it is
    cancelled here instead, where the broadcast's status is read under its lock.
    """
    run = BroadcastRun.objects.select_for_update().select_related("broadcast").get(pk=run_id)
    if run.status != BroadcastRun.Status.PENDING or run.chunks.exists():
        return None  # another preparer got here first
    if run.broadcast.status not in (Broadcast.Status.SCHEDULED, Broadcast.Status.SENDING):
        run.status = BroadcastRun.Status.CANCELLED
        run.save(update_fields=["status"])
        logger.info("broadcast run %s cancelled: its broadcast is %s", run.pk, run.broadcast.status)
        return None
    return run


@transaction.atomic
def _run_start(run_id: int, recipients: Recipients, now, line_remaining: int | None = None) -> str:
    run = _locked_pending_run(run_id)
    if run is None:
        return BroadcastRun.objects.get(pk=run_id).status
    ids = recipients.line_user_ids
    if ids and line_remaining is not None:
        # Runs starting at once take turns on the channel's row: each counts the chunks the others
        # queued before it, so two that fit the quota apart are not both started when they do not
        # fit together (LINE would refuse the later chunks, a partial send in resident-id order).
        LineChannelSettings.objects.select_for_update().get(pk=LineChannelSettings.load().pk)
        shortfall = _quota_shortfall(run_id, len(ids), line_remaining)
        if shortfall:
            return _run_refused(run, shortfall, now)
    BroadcastChunk.objects.bulk_create(
        BroadcastChunk(
            run=run,
            position=position,
            line_user_ids=ids[start : start + MULTICAST_MAX_RECIPIENTS],
            recipient_count=len(ids[start : start + MULTICAST_MAX_RECIPIENTS]),
            next_attempt_at=now,
        )
        for position, start in enumerate(range(0, len(ids), MULTICAST_MAX_RECIPIENTS))
    )
    run.status = BroadcastRun.Status.SENDING
    run.recipients_total = len(ids)
    run.skipped_blocked = recipients.skipped_blocked
    run.skipped_opted_out = recipients.skipped_opted_out
    run.started_at = now
    run.save(update_fields=["status", "recipients_total", "skipped_blocked", "skipped_opted_out", "started_at"])
    logger.info(
        "broadcast run %s: %d recipient(s) in %d chunk(s); skipped %d blocked, %d opted out",
        run.pk,
        len(ids),
        -(-len(ids) // MULTICAST_MAX_RECIPIENTS),
        recipients.skipped_blocked,
        recipients.skipped_opted_out,
    )
    if ids:
        transaction.on_commit(wake_sender, robust=True)
    else:
        _run_settle(run.pk, now)  # nobody to send to: done at once
    return BroadcastRun.Status.SENDING if ids else BroadcastRun.Status.DONE


@transaction.atomic
def _run_refuse(run_id: int, reason: str, now) -> str:
    run = _locked_pending_run(run_id)
    if run is None:
        return BroadcastRun.objects.get(pk=run_id).status
    return _run_refused(run, reason, now)


def _run_refused(run: BroadcastRun, reason: str, now) -> str:
    run.status = BroadcastRun.Status.REFUSED
    run.refused_reason = reason
    run.finished_at = now
    run.save(update_fields=["status", "refused_reason", "finished_at"])
    _broadcast_after_run(run, refused_reason=reason)
    logger.warning("broadcast run %s refused (quota or segment)", run.pk)
    return run.status


def _broadcast_after_run(run: BroadcastRun, *, refused_reason: str = "") -> None:
    """Record how the run ended on its broadcast.

    The scheduler (broadcasts/services.py) leaves a repeating broadcast "scheduled" while occurrences
    remain and makes it "sending" with its last (or only) run: that one ends it as sent, or refused
    (also when LINE took none of its chunks). A broadcast cancelled meanwhile keeps its status.
    """
    if not refused_reason and run.failed and not run.delivered:
        # Every chunk failed for good (an expired access token, LINE refusing the messages): not "sent".
        refused_reason = _(
            "LINE が配信を受け付けませんでした（%(failed)s 人分）。「配信の実行」で LINE の応答を確かめてください。"
        ) % {"failed": f"{run.failed:,}"}
    # Locked and read afresh: a cancel or the scheduler may have changed it since the run was read.
    broadcast = Broadcast.objects.select_for_update().get(pk=run.broadcast_id)
    if broadcast.status not in (Broadcast.Status.SCHEDULED, Broadcast.Status.SENDING):
        return
    others = broadcast.runs.exclude(pk=run.pk).filter(
        status__in=[BroadcastRun.Status.PENDING, BroadcastRun.Status.SENDING]
    )
    if broadcast.status == Broadcast.Status.SENDING and not others.exists():
        broadcast.status = Broadcast.Status.REFUSED if refused_reason else Broadcast.Status.SENT
    broadcast.refused_reason = refused_reason
    broadcast.save(update_fields=["status", "refused_reason", "updated_at"])


def _run_settle(run_id: int, now) -> None:
    """Recount a run from its chunks (call inside a transaction); finish it when no chunk is left to send."""
    run = BroadcastRun.objects.select_for_update().select_related("broadcast").get(pk=run_id)
    totals = selectors.run_recipient_totals(run_id)
    run.delivered = totals.get(BroadcastChunk.Status.SENT, 0)
    run.failed = totals.get(BroadcastChunk.Status.FAILED, 0)
    fields = ["delivered", "failed"]
    if run.status == BroadcastRun.Status.SENDING and not selectors.run_unsettled(run_id):
        run.status = BroadcastRun.Status.DONE
        run.finished_at = now
        fields += ["status", "finished_at"]
        _broadcast_after_run(run)
        logger.info("broadcast run %s done: %d delivered, %d failed", run.pk, run.delivered, run.failed)
    run.save(update_fields=fields)


# --------------------------------------------------------------------------
# Sending chunks
# --------------------------------------------------------------------------


@dataclass
class ChunkSendRun:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    deferred: int = 0  # put back until LINE's rate limit allows the call
    lost: int = 0  # the lease ran out and another sender took the chunk over


def broadcast_chunks_send(*, now=None, budget_seconds: float = 60, lease: timedelta = CHUNK_LEASE) -> ChunkSendRun:
    """Send due chunks, one at a time, until none is due or the time budget is spent.

    What is left (a back-off, the rate limit, the budget) is sent by the next run or the sweep. An
    unexpected exception while sending a chunk is that chunk's failed attempt; the run goes on.
    """
    clock = (lambda: now) if now is not None else timezone.now
    deadline = time.monotonic() + budget_seconds
    outcomes = ChunkSendRun()
    with LineClient() as line:
        while time.monotonic() < deadline:
            chunk = _chunk_claim(clock(), lease)
            if chunk is None:
                break
            try:
                outcome = _chunk_deliver(line, chunk, clock())
            except Exception as error:
                outcome = _chunk_crashed(chunk, error, clock())
            setattr(outcomes, outcome, getattr(outcomes, outcome) + 1)
            if outcome == "deferred":
                break  # LINE's limit is used up for now: the next run sends the rest
    return outcomes


def _chunk_claim(now, lease: timedelta) -> BroadcastChunk | None:
    """Take one due chunk: status sending, a new claim token and lease (committed before any call).

    The claim is also a compare-and-set on the chunk's previous status and token, so two senders
    never hold one chunk even where the database cannot skip locked rows (SQLite). A chunk that has
    used up its attempts (its senders kept dying) is settled as failed instead.
    """
    with transaction.atomic():
        candidates = selectors.chunks_due(now=now).select_for_update(skip_locked=True, of=("self",))
        for chunk in candidates[:CLAIM_CANDIDATES]:
            taken = BroadcastChunk.objects.filter(pk=chunk.pk, status=chunk.status, claim_token=chunk.claim_token)
            if chunk.attempts >= CHUNK_MAX_ATTEMPTS:
                error = f"gave up after {chunk.attempts} attempts: {chunk.last_error or 'interrupted'}"[:2000]
                if taken.update(
                    status=BroadcastChunk.Status.FAILED, last_error=error, claim_token=None, lease_until=None
                ):
                    _run_settle(chunk.run_id, now)
                    logger.error("broadcast chunk %s failed for good: no attempts left", chunk.pk)
                continue
            claim = {
                "status": BroadcastChunk.Status.SENDING,
                "claim_token": uuid.uuid4(),
                "lease_until": now + lease,
                "attempts": chunk.attempts + 1,
            }
            if taken.update(**claim):
                for name, value in claim.items():
                    setattr(chunk, name, value)
                return chunk
    return None


def _chunk_settle(chunk: BroadcastChunk, now, **fields) -> bool:
    """Record the outcome of a chunk this sender still holds, and recount its run; False if the claim was lost."""
    with transaction.atomic():
        updated = BroadcastChunk.objects.filter(
            pk=chunk.pk, claim_token=chunk.claim_token, status=BroadcastChunk.Status.SENDING
        ).update(claim_token=None, lease_until=None, **fields)
        if not updated:
            logger.warning("broadcast chunk %s: the claim was lost before the outcome was recorded", chunk.pk)
            return False
        if fields.get("status") in (BroadcastChunk.Status.SENT, BroadcastChunk.Status.FAILED):
            _run_settle(chunk.run_id, now)
    return True


def _chunk_sent(chunk: BroadcastChunk, result: SendResult, now) -> str:
    request_id = result.accepted_request_id if result.status == 409 else result.request_id
    if not _chunk_settle(
        chunk, now, status=BroadcastChunk.Status.SENT, sent_at=now, line_request_id=request_id or "", last_error=""
    ):
        return "lost"
    logger.info("broadcast chunk %s sent (status %s, attempt %d)", chunk.pk, result.status, chunk.attempts)
    return "sent"


def _chunk_failed(chunk: BroadcastChunk, error: str, now, *, result: SendResult | None = None) -> str:
    request_id = result.request_id if result is not None else ""
    if not _chunk_settle(
        chunk, now, status=BroadcastChunk.Status.FAILED, last_error=error[:2000], line_request_id=request_id
    ):
        return "lost"
    logger.error(
        "broadcast chunk %s failed for good (status %s)", chunk.pk, result.status if result is not None else None
    )
    return "failed"


def _chunk_retry(chunk: BroadcastChunk, error: str, now, *, result: SendResult | None = None) -> str:
    if chunk.attempts >= CHUNK_MAX_ATTEMPTS:
        return _chunk_failed(chunk, f"gave up after {chunk.attempts} attempts: {error}", now, result=result)
    next_attempt_at = now + retry.delay(chunk.attempts, result)
    if not _chunk_settle(
        chunk, now, status=BroadcastChunk.Status.PENDING, next_attempt_at=next_attempt_at, last_error=error[:2000]
    ):
        return "lost"
    status = result.status if result is not None else None
    logger.warning("broadcast chunk %s will be retried (status %s, attempt %d)", chunk.pk, status, chunk.attempts)
    return "retrying"


def _chunk_deliver(line: LineClient, chunk: BroadcastChunk, now) -> str:
    run = BroadcastRun.objects.only("line_messages", "started_at").get(pk=chunk.run_id)
    if run.started_at is not None and now - run.started_at > RETRY_KEY_WINDOW:
        # LINE forgets a retry key after 24 hours: sending now could deliver a second time.
        return _chunk_failed(
            chunk, _("LINE のリトライキーの有効期間（24時間）内に送信できなかったため、送信しませんでした。"), now
        )
    next_attempt_at = ratelimit.retry_at(ratelimit.MULTICAST, now)
    if next_attempt_at is not None:
        # Not an attempt: LINE was not called.
        if not _chunk_settle(
            chunk,
            now,
            status=BroadcastChunk.Status.PENDING,
            next_attempt_at=next_attempt_at,
            attempts=chunk.attempts - 1,
        ):
            return "lost"
        logger.info("broadcast chunk %s deferred by the multicast rate limit until %s", chunk.pk, next_attempt_at)
        return "deferred"
    result = line.multicast(chunk.line_user_ids, run.line_messages, str(chunk.retry_key))
    if result.ok or result.status == 409:  # 409: LINE accepted this retry key before (a sender died mid-call)
        return _chunk_sent(chunk, result, now)
    if retry.retryable(result):
        return _chunk_retry(chunk, retry.describe(result), now, result=result)
    return _chunk_failed(chunk, retry.describe(result), now, result=result)


def _chunk_crashed(chunk: BroadcastChunk, error: Exception, now) -> str:
    """An exception the sender did not expect: a failed attempt, retried like a 5xx (its text is not kept)."""
    name = type(error).__name__
    trace = "".join(traceback.format_tb(error.__traceback__)).rstrip()
    logger.error("broadcast chunk %s: unexpected %s while sending\n%s", chunk.pk, name, trace)
    return _chunk_retry(chunk, f"unexpected error: {name}", now)


# --------------------------------------------------------------------------
# Sweep
# --------------------------------------------------------------------------


def broadcast_sweep(*, now=None) -> dict:
    """Wake what a lost wake-up, a back-off, an unreadable quota or a dead sender left waiting."""
    now = now or timezone.now()
    pending = list(
        BroadcastRun.objects.filter(
            status=BroadcastRun.Status.PENDING, scheduled_for__lte=now, created_at__lt=now - PREPARE_GRACE
        ).values_list("pk", flat=True)
    )
    for run_id in pending:
        wake_preparer(run_id)
    due = selectors.chunks_due(now=now).exists()
    if due:
        wake_sender()
    return {"runs": len(pending), "chunks_due": due}
