"""Writes for the LINE channel: webhook inbox, ordered inbox workers, outbox sender, sweep.

    webhook --inbox_store--> InboxEvent (pending) --on commit--> process_user_inbox task
    inbox_process_user: claim the resident (LineUser row, FOR UPDATE SKIP LOCKED), then per event,
        in ONE transaction: parse, run the engine (procedures.services.conversation_handle),
        write OutboxMessage rows, mark the event done --on commit--> the same worker sends them
        (_outbox_send_written: one queue hop instead of two); the send_outbox task is queued for
        them only when that cannot finish (an error, out of time)
    outbox_send: claim due rows (FOR UPDATE SKIP LOCKED, in order per resident), reply while the
        token is fresh (at most once), otherwise push with the row's retry key.
        Every call first takes its turn from LINE's rate limit (messaging/ratelimit.py); a row
        over the limit is put back until the next window, without waiting.
        A reply has no retry key, so a reply whose outcome is unknown (no answer after the request
        went out, 5xx) is never followed by a push of the same messages: the row becomes "unknown"
        for staff to check. A reply LINE clearly did not take (token refused or expired, 429, no
        connection) goes by push with the retry key.
    inbox_sweep (every minute): wakes what a lost wake-up left behind.

Logs carry ids, statuses and exception classes, never what a resident sent (nor exception
messages, which can quote it).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.tasks import async_task

from govtech.images import sniff_image
from messaging import ratelimit, selectors, signals
from messaging.line import parse, postback_routes, render, retry
from messaging.line.client import LineClient, SendResult, shared_client
from messaging.models import InboxEvent, LineChannelSettings, LineFollowEvent, LineUser, OutboxMessage
from procedures.engine.types import Event
from procedures.models import ConversationSession
from procedures.services import conversation_handle
from procedures.spec import IMAGE_TYPES
from residents.models import Resident

logger = logging.getLogger(__name__)

INBOX_MAX_ATTEMPTS = 5
INBOX_EVENTS_PER_RUN = 50
SWEEP_GRACE = timedelta(seconds=30)  # a fresh event's own wake-up is probably on its way
# An event older than this is being retried, was swept up after a lost wake-up, or killed the
# worker that last tried it: its attempt is counted and committed before it runs (_inbox_count_ahead).
INBOX_COUNT_AHEAD_AFTER = SWEEP_GRACE
# The worker that counted an attempt lets go of the resident before it runs it; another worker that
# takes the resident within this time runs that same counted attempt instead of calling it interrupted.
INBOX_COUNTED_ATTEMPT_HANDOVER = timedelta(seconds=10)
IMAGE_DIRECTORY = "line/images"
OUTBOX_MAX_ATTEMPTS = 10
OUTBOX_LEASE = timedelta(minutes=5)  # > one batch of calls, each bounded by the client time-out
# The inbox worker sends an event's rows itself: one row per call to LINE (a resident's rows go in
# order), so this keeps an inbox run (INBOX budget + this + one call) inside the task time-out.
OUTBOX_WRITTEN_BUDGET_SECONDS = 20
RETRY_KEY_WINDOW = timedelta(hours=23)  # LINE honours a retry key for 24 hours
UNKNOWN_REPLY_REASON = "LINE の応答が不明のため再送していません"
INBOX_ERROR_MESSAGE = "処理中にエラーが発生しました"
CONTENT_ERROR_MESSAGE = "LINE からメッセージの内容を取得できませんでした"
INTERRUPTED_ERROR = "WorkerInterrupted: 前回の処理が終わらないまま作業が止まりました（時間切れ・強制終了など）"


_broker_by_process: dict[int, object] = {}


def _broker():
    """One broker connection per process (the cluster forks, so never share one across a fork).

    django-q2 otherwise opens a new broker connection for every task; on the webhook's path
    that was about half of a request's CPU (bench/README.md).
    """
    pid = os.getpid()
    broker = _broker_by_process.get(pid)
    if broker is None:
        _broker_by_process.clear()
        broker = _broker_by_process[pid] = get_broker()
    return broker


def _delay(func, *args) -> None:
    async_task(func, *args, broker=_broker())


def wake_inbox_worker(line_user_id: str) -> None:
    _delay("messaging.tasks.process_user_inbox", line_user_id)


def wake_sender(ids: list[int] | None = None) -> None:
    _delay("messaging.tasks.send_outbox", ids)


def wake_profile_refresh(resident_id: int) -> None:
    _delay("residents.tasks.refresh_resident_profile", resident_id)


def _trace(error: BaseException) -> str:
    """Where an exception was raised (file, line, code), without its message: that can quote input."""
    return "".join(traceback.format_tb(error.__traceback__)).rstrip()


# --------------------------------------------------------------------------
# Webhook
# --------------------------------------------------------------------------


def signature_is_valid(*, body: bytes, signature: str | None, channel_secret: str) -> bool:
    """LINE's X-Line-Signature: base64(HMAC-SHA256(channel secret, raw body)), compared in constant time."""
    if not signature or not channel_secret:
        return False
    try:
        given = signature.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    digest = hmac.new(channel_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest), given)


def inbox_store(*, events: list) -> set[str]:
    """Store every event of one webhook request in one transaction; a redelivered event is a no-op.

    A malformed event (`parse.event_problems`) does not cost the others: it is stored as ignored
    with the reason and without the resident's input, or, when it has no usable webhookEventId
    (nothing to recognise a redelivery by), skipped with a log line. Workers are woken after the
    commit; returns the users whose events were handed to them.
    """
    now = timezone.now()
    rows = []
    for index, event in enumerate(events):
        event = parse.storable(event)
        problems = parse.event_problems(index, event)
        if problems:
            fields = parse.malformed_fields(event, problems, now)
            if fields is None:
                logger.warning("webhook: events[%d] skipped: malformed, without a usable webhookEventId", index)
                continue
            logger.warning("webhook: event %s stored as ignored: malformed", fields["webhook_event_id"])
            rows.append(InboxEvent(status=InboxEvent.Status.IGNORED, processed_at=now, **fields))
            continue
        row = InboxEvent(payload=event, **parse.inbox_fields(event))
        reason = parse.unanswerable_reason(event)
        if reason:  # a group, a room, another channel's chat: nobody to answer, nothing to continue
            row.status, row.ignored_reason = InboxEvent.Status.IGNORED, reason
            row.payload, row.processed_at = parse.redact(event), now
        rows.append(row)
    users = {row.line_user_id for row in rows if row.status == InboxEvent.Status.PENDING}
    _inbox_insert_new(rows)
    for line_user_id in sorted(users):
        transaction.on_commit(lambda user=line_user_id: wake_inbox_worker(user), robust=True)
    logger.debug("webhook: %d event(s) received for %d user(s)", len(rows), len(users))
    return users


INBOX_INSERT_MAX_PARAMETERS = 65535  # PostgreSQL's limit per statement (SQLite's, lower, comes from Django)


def _inbox_insert_new(rows: list[InboxEvent]) -> None:
    """The rows in one `INSERT … ON CONFLICT DO NOTHING` statement: a redelivered event is skipped.

    One statement is atomic by itself, so all the events of a request are stored or none is,
    without a transaction block: one round trip where `bulk_create` makes three (BEGIN, INSERT,
    COMMIT) and compiles its query through the ORM, the webhook's largest cost after Django's
    request cycle (bench/README.md). PostgreSQL and SQLite (3.24+) both take this statement. A
    request with more events than one statement can carry (thousands) gets several statements
    in one transaction.
    """
    if not rows:
        return
    meta = InboxEvent._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    max_parameters = min(
        connection.features.max_query_params or INBOX_INSERT_MAX_PARAMETERS, INBOX_INSERT_MAX_PARAMETERS
    )
    per_statement = max(max_parameters // len(fields), 1)
    # Only the model's own table and column names (quoted) and placeholders go into the text.
    table = quote(meta.db_table)
    columns = ", ".join(quote(field.column) for field in fields)
    one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    with transaction.atomic() if len(rows) > per_statement else contextlib.nullcontext():
        for start in range(0, len(rows), per_statement):
            batch = rows[start : start + per_statement]
            values = [
                field.get_db_prep_save(field.pre_save(row, True), connection) for row in batch for field in fields
            ]
            values_sql = ", ".join([one_row] * len(batch))
            sql = f"INSERT INTO {table} ({columns}) VALUES {values_sql} ON CONFLICT DO NOTHING"  # noqa: S608  # nosec B608
            with connection.cursor() as cursor:
                cursor.execute(sql, values)


# --------------------------------------------------------------------------
# Inbox worker
# --------------------------------------------------------------------------


class ContentUnavailable(Exception):
    """LINE could not hand over a message's content right now (retry later)."""


@dataclass
class InboxRun:
    processed: int = 0  # done or ignored
    failed: int = 0  # attempts that failed (retried later, or parked)
    parked: int = 0
    busy: bool = False  # another worker holds this resident
    outcomes: list[str] = field(default_factory=list)


def inbox_process_user(
    *, line_user_id: str, max_events: int = INBOX_EVENTS_PER_RUN, budget_seconds: float = 60
) -> InboxRun:
    """Process one resident's pending events, oldest first, one transaction per event.

    Holds the resident's LineUser row (FOR UPDATE SKIP LOCKED) while an event is processed, so
    two workers never process one resident at once; a worker that finds it held stops, and the
    holder looks again once it has let go (see the end of the loop). An event that fails stays pending
    (attempts + 1) and stops the run, so later events wait for it; after INBOX_MAX_ATTEMPTS it is
    parked as failed (and redacted) and the later events go on.
    """
    run = InboxRun()
    if not line_user_id:
        return run
    deadline = time.monotonic() + budget_seconds
    started = timezone.now()
    for _ in range(max_events):
        if time.monotonic() > deadline:
            wake_inbox_worker(line_user_id)  # the rest in a fresh task, well inside the task time-out
            break
        outcome = _inbox_process_next(line_user_id)
        if outcome == "new":
            # The resident's first event: their row is created, committed on its own (another
            # worker never waits for a row a transaction is still creating), then claimed as usual.
            LineUser.objects.get_or_create(line_user_id=line_user_id)
            outcome = _inbox_process_next(line_user_id)
        if outcome == "counted":  # the attempt at an event that waited is on record: now run it
            outcome = _inbox_process_next(line_user_id, count_ahead=False)
        run.outcomes.append(outcome)
        if outcome in ("busy", "new"):
            # Another worker holds this resident: it looks again after letting go (below).
            run.busy = True
            break
        if outcome == "retry":
            run.failed += 1
            break
        if outcome == "parked":
            run.failed += 1
            run.parked += 1
        elif outcome != "empty":
            run.processed += 1
        # While we held the resident, an event may have been committed after our look (or after
        # the event we just processed), and its own wake-up may have found the resident held and
        # stopped ("busy"). Look again now that the claim is released (the transaction of
        # _inbox_process_next has committed): any event whose wake-up found us busy was committed
        # before that wake-up tried, hence before we let go, so this look sees it and we go on
        # with it or wake a worker for it. A worker that finds the resident busy needs no timer: whoever held the resident
        # does this same look after releasing. (A delayed wake-up would not help much anyway:
        # django-q2 cannot delay a task, and its scheduler runs Schedules about once a minute,
        # close to the sweep's own delay.) One plain look, not another locked round.
        pending = selectors.inbox_next_pending(line_user_id=line_user_id)
        next_received_at = pending.values_list("received_at", flat=True).first()
        if next_received_at is None:
            break
        if next_received_at > started:
            # Came after this run began (often the answer to the reply just sent): to the back of
            # the queue, so a quick resident cannot keep this worker while others wait. (Clock skew
            # between hosts only changes which of the two paths takes it, never whether it is taken.)
            wake_inbox_worker(line_user_id)
            break
    else:
        # More than one run's worth: continue in a fresh task rather than hog this worker.
        wake_inbox_worker(line_user_id)
    return run


def _inbox_process_next(line_user_id: str, *, count_ahead: bool = True) -> str:
    with transaction.atomic():
        user = (
            LineUser.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("resident")
            .filter(line_user_id=line_user_id)
            .first()
        )
        if user is None:  # held by another worker, or not created yet
            if LineUser.objects.filter(line_user_id=line_user_id).exists():
                return "busy"
            # Only a pending event makes somebody a LINE user of ours (a stray wake-up does not).
            return "new" if selectors.inbox_next_pending(line_user_id=line_user_id).exists() else "empty"
        event = selectors.inbox_next_pending(line_user_id=line_user_id).select_for_update().first()
        if event is None:
            return "empty"
        now = timezone.now()
        counted_just_now = (
            event.attempt_started_at is not None and event.attempt_started_at > now - INBOX_COUNTED_ATTEMPT_HANDOVER
        )
        if count_ahead and event.received_at < now - INBOX_COUNT_AHEAD_AFTER and not counted_just_now:
            return _inbox_count_ahead(event)
        stored: list[str] = []
        try:
            with transaction.atomic():
                outcome, outbox_ids = _inbox_handle(event, user, stored)
        except Exception as error:
            for name in stored:
                _delete_file(name)
            return _inbox_failed(event, error)
        if outbox_ids:
            transaction.on_commit(lambda: _outbox_send_written(line_user_id, outbox_ids), robust=True)
        logger.debug("inbox event %s (%s) %s", event.pk, event.event_type, outcome)
        return outcome


def _inbox_count_ahead(event: InboxEvent) -> str:
    """Count an attempt at an event that has waited, committed before the attempt runs.

    A worker killed in the middle of an event (the task time-out, out of memory, a crash in a
    native library) rolls its transaction back, count included, so an event that kills every
    worker would block its resident for good, never counted. An attempt counted ahead that never
    finished (attempt_started_at still set) was interrupted: after INBOX_MAX_ATTEMPTS such attempts
    the event is parked like one that failed, and the resident's later events go on. Fresh events
    skip this (one transaction less each): their first attempt, if it kills its worker, is retried
    by the sweep after INBOX_COUNT_AHEAD_AFTER, and counted from then on.
    """
    if event.attempt_started_at is not None:
        event.last_error = INTERRUPTED_ERROR
        logger.warning("inbox event %s: attempt %d did not finish", event.pk, event.attempts)
    if event.attempts >= INBOX_MAX_ATTEMPTS:
        _inbox_park(event)
        event.save(update_fields=["last_error", "status", "processed_at", "payload", "attempt_started_at"])
        logger.error("inbox event %s parked after %d attempts that did not finish", event.pk, event.attempts)
        return "parked"
    event.attempts += 1
    event.attempt_started_at = timezone.now()
    event.save(update_fields=["attempts", "attempt_started_at", "last_error"])
    return "counted"


def _inbox_count_attempt(event: InboxEvent) -> None:
    """The attempt that just ended, unless it was counted ahead (then it is no longer running)."""
    if event.attempt_started_at is None:
        event.attempts += 1
    event.attempt_started_at = None


def _inbox_park(event: InboxEvent) -> None:
    """Give up on an event: failed, redacted (nothing of the resident's input is kept)."""
    event.last_error += f"（{event.attempts} 回失敗したため保留）"
    event.status = InboxEvent.Status.FAILED
    event.processed_at = timezone.now()
    event.payload = parse.redact(event.payload)
    event.attempt_started_at = None


def _inbox_failed(event: InboxEvent, error: Exception) -> str:
    """Count a failed attempt; park the event after INBOX_MAX_ATTEMPTS.

    `last_error` gets the exception's class and a fixed message, never the exception's text (it can
    quote what the resident sent). A parked event is redacted like a processed one: nothing of the
    resident's input is kept, so it cannot be processed again (see inbox_retry).
    """
    event.refresh_from_db()  # forget whatever the failed attempt changed in memory
    _inbox_count_attempt(event)
    message = CONTENT_ERROR_MESSAGE if isinstance(error, ContentUnavailable) else INBOX_ERROR_MESSAGE
    event.last_error = f"{type(error).__name__}: {message}"
    parked = event.attempts >= INBOX_MAX_ATTEMPTS
    if parked:
        _inbox_park(event)
    event.save(update_fields=["attempts", "last_error", "status", "processed_at", "payload", "attempt_started_at"])
    name, trace = type(error).__name__, _trace(error)
    if parked:
        logger.error("inbox event %s parked after %d attempts (%s)\n%s", event.pk, event.attempts, name, trace)
        return "parked"
    logger.warning("inbox event %s failed (attempt %d, %s)\n%s", event.pk, event.attempts, name, trace)
    return "retry"


def _inbox_finish(event: InboxEvent, status: str, reason: str = "") -> None:
    event.status = status
    event.ignored_reason = reason[:200]
    _inbox_count_attempt(event)
    event.processed_at = timezone.now()
    event.payload = parse.redact(event.payload)  # the inbox keeps no resident input
    event.save(update_fields=["status", "ignored_reason", "attempts", "attempt_started_at", "processed_at", "payload"])


def _resident_for(user: LineUser, *, follow: bool = False) -> Resident:
    if follow:
        resident, _created = Resident.objects.update_or_create(
            line_user_id=user.line_user_id, defaults={"is_simulated": False}
        )
    elif user.resident is not None:  # read with the claim (select_related): one query less per event
        return user.resident
    else:
        resident, _created = Resident.objects.get_or_create(line_user_id=user.line_user_id)
    if user.resident_id != resident.pk:
        user.resident = resident
        user.save(update_fields=["resident", "updated_at"])
    return resident


def _inbox_handle(event: InboxEvent, user: LineUser, stored: list[str]) -> tuple[str, list[int]]:
    parsed = parse.parse_event(event.payload)
    if parsed.action == parse.IGNORE:
        _inbox_finish(event, InboxEvent.Status.IGNORED, parsed.reason)
        return "ignored", []
    if parsed.action == parse.FOLLOW:
        _resident_for(user, follow=True)
        _follow_record(user, event, follow=True, is_unblocked=parsed.is_unblocked)
        messages = render.plain_text(LineChannelSettings.load().greeting_text)
    elif parsed.action == parse.UNFOLLOW:
        _resident_for(user)
        _follow_record(user, event, follow=False)
        messages = []
    elif (answer := postback_routes.command_handler(parsed.event)) is not None:
        # A button another feature answers outside any conversation (a campaign's yes/no).
        messages = render.render_all(answer(event=parsed.event, line_user_id=user.line_user_id))
    else:
        resident = _resident_for(user)
        engine_event = parsed.event
        if parsed.action == parse.CONTENT:
            engine_event = _image_event(parsed, stored)
        elif parsed.action == parse.ROUTED:
            outcome = postback_routes.handle(
                data=parsed.postback_data,
                params=parsed.postback_params,
                line_user_id=user.line_user_id,
                resident=resident,
                now=event.line_timestamp,
            )
            engine_event = outcome.event
            messages = [message for text in outcome.texts for message in render.plain_text(text)]
        if engine_event is not None:
            reply = conversation_handle(line_user_id=user.line_user_id, event=engine_event, resident=resident)
            if stored and not _image_kept(user.line_user_id, stored[-1], reply):
                name = stored[-1]
                transaction.on_commit(lambda: _delete_file(name), robust=True)
            messages = render.render_all(reply.messages)
    outbox_ids = _outbox_write(user.line_user_id, event, parsed.reply_token, messages)
    _inbox_finish(event, InboxEvent.Status.DONE)
    return "done", outbox_ids


def _follow_record(user: LineUser, event: InboxEvent, *, follow: bool, is_unblocked: bool = False) -> None:
    if follow:
        user.is_following, user.followed_at = True, event.line_timestamp
        transaction.on_commit(lambda: wake_profile_refresh(user.resident_id), robust=True)
        signals.line_user_followed.send(sender=LineUser, line_user=user)
    else:
        user.is_following, user.blocked_at = False, event.line_timestamp
    user.save(update_fields=["is_following", "followed_at", "blocked_at", "updated_at"])
    LineFollowEvent.objects.create(
        line_user=user,
        kind=LineFollowEvent.Kind.FOLLOW if follow else LineFollowEvent.Kind.UNFOLLOW,
        is_unblocked=is_unblocked,
        occurred_at=event.line_timestamp,
        webhook_event_id=event.webhook_event_id,
    )


# -- images ----------------------------------------------------------------


def _image_event(parsed: parse.Parsed, stored: list[str]) -> Event:
    """Fetch the content from LINE's data host, check it, store it; an image Event either way.

    A file that is not a JPEG/PNG image, or is too large, becomes an image Event with its real
    type and size (not stored), so the engine asks again and says why.
    """
    max_bytes = settings.LINE_IMAGE_MAX_BYTES
    rejected = f"{parse.REJECTED_REF_PREFIX}{parsed.message_id}"
    if parsed.declared_size is not None and parsed.declared_size > max_bytes:
        return Event(
            type="image",
            data={
                "ref": rejected,
                "content_type": parsed.declared_type or "application/octet-stream",
                "size": parsed.declared_size,
            },
        )
    content = shared_client().message_content(parsed.message_id, max_bytes=max_bytes)  # never reads more
    result = content.result
    if not result.ok:
        if result.status is not None and 400 <= result.status < 500 and result.status != 429:
            # The content is gone (LINE keeps it for a limited time): ask for the image again.
            return Event(type="image", data={"ref": "", "content_type": "", "size": 0})
        raise ContentUnavailable(f"content of message {parsed.message_id}: {result.status or 'no answer'}")
    data, size = content.data, len(content.data)
    if content.too_large:
        kind = sniff_image(data, verify=False)[0] or content.content_type or "application/octet-stream"
        return Event(type="image", data={"ref": rejected, "content_type": kind, "size": content.size})
    kind = sniff_image(data)[0]
    if kind not in IMAGE_TYPES:
        kind = kind or parsed.declared_type or "application/octet-stream"
        if kind in IMAGE_TYPES:  # the name said JPEG/PNG but the bytes are not a readable image
            kind = "application/octet-stream"
        return Event(type="image", data={"ref": rejected, "content_type": kind, "size": size})
    extension = "jpg" if kind == "image/jpeg" else "png"
    today = timezone.localdate()
    name = default_storage.save(f"{IMAGE_DIRECTORY}/{today:%Y/%m}/{uuid.uuid4().hex}.{extension}", ContentFile(data))
    stored.append(name)
    return Event(type="image", data={"ref": name, "content_type": kind, "size": size})


def _image_kept(line_user_id: str, ref: str, reply) -> bool:
    """Whether the engine kept the stored image as an answer (else the file is deleted)."""
    state = ConversationSession.objects.filter(line_user_id=line_user_id).values_list("state", flat=True).first()
    answers = [application.answers for application in reply.applications]
    return ref in json.dumps([state, answers], ensure_ascii=False, default=str)


def _delete_file(name: str) -> None:
    try:
        default_storage.delete(name)
    except Exception:
        logger.exception("could not delete the stored image %s", name)


# -- outbox rows -----------------------------------------------------------


def _outbox_write(line_user_id: str, event: InboxEvent | None, reply_token: str, messages: list[dict]) -> list[int]:
    """Outbox rows for `messages`, at most 5 per row, in order: the first by reply when possible."""
    now = timezone.now()
    ttl = timedelta(seconds=settings.LINE_REPLY_TOKEN_TTL_SECONDS)
    expires = event.line_timestamp + ttl if event is not None else None
    ids = []
    for index, group in enumerate(render.chunks(messages)):
        reply = index == 0 and bool(reply_token) and expires is not None and expires > now
        row = OutboxMessage.objects.create(
            line_user_id=line_user_id,
            inbox_event=event,
            kind=OutboxMessage.Kind.REPLY if reply else OutboxMessage.Kind.PUSH,
            reply_token=reply_token if reply else "",
            reply_token_expires_at=expires if reply else None,
            payload=group,
            next_attempt_at=now,
        )
        ids.append(row.pk)
    return ids


LINE_USER_ID = re.compile(r"^U[0-9a-f]{32}$")


def notice_deliver(line_user_id: str, messages) -> bool:
    """procedures.notices deliverer: a personal notice to a LINE resident by push through the outbox.

    Not for other ids (simulator runs "sim-…", applications staff entered) or residents who
    blocked the account (LINE would refuse the push).
    """
    if not LINE_USER_ID.match(line_user_id or ""):
        return False
    if LineUser.objects.filter(line_user_id=line_user_id, is_following=False).exists():
        return False
    return bool(outbox_push_create(line_user_id=line_user_id, messages=render.render_all(list(messages))))


def outbox_push_create(*, line_user_id: str, messages: list[dict]) -> list[int]:
    """Queue LINE messages to one resident by push (rows written in the caller's transaction)."""
    ids = _outbox_write(line_user_id, None, "", messages)
    if ids:
        transaction.on_commit(lambda: wake_sender(ids), robust=True)
    return ids


# --------------------------------------------------------------------------
# Outbox sender
# --------------------------------------------------------------------------
#
# A row's reply, step by step (what is committed before and after the call to LINE):
#   claim:        status sending, claim_token, lease           (no reply yet: a dead sender's row is
#                                                               taken over after its lease, reply allowed)
#   before call:  reply_attempted_at = now                      (from here on, never replied again)
#   answer 2xx:   sent
#   not taken:    reply_token = ""                              (token refused/expired, 429, no connection:
#                                                               nothing was sent; push with the retry key)
#   unknown:      status unknown                                (no answer after the request went out, 5xx)
# A row with reply_attempted_at set and its reply_token still there has a reply call whose outcome
# was never recorded (its sender died during the call): it is marked unknown when next claimed.


@dataclass
class SendRun:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    deferred: int = 0  # put back until LINE's rate limit allows the call
    unknown: int = 0  # a reply that may or may not have arrived: left to staff, never pushed blindly
    lost: int = 0  # the claim ran out and another sender took the row over before the call


def outbox_send(*, ids: list[int] | None = None, now=None, batch_size: int = 5, budget_seconds: float = 60) -> SendRun:
    """Send what is due: all residents, or (with `ids`) the residents those rows belong to.

    Rows of one resident go strictly in order: a row waits while an earlier one is unsent.
    Small batches and a time budget keep a run well inside the task time-out (and the claim
    lease): what is left is sent by the next run or the sweep. An unexpected exception while
    sending one row is that row's failed attempt (retried with back-off, given up after
    OUTBOX_MAX_ATTEMPTS); the run goes on with the other rows.
    """
    users = None
    if ids is not None:
        users = set(OutboxMessage.objects.filter(pk__in=list(ids)).values_list("line_user_id", flat=True))
        if not users:
            return SendRun()
    run, _out_of_time = _outbox_send_due(users, now=now, batch_size=batch_size, budget_seconds=budget_seconds)
    return run


def _outbox_send_written(line_user_id: str, ids: list[int]) -> None:
    """Send an event's new rows from the inbox worker, right after the event's commit.

    Saves the second queue hop (the send_outbox task's dispatch, wait and claim), the same claim
    and delivery as the sender task otherwise. What cannot be sent now keeps the fallbacks: rows
    deferred by LINE's rate limit or waiting for a retry stay pending for the sweep, as in the
    sender task; if this fails or runs out of time, the sender task is queued for the rows.
    """
    try:
        _run, out_of_time = _outbox_send_due(
            {line_user_id}, now=None, batch_size=1, budget_seconds=OUTBOX_WRITTEN_BUDGET_SECONDS
        )
    except Exception as error:
        logger.warning("outbox %s: not sent by the inbox worker (%s)\n%s", ids, type(error).__name__, _trace(error))
        out_of_time = True
    if out_of_time:
        wake_sender(ids)


def _outbox_send_due(users, *, now, batch_size: int, budget_seconds: float) -> tuple[SendRun, bool]:
    """Send the due rows of `users` (None: everyone's); and whether time ran out before the end."""
    clock = (lambda: now) if now is not None else timezone.now
    deadline = time.monotonic() + budget_seconds
    run = SendRun()
    line = shared_client()
    first_round = True
    while time.monotonic() < deadline:
        if not first_round and users is not None and not selectors.outbox_queue_of(line_user_ids=users).exists():
            # These residents' queues are empty now (the usual end): a plain look instead of a claim.
            return run, False
        first_round = False
        claimed = _outbox_claim(users, clock(), batch_size)
        if not claimed:
            return run, False
        for row, mode in claimed:
            try:
                outcome = _outbox_deliver(line, row, mode, clock())
            except Exception as error:
                outcome = _outbox_crashed(row, error, clock())
            setattr(run, outcome, getattr(run, outcome) + 1)
        if run.deferred:
            # LINE's limit is used up for now: claiming more would only put them back too.
            # The next run (or the sweep) sends the rest.
            return run, False
    return run, True


def _reply_possible(row: OutboxMessage, now) -> bool:
    return (
        row.kind == OutboxMessage.Kind.REPLY
        and bool(row.reply_token)
        and row.reply_attempted_at is None  # a reply is attempted at most once
        and row.reply_token_expires_at is not None
        and row.reply_token_expires_at > now
    )


def _reply_unsettled(row: OutboxMessage) -> bool:
    """A reply call was started for this row and what came of it was never recorded."""
    return row.reply_attempted_at is not None and bool(row.reply_token)


def _outbox_claim(users, now, batch_size: int) -> list[tuple[OutboxMessage, str]]:
    """Mark due rows as being sent (committed before any call to LINE).

    Rows that must not be sent again are settled here instead: a reply whose sender died during
    the call (unknown), and a row that has used up its attempts (failed; a sender that keeps dying
    on it never reaches the give-up in _retry).
    """
    with transaction.atomic():
        if users is None:
            rows = list(selectors.outbox_due(now=now).select_for_update(skip_locked=True).order_by("id")[:batch_size])
        else:
            rows = _outbox_queue_heads(users, now, batch_size)
        claimed = []
        for row in rows:
            settled = {"claim_token": None, "lease_until": None}
            if _reply_unsettled(row):
                row.status, row.reply_token = OutboxMessage.Status.UNKNOWN, ""
                row.last_error = f"{UNKNOWN_REPLY_REASON}（応答の送信中に処理が中断しました）"
                OutboxMessage.objects.filter(pk=row.pk).update(
                    status=row.status, reply_token="", last_error=row.last_error, **settled
                )
                logger.error("outbox %s: its reply was interrupted; the outcome is unknown, not sent again", row.pk)
                continue
            if row.attempts >= OUTBOX_MAX_ATTEMPTS:
                row.status = OutboxMessage.Status.FAILED
                row.last_error = f"gave up after {row.attempts} attempts: {row.last_error or 'interrupted'}"[:2000]
                OutboxMessage.objects.filter(pk=row.pk).update(status=row.status, last_error=row.last_error, **settled)
                logger.error("outbox %s failed for good: no attempts left", row.pk)
                continue
            mode = OutboxMessage.Kind.REPLY if _reply_possible(row, now) else OutboxMessage.Kind.PUSH
            row.status = OutboxMessage.Status.SENDING
            row.claim_token = uuid.uuid4()
            row.lease_until = now + OUTBOX_LEASE
            row.attempts += 1
            row.save(update_fields=["status", "claim_token", "lease_until", "attempts"])
            claimed.append((row, mode))
        return claimed


OUTBOX_QUEUE_PAGE = 100


def _outbox_queue_heads(users, now, batch_size: int) -> list[OutboxMessage]:
    """The due rows at the head of each resident's queue: `outbox_due` for a few residents, cheaper.

    Their unsent rows are locked in id order (FOR UPDATE, waiting: every sender locks in that
    order, so two never deadlock, and the wait is one claim's short transaction), then each queue
    is read from its head: its first row is claimed if it is due, and otherwise holds back the
    rest, as the NOT EXISTS of `outbox_due` does. One row per resident per claim, as there.
    Skipping locked rows here could send a later row before an earlier one that another sender is
    claiming. Read in pages, each without the residents already decided, so a long queue held
    back never hides another resident's due row.
    """
    undecided = set(users)
    heads: list[OutboxMessage] = []
    after_id = 0
    while undecided and len(heads) < batch_size:
        page = list(
            selectors.outbox_queue_of(line_user_ids=undecided)
            .filter(id__gt=after_id)
            .select_for_update()[:OUTBOX_QUEUE_PAGE]
        )
        for row in page:
            after_id = row.pk
            if row.line_user_id not in undecided:
                continue  # behind this resident's head
            undecided.discard(row.line_user_id)
            if selectors.outbox_row_is_due(row, now):
                heads.append(row)
                if len(heads) == batch_size:
                    break
        if len(page) < OUTBOX_QUEUE_PAGE:
            break
    return heads


def _mark(row: OutboxMessage, **fields) -> bool:
    """Record `fields` of a row this sender still holds (committed at once); False if the claim was lost."""
    updated = OutboxMessage.objects.filter(
        pk=row.pk, claim_token=row.claim_token, status=OutboxMessage.Status.SENDING
    ).update(**fields)
    if not updated:
        logger.warning("outbox %s: the claim was lost before the call", row.pk)
        return False
    for name, value in fields.items():
        setattr(row, name, value)
    return True


def _settle(row: OutboxMessage, **fields) -> None:
    updated = OutboxMessage.objects.filter(
        pk=row.pk, claim_token=row.claim_token, status=OutboxMessage.Status.SENDING
    ).update(claim_token=None, lease_until=None, **fields)
    if not updated:
        logger.warning("outbox %s: the claim was lost before the result was recorded", row.pk)


def _sent(row: OutboxMessage, via: str, result: SendResult, now) -> str:
    request_id = result.accepted_request_id if result.status == 409 else result.request_id
    _settle(
        row,
        status=OutboxMessage.Status.SENT,
        sent_via=via,
        sent_at=now,
        line_request_id=request_id or "",
        last_error="",
    )
    logger.debug("outbox %s sent by %s (status %s)", row.pk, via, result.status)
    return "sent"


def _failed(row: OutboxMessage, error: str, *, result: SendResult | None = None) -> str:
    request_id = result.request_id if result is not None else ""
    _settle(row, status=OutboxMessage.Status.FAILED, last_error=error[:2000], line_request_id=request_id or "")
    logger.error("outbox %s failed for good (status %s)", row.pk, result.status if result is not None else None)
    return "failed"


def _retry(row: OutboxMessage, error: str, now, *, result: SendResult | None = None) -> str:
    if row.attempts >= OUTBOX_MAX_ATTEMPTS:
        return _failed(row, f"gave up after {row.attempts} attempts: {error}", result=result)
    status = result.status if result is not None else None
    _settle(
        row,
        status=OutboxMessage.Status.PENDING,
        next_attempt_at=now + retry.delay(row.attempts, result),
        last_error=error[:2000],
    )
    logger.warning("outbox %s will be retried (status %s, attempt %d)", row.pk, status, row.attempts)
    return "retrying"


def _retry_result(row: OutboxMessage, result: SendResult, now) -> str:
    return _retry(row, retry.describe(result), now, result=result)


def _unknown(row: OutboxMessage, error: str, *, result: SendResult | None = None) -> str:
    _settle(
        row,
        status=OutboxMessage.Status.UNKNOWN,
        reply_token="",
        last_error=f"{UNKNOWN_REPLY_REASON}（{error}）"[:2000],
        line_request_id=(result.request_id if result is not None else "") or "",
    )
    status = result.status if result is not None else None
    logger.error("outbox %s: the reply's outcome is unknown (status %s); not sent again, staff decide", row.pk, status)
    return "unknown"


def _reply_outcome_unknown(result: SendResult) -> bool:
    """LINE may have delivered the reply: no answer although the request went out, or a 5xx."""
    if result.status is None:
        return result.request_sent
    return result.status >= 500


def _invalid_reply_token(result: SendResult) -> bool:
    return result.status == 400 and "reply token" in result.error.lower()


def outbox_rate_limited(row: OutboxMessage, operation: str, now, *, called: bool = False) -> bool:
    """Take one `operation` call (messaging.ratelimit: reply, push, multicast, broadcast) for a claimed row.

    False: call LINE now. True: the limit is used up for this window and the row was given back,
    pending until the next window (no sleeping: the worker goes on). Unless LINE was `called` already
    for this claim, the claim's attempt is undone as if it never happened (a reply is recorded as
    attempted only after this check, so a reply stays possible).
    """
    next_attempt_at = ratelimit.retry_at(operation, now)
    if next_attempt_at is None:
        return False
    fields = {"status": OutboxMessage.Status.PENDING, "next_attempt_at": next_attempt_at}
    if not called:
        fields["attempts"] = row.attempts - 1
    _settle(row, **fields)
    logger.info("outbox %s deferred by the %s rate limit until %s", row.pk, operation, next_attempt_at)
    return True


def _outbox_deliver(line: LineClient, row: OutboxMessage, mode: str, now) -> str:
    if mode == OutboxMessage.Kind.REPLY and not _reply_possible(row, now):
        mode = OutboxMessage.Kind.PUSH  # the token expired while the rows claimed before it were sent
    if mode == OutboxMessage.Kind.REPLY:
        if outbox_rate_limited(row, ratelimit.REPLY, now):
            return "deferred"
        # Committed before the call: whatever happens next, this row is never replied again.
        if not _mark(row, reply_attempted_at=now):
            return "lost"
        result = line.reply(row.reply_token, row.payload)
        if result.ok:
            return _sent(row, OutboxMessage.Kind.REPLY, result, now)
        if _reply_outcome_unknown(result):
            # Maybe delivered, maybe not. A reply has no retry key, so a push of the same messages
            # could reach the resident twice: leave it to staff (admin action "プッシュで再送").
            return _unknown(row, retry.describe(result), result=result)
        # LINE did not take the reply: nothing was sent. The token is spent for this row, which
        # goes by push from now on (committed now, so a sender dying during the push is not
        # mistaken for one dying during the reply).
        if not _mark(row, reply_token=""):
            return "lost"
        if retry.retryable(result):  # 429, or no connection could be made: push after the back-off
            return _retry_result(row, result, now)
        if not _invalid_reply_token(result):
            return _failed(row, retry.describe(result), result=result)
        # LINE refused the token (expired or used): push the same messages now.
    if now - row.retry_key_issued_at > RETRY_KEY_WINDOW:
        return _failed(row, "not sent within the retry key's 24 hours")
    if outbox_rate_limited(row, ratelimit.PUSH, now, called=mode == OutboxMessage.Kind.REPLY):
        return "deferred"
    result = line.push(row.line_user_id, row.payload, str(row.retry_key))
    if result.ok or result.status == 409:  # 409: accepted earlier with this retry key
        return _sent(row, OutboxMessage.Kind.PUSH, result, now)
    if retry.retryable(result):
        return _retry_result(row, result, now)
    return _failed(row, retry.describe(result), result=result)


def _outbox_crashed(row: OutboxMessage, error: Exception, now) -> str:
    """An exception the sender did not expect, for one claimed row: record its class, not its text.

    While a reply call may have gone out, the outcome is unknown (never pushed blindly); otherwise
    it is a failed attempt like a 5xx: retried with back-off, given up after OUTBOX_MAX_ATTEMPTS.
    """
    name = type(error).__name__
    logger.error("outbox %s: unexpected %s while sending\n%s", row.pk, name, _trace(error))
    if _reply_unsettled(row):
        return _unknown(row, f"unexpected error: {name}")
    return _retry(row, f"unexpected error: {name}", now)


# --------------------------------------------------------------------------
# Sweep and staff actions
# --------------------------------------------------------------------------


def inbox_sweep(*, now=None) -> dict:
    """Wake the workers for what a lost wake-up (or a retry) left waiting."""
    now = now or timezone.now()
    users = selectors.inbox_waiting_user_ids(received_before=now - SWEEP_GRACE)
    for line_user_id in users:
        wake_inbox_worker(line_user_id)
    outbox_due = selectors.outbox_due_exists(now=now)
    if outbox_due:
        wake_sender(None)
    return {"users": len(users), "outbox_due": outbox_due}


def _holds_input(event: InboxEvent) -> bool:
    return not (isinstance(event.payload, dict) and event.payload.get("redacted") is True)


@transaction.atomic
def inbox_retry(*, ids: list[int]) -> int:
    """Process events again now (staff action); their residents' workers are woken.

    Only events that still hold what the resident sent: those failing and still being retried
    (pending, attempts > 0: the count starts again). A parked event was redacted, so there is
    nothing left to process; it is skipped.
    """
    candidates = InboxEvent.objects.select_for_update().filter(
        pk__in=ids, status__in=[InboxEvent.Status.PENDING, InboxEvent.Status.FAILED]
    )
    events = [
        event
        for event in candidates
        if _holds_input(event) and (event.status == InboxEvent.Status.FAILED or event.attempts > 0)
    ]
    count = InboxEvent.objects.filter(pk__in=[event.pk for event in events]).update(
        status=InboxEvent.Status.PENDING, attempts=0, attempt_started_at=None, processed_at=None
    )
    for line_user_id in sorted({event.line_user_id for event in events} - {""}):
        transaction.on_commit(lambda user=line_user_id: wake_inbox_worker(user), robust=True)
    return count


def _requeue_by_push(rows, now) -> list[int]:
    ids = []
    for row in rows:
        row.status = OutboxMessage.Status.PENDING
        row.kind = OutboxMessage.Kind.PUSH
        row.reply_token = ""
        row.attempts = 0
        row.next_attempt_at = now
        fields = ["status", "kind", "reply_token", "attempts", "next_attempt_at"]
        if now - row.retry_key_issued_at > RETRY_KEY_WINDOW:
            row.retry_key = uuid.uuid4()  # the old key has expired at LINE
            row.retry_key_issued_at = now
            fields += ["retry_key", "retry_key_issued_at"]
        row.save(update_fields=fields)
        ids.append(row.pk)
    if ids:
        transaction.on_commit(lambda: wake_sender(ids), robust=True)
    return ids


@transaction.atomic
def outbox_retry(*, ids: list[int]) -> int:
    """Send failed rows again, by push (staff action)."""
    rows = OutboxMessage.objects.select_for_update().filter(pk__in=ids, status=OutboxMessage.Status.FAILED)
    return len(_requeue_by_push(rows, timezone.now()))


@transaction.atomic
def outbox_resend_unknown(*, ids: list[int]) -> int:
    """Send rows whose reply's outcome is unknown again, by push (staff action, after checking).

    The reply may have arrived: staff check first (e.g. with the resident) that it did not.
    """
    rows = OutboxMessage.objects.select_for_update().filter(pk__in=ids, status=OutboxMessage.Status.UNKNOWN)
    requeued = _requeue_by_push(rows, timezone.now())
    for pk in requeued:
        logger.info("outbox %s: resent by push by staff after an unknown reply", pk)
    return len(requeued)
