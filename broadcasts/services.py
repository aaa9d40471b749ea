"""Writes for composing and scheduling broadcasts (sending a run is broadcasts/sending.py).

draft --submit--> awaiting_approval --approve (a second staff member)--> scheduled
draft --submit (no approval needed)--------------------------------------> scheduled
scheduled --broadcast_runs_due (every minute)--> one BroadcastRun per occurrence
    one-time: the broadcast is then "sending"; repeating: "scheduled" until its last occurrence
draft / awaiting_approval / scheduled --cancel--> cancelled (runs not started yet are cancelled too)
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django_q.tasks import async_task

from audit import actions
from audit.services import audit_record
from broadcasts import schedule
from broadcasts.compose import ComposeError, message_errors, messages_errors
from broadcasts.compose import line_messages as render_line_messages
from broadcasts.models import BROADCAST_MAX_MESSAGES, RETURNED_REASON_MAX, Broadcast, BroadcastRun
from residents.models import Segment
from staff import policy

PREPARE_TASK = "broadcasts.tasks.broadcast_run_prepare_task"
# A send time a little in the past still means "now" (the form was filled in a minute ago).
PAST_SEND_AT_GRACE = timedelta(minutes=5)
CANCELLABLE = (Broadcast.Status.DRAFT, Broadcast.Status.AWAITING_APPROVAL, Broadcast.Status.SCHEDULED)
RETURNABLE = (Broadcast.Status.AWAITING_APPROVAL, Broadcast.Status.SCHEDULED)


class BroadcastRefused(Exception):
    """A broadcast write that is not possible as asked; `messages` say why, for staff."""

    def __init__(self, messages: list[str]):
        super().__init__("\n".join(messages))
        self.messages = messages


def _locked(broadcast_id: int) -> Broadcast:
    return Broadcast.objects.select_for_update().get(pk=broadcast_id)


def _locked_with_active_runs(broadcast_id: int) -> tuple[Broadcast, list[BroadcastRun]]:
    """The broadcast and its pending or sending runs, locked runs first.

    The run preparer and settler (broadcasts/sending.py) lock a run, then its broadcast; taking
    them in the same order here means the two never deadlock. A preparer starting a run is waited
    for, so the statuses read here are the ones it committed.
    """
    runs = list(
        BroadcastRun.objects.select_for_update()
        .filter(broadcast_id=broadcast_id, status__in=[BroadcastRun.Status.PENDING, BroadcastRun.Status.SENDING])
        .order_by("pk")
    )
    return _locked(broadcast_id), runs


def _cancel_unstarted(runs: list[BroadcastRun]) -> int:
    unstarted = [run.pk for run in runs if run.status == BroadcastRun.Status.PENDING and run.started_at is None]
    return BroadcastRun.objects.filter(pk__in=unstarted).update(status=BroadcastRun.Status.CANCELLED)


def _require(user, action: str, broadcast: Broadcast) -> None:
    if not policy.can(user, action, broadcast):
        raise BroadcastRefused([_("この一斉配信を操作する権限がありません。")])


# --------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------


def excluded_dates(broadcast: Broadcast) -> frozenset[date]:
    return frozenset(date.fromisoformat(value) for value in broadcast.excluded_dates or [])


def broadcast_rule(broadcast: Broadcast, *, start: datetime) -> schedule.Rule:
    return schedule.Rule(
        start=start,
        recurrence=broadcast.recurrence,
        weekdays=tuple(broadcast.recurrence_weekdays or ()),
        until=broadcast.recurrence_until,
        excluded=excluded_dates(broadcast),
    )


def _is_repeating(broadcast: Broadcast) -> bool:
    return broadcast.recurrence != Broadcast.Recurrence.NONE


def _first_run_at(broadcast: Broadcast, *, now: datetime) -> datetime | None:
    """When the broadcast first goes out if scheduled now (a one-time one whose time has passed: now)."""
    if not _is_repeating(broadcast):
        return max(broadcast.send_at or now, now)
    return schedule.first_occurrence(broadcast_rule(broadcast, start=broadcast.send_at), not_before=now)


def schedule_errors(broadcast: Broadcast, *, now: datetime) -> list[str]:
    errors = []
    repeating = _is_repeating(broadcast)
    if repeating and broadcast.send_at is None:
        errors.append(_("繰り返す配信は、最初の配信日時を入力してください。"))
    if not repeating and broadcast.send_at is not None and broadcast.send_at < now - PAST_SEND_AT_GRACE:
        errors.append(_("配信日時が過ぎています。空欄にするとすぐに配信します。"))
    if broadcast.recurrence == Broadcast.Recurrence.WEEKLY and not broadcast.recurrence_weekdays:
        errors.append(_("毎週の配信は、曜日を選んでください。"))
    if broadcast.send_at is not None and broadcast.recurrence_until is not None:
        if broadcast.recurrence_until < timezone.localtime(broadcast.send_at, schedule.TOKYO).date():
            errors.append(_("繰り返しの終了日が最初の配信日より前です。"))
    if not errors and _first_run_at(broadcast, now=now) is None:
        errors.append(_("この条件では配信する日がありません（配信しない日・終了日を確認してください）。"))
    return errors


# --------------------------------------------------------------------------
# Audience
# --------------------------------------------------------------------------


def segments_for(user):
    """Segments a user may send to: those they may view (their departments' and the city-wide ones)."""
    return policy.scope(user, policy.VIEW, Segment.objects.all())


def audience_errors(broadcast: Broadcast, *, user) -> list[str]:
    errors = []
    audience = broadcast.audience
    if audience == Broadcast.Audience.SEGMENT:
        if broadcast.segment_id is None:
            errors.append(_("配信先のセグメントを選んでください。"))
        elif not segments_for(user).filter(pk=broadcast.segment_id).exists():
            errors.append(_("このセグメントには配信できません（ほかの部署のセグメントです）。"))
    elif broadcast.segment_id is not None:
        errors.append(_("セグメントは、配信先が「セグメント」のときだけ選べます。"))
    if audience == Broadcast.Audience.CATEGORY and broadcast.category_id is None:
        errors.append(_("配信先の受信カテゴリを選んでください。"))
    return errors


# --------------------------------------------------------------------------
# Composing
# --------------------------------------------------------------------------


@transaction.atomic
def broadcast_messages_update(*, broadcast_id: int, messages: list[dict], user) -> Broadcast:
    """Replace a draft's messages (each must be valid; at most BROADCAST_MAX_MESSAGES)."""
    broadcast = _locked(broadcast_id)
    _require(user, policy.CHANGE, broadcast)
    if broadcast.status != Broadcast.Status.DRAFT:
        raise BroadcastRefused([_("下書きの一斉配信だけ、メッセージを変更できます。")])
    if len(messages) > BROADCAST_MAX_MESSAGES:
        raise BroadcastRefused([_("メッセージは%(most)s個までです。") % {"most": BROADCAST_MAX_MESSAGES}])
    errors = [error for message in messages for error in message_errors(message)]
    if errors:
        raise BroadcastRefused(errors)
    broadcast.messages = messages
    broadcast.save(update_fields=["messages", "updated_at"])
    return broadcast


def approval_required_by_department(broadcast: Broadcast) -> bool:
    """Whether the broadcast's department has every broadcast approved (set by system administrators)."""
    return broadcast.department is not None and broadcast.department.broadcasts_need_approval


@transaction.atomic
def broadcast_submit(*, broadcast_id: int, user, now: datetime | None = None, request=None) -> Broadcast:
    """Check a draft and schedule it, or hand it to a second staff member for approval."""
    now = now or timezone.now()
    broadcast = _locked(broadcast_id)
    _require(user, policy.CHANGE, broadcast)
    if broadcast.status != Broadcast.Status.DRAFT:
        raise BroadcastRefused([_("下書きの一斉配信だけ、配信の手続きができます。")])
    errors = (
        ([] if broadcast.title.strip() else [_("件名を入力してください。")])
        + messages_errors(broadcast.messages)
        + audience_errors(broadcast, user=user)
        + schedule_errors(broadcast, now=now)
    )
    if errors:
        raise BroadcastRefused(errors)
    broadcast.approved_by = None
    broadcast.approved_at = None
    broadcast.refused_reason = ""
    broadcast.returned_reason = ""
    broadcast.segment_rules = broadcast.segment.rules if broadcast.audience == Broadcast.Audience.SEGMENT else None
    if approval_required_by_department(broadcast):
        broadcast.requires_approval = True  # the department's rule, whatever the draft says
    if broadcast.requires_approval:
        broadcast.status = Broadcast.Status.AWAITING_APPROVAL
        broadcast.next_run_at = None
    else:
        broadcast.status = Broadcast.Status.SCHEDULED
        broadcast.next_run_at = _first_run_at(broadcast, now=now)
    broadcast.save()
    audit_record(
        actor=user,
        action=actions.BROADCAST_SUBMIT,
        obj=broadcast,
        details={"status": broadcast.status, "emergency": broadcast.is_emergency, "audience": broadcast.audience},
        request=request,
    )
    return broadcast


@transaction.atomic
def broadcast_approve(
    *, broadcast_id: int, user, seen_updated_at: datetime | None, now: datetime | None = None, request=None
) -> Broadcast:
    """A second staff member (change permission in the broadcast's department) approves it.

    `seen_updated_at` is the broadcast's `updated_at` on the page the approver read: withdrawn,
    changed and submitted again since, it is not what they saw, and they are asked to read it again.
    """
    now = now or timezone.now()
    broadcast = _locked(broadcast_id)
    _require(user, policy.CHANGE, broadcast)
    if broadcast.status != Broadcast.Status.AWAITING_APPROVAL:
        raise BroadcastRefused([_("承認待ちの一斉配信ではありません。")])
    if broadcast.created_by_id is not None and broadcast.created_by_id == user.pk:
        raise BroadcastRefused([_("自分で作成した一斉配信は承認できません。ほかの職員に承認を依頼してください。")])
    if seen_updated_at != broadcast.updated_at:
        raise BroadcastRefused(
            [_("表示した後にこの一斉配信が変更されました。最新の内容を確かめてから、もう一度承認してください。")]
        )
    errors = audience_errors(broadcast, user=user)
    if _is_repeating(broadcast):
        errors += schedule_errors(broadcast, now=now)
    if errors:
        raise BroadcastRefused(errors)
    broadcast.approved_by = user
    broadcast.approved_at = now
    broadcast.status = Broadcast.Status.SCHEDULED
    broadcast.next_run_at = _first_run_at(broadcast, now=now)
    broadcast.save()
    audit_record(actor=user, action=actions.BROADCAST_APPROVE, obj=broadcast, request=request)
    return broadcast


@transaction.atomic
def broadcast_cancel(*, broadcast_id: int, user, request=None) -> Broadcast:
    """Stop a broadcast before it is sent, and every future occurrence of a repeating one.

    Runs that have not started yet are cancelled too; a run already sending goes on.
    """
    broadcast, runs = _locked_with_active_runs(broadcast_id)
    _require(user, policy.CHANGE, broadcast)
    if broadcast.status not in CANCELLABLE:
        raise BroadcastRefused([_("送信を始めた、または終わった一斉配信は取り消せません。")])
    previous = broadcast.status
    broadcast.status = Broadcast.Status.CANCELLED
    broadcast.next_run_at = None
    broadcast.save(update_fields=["status", "next_run_at", "updated_at"])
    cancelled_runs = _cancel_unstarted(runs)
    audit_record(
        actor=user,
        action=actions.BROADCAST_CANCEL,
        obj=broadcast,
        details={"previous_status": previous, "cancelled_runs": cancelled_runs},
        request=request,
    )
    return broadcast


@transaction.atomic
def broadcast_return_to_draft(*, broadcast_id: int, user, reason: str = "", request=None) -> Broadcast:
    """Send a broadcast awaiting approval or scheduled back to draft, to be corrected and submitted again.

    The approver's 差し戻し (with the reason shown to the author), or the author withdrawing it.
    Its approval is dropped and runs not started yet are cancelled; once a run is sending, it is
    too late (cancel stops the later occurrences of a repeating one).
    """
    broadcast, runs = _locked_with_active_runs(broadcast_id)
    _require(user, policy.CHANGE, broadcast)
    if broadcast.status not in RETURNABLE:
        raise BroadcastRefused([_("承認待ちまたは配信予約済みの一斉配信だけ、下書きに戻せます。")])
    # Read again under the broadcast's lock: a run the preparer started after `runs` were read
    # (created by the scheduler meanwhile) is sending now, and none can start while we hold it.
    if broadcast.runs.filter(status=BroadcastRun.Status.SENDING).exists():
        raise BroadcastRefused([_("配信中のため下書きに戻せません。配信が終わってから操作してください。")])
    reason = (reason or "").strip()
    if len(reason) > RETURNED_REASON_MAX:
        raise BroadcastRefused(
            [_("差し戻しの理由は%(most)s文字以内で入力してください。") % {"most": RETURNED_REASON_MAX}]
        )
    previous = broadcast.status
    broadcast.status = Broadcast.Status.DRAFT
    broadcast.next_run_at = None
    broadcast.approved_by = None
    broadcast.approved_at = None
    broadcast.returned_reason = reason
    broadcast.refused_reason = ""
    broadcast.save()
    cancelled_runs = _cancel_unstarted(runs)
    audit_record(
        actor=user,
        action=actions.BROADCAST_RETURN,
        obj=broadcast,
        details={"previous_status": previous, "cancelled_runs": cancelled_runs, "with_reason": bool(reason)},
        request=request,
    )
    return broadcast


# --------------------------------------------------------------------------
# Due occurrences -> runs (every minute, broadcasts.tasks.broadcast_runs_due_task)
# --------------------------------------------------------------------------


def _enqueue_prepare(run_id: int) -> None:
    async_task(PREPARE_TASK, run_id)


def _advance(broadcast: Broadcast, *, occurrence: datetime, now: datetime) -> None:
    """Move the broadcast past `occurrence`; a worker that was down does not send missed ones in a burst."""
    upcoming = None
    if _is_repeating(broadcast):
        rule = broadcast_rule(broadcast, start=broadcast.send_at or occurrence)
        upcoming = schedule.next_occurrence(rule, after=max(occurrence, now))
    broadcast.next_run_at = upcoming
    if upcoming is None:
        broadcast.status = Broadcast.Status.SENDING


def _create_next_due_run(*, now: datetime) -> tuple[bool, BroadcastRun | None]:
    """Claim one due broadcast and create its run; (False, None) when none is left."""
    with transaction.atomic():
        broadcast = (
            Broadcast.objects.select_for_update(skip_locked=True)
            .filter(status=Broadcast.Status.SCHEDULED, next_run_at__lte=now)
            .order_by("next_run_at", "pk")
            .first()
        )
        if broadcast is None:
            return False, None
        occurrence = broadcast.next_run_at
        try:
            frozen = render_line_messages(broadcast.messages)
        except ComposeError as error:  # e.g. an image deleted from the storage since it was checked
            broadcast.status = Broadcast.Status.REFUSED
            broadcast.refused_reason = "\n".join(error.errors)
            broadcast.next_run_at = None
            broadcast.save(update_fields=["status", "refused_reason", "next_run_at", "updated_at"])
            return True, None
        run, created = BroadcastRun.objects.get_or_create(
            broadcast=broadcast, scheduled_for=occurrence, defaults={"line_messages": frozen}
        )
        _advance(broadcast, occurrence=occurrence, now=now)
        broadcast.save(update_fields=["next_run_at", "status", "updated_at"])
        if not created:
            return True, None
        transaction.on_commit(lambda: _enqueue_prepare(run.pk), robust=True)
        return True, run


def broadcast_runs_due(*, now: datetime) -> list[int]:
    """Create the run of every due occurrence (once each, even with workers running this at the same time).

    Each broadcast is claimed in its own short transaction (skip_locked: a broadcast another worker
    holds is left to it); the unique (broadcast, scheduled_for) makes a repeated occurrence a no-op.
    Returns the ids of the runs created, each handed to the preparing task after its commit.
    """
    created = []
    while True:
        claimed, run = _create_next_due_run(now=now)
        if not claimed:
            return created
        if run is not None:
            created.append(run.pk)
