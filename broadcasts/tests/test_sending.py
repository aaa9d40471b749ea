"""Sending a broadcast run: recipients, LINE's quota, chunks, multicast with retry keys, retries, the sweep."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.test import TestCase
from django.utils import timezone

from broadcasts import sending
from broadcasts.models import Broadcast, BroadcastChunk, BroadcastRun
from broadcasts.tests.sending_world import (  # noqa: F401 (autouse fixtures)
    MULTICAST,
    TEXT,
    delivered_to,
    ids,
    line_token,
    residents,
    run_for,
    wakeups,
)
from messaging.line import retry
from messaging.line.client import LineClient
from residents.models import Segment
from residents.tests.factories import CategoryFactory, ResidentFactory

pytestmark = pytest.mark.django_db


def prepared(run: BroadcastRun) -> BroadcastRun:
    with TestCase.captureOnCommitCallbacks(execute=True):
        sending.broadcast_run_prepare(run_id=run.pk)
    run.refresh_from_db()
    return run


def chunk_keys(fake_line) -> list[str]:
    return [call.headers["x-line-retry-key"] for call in fake_line.calls(MULTICAST)]


# --------------------------------------------------------------------------
# Recipients
# --------------------------------------------------------------------------


def test_everyone_reaches_the_following_residents_and_counts_those_who_blocked(fake_line):
    following = residents(3)
    simulated = residents(1, simulated=True)
    residents(2, following=False)
    ResidentFactory()  # never talked to the channel: no LINE user, not in the audience
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    chunk = run.chunks.get()
    assert chunk.line_user_ids == ids(following + simulated)
    assert (run.status, run.recipients_total, run.skipped_blocked, run.skipped_opted_out) == ("sending", 4, 2, 0)


def test_a_topic_skips_residents_whose_receive_settings_leave_it_out_and_counts_them(fake_line):
    bousai, kosodate = CategoryFactory(key="bousai"), CategoryFactory(key="kosodate")
    chose_it = residents(2, categories=[bousai, kosodate])
    never_chose = residents(2)
    residents(3, categories=[kosodate])
    residents(1, settings_made=True)  # chose nothing at all
    residents(1, following=False, categories=[kosodate])  # blocked: counted as blocked, not as opted out
    for audience in (Broadcast.Audience.EVERYONE, Broadcast.Audience.CATEGORY):
        run = prepared(run_for(audience=audience, category=bousai))
        assert run.chunks.get().line_user_ids == ids(chose_it + never_chose)
        assert (run.recipients_total, run.skipped_blocked, run.skipped_opted_out) == (4, 1, 4)


def test_an_emergency_reaches_residents_who_opted_out_of_its_topic(fake_line):
    bousai, kosodate = CategoryFactory(key="bousai"), CategoryFactory(key="kosodate")
    everybody = residents(2, categories=[bousai]) + residents(2, categories=[kosodate]) + residents(1)
    residents(1, following=False)
    run = prepared(run_for(audience=Broadcast.Audience.CATEGORY, category=bousai, is_emergency=True))
    assert run.chunks.get().line_user_ids == ids(everybody)
    assert (run.recipients_total, run.skipped_blocked, run.skipped_opted_out) == (5, 1, 0)


def test_a_segment_reaches_its_residents_less_the_blocked_and_opted_out(fake_line):
    bousai, kosodate = CategoryFactory(key="bousai"), CategoryFactory(key="kosodate")
    parents = residents(2, categories=[kosodate, bousai])
    residents(1, categories=[kosodate])  # a parent who does not receive 防災
    residents(1, following=False, categories=[kosodate])
    residents(3, categories=[bousai])  # not parents: outside the segment, not counted at all
    segment = Segment.objects.create(
        name="子育て世帯",
        rules={"match": "all", "rules": [{"type": "category", "op": "chose", "category": "kosodate"}]},
    )
    run = prepared(run_for(audience=Broadcast.Audience.SEGMENT, segment=segment, category=bousai))
    assert run.chunks.get().line_user_ids == ids(parents)
    assert (run.recipients_total, run.skipped_blocked, run.skipped_opted_out) == (2, 1, 1)


def test_a_run_sends_to_the_segment_as_it_was_submitted(fake_line):
    kosodate = CategoryFactory(key="kosodate")
    parents = residents(2, categories=[kosodate])
    residents(3)
    segment = Segment.objects.create(
        name="everyone now", rules={"match": "all", "rules": [{"type": "follow", "op": "following"}]}
    )
    submitted = {"match": "all", "rules": [{"type": "category", "op": "chose", "category": "kosodate"}]}
    run = prepared(run_for(audience=Broadcast.Audience.SEGMENT, segment=segment, segment_rules=submitted))
    assert run.chunks.get().line_user_ids == ids(parents)


def test_a_segment_with_broken_rules_refuses_the_run_and_says_why(fake_line):
    residents(2)
    segment = Segment.objects.create(name="壊れた条件", rules={"match": "maybe", "rules": []})
    run = prepared(run_for(audience=Broadcast.Audience.SEGMENT, segment=segment))
    assert run.status == "refused" and "セグメントの条件" in run.refused_reason
    assert not run.chunks.exists() and fake_line.calls(MULTICAST) == []


# --------------------------------------------------------------------------
# LINE's monthly quota
# --------------------------------------------------------------------------


def test_a_run_over_the_monthly_quota_is_refused_whole_with_a_clear_reason(fake_line, wakeups):  # noqa: F811 (the imported fixture)
    residents(600)
    fake_line.set_quota(type="limited", value=1000, total_usage=500)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    assert run.status == "refused" and run.finished_at is not None
    assert "上限" in run.refused_reason and "600" in run.refused_reason and "500" in run.refused_reason
    broadcast = run.broadcast
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.refused_reason) == ("refused", run.refused_reason)
    assert not run.chunks.exists() and fake_line.calls(MULTICAST) == [] and wakeups == []


def test_the_quota_counts_one_message_per_recipient_and_the_chunks_other_runs_still_have_to_send(fake_line):
    residents(400)
    fake_line.set_quota(type="limited", value=1000, total_usage=200)
    # Five messages in the run still count as one per recipient: 400 <= 800 fits.
    fits = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    assert fits.status == "sending"
    # The first run's 400 are not sent yet: 800 - 400 = 400 left, 400 more still fit, 401 would not.
    assert prepared(run_for(audience=Broadcast.Audience.EVERYONE)).status == "sending"
    residents(1)
    third = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    assert third.status == "refused" and "0" in third.refused_reason


def test_a_run_is_checked_against_the_quota_again_when_it_starts_counting_the_chunks_queued_since(fake_line):
    people = residents(3)
    fake_line.set_quota(type="limited", value=5)
    first, second = run_for(audience=Broadcast.Audience.EVERYONE), run_for(audience=Broadcast.Audience.EVERYONE)
    recipients = sending.Recipients([person.line_user_id for person in people], 0, 0)
    # Both preparers read LINE's quota before either queued its chunks: 5 left, 3 fit, for each.
    line_remaining = [sending._quota_remaining(), sending._quota_remaining()]
    assert line_remaining == [5, 5]
    assert sending._run_start(first.pk, recipients, timezone.now(), line_remaining[0]) == "sending"
    assert sending._run_start(second.pk, recipients, timezone.now(), line_remaining[1]) == "refused"
    second.refresh_from_db()
    assert "今月の残り 2 通" in second.refused_reason and not second.chunks.exists()


def test_an_unreadable_quota_leaves_the_run_pending_and_the_sweep_prepares_it_again(fake_line, wakeups):  # noqa: F811 (the imported fixture)
    residents(2)
    fake_line.fail_next(500, path_prefix="/v2/bot/message/quota")
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    assert run.status == "pending" and not run.chunks.exists()
    assert sending.broadcast_sweep()["runs"] == 0  # its own wake-up may still be on its way
    assert sending.broadcast_sweep(now=timezone.now() + timedelta(minutes=1))["runs"] == 1
    assert ("prepare", run.pk) in wakeups
    assert prepared(run).status == "sending"


# --------------------------------------------------------------------------
# Chunks
# --------------------------------------------------------------------------


def test_1001_recipients_make_three_chunks_with_their_own_retry_keys_and_preparing_again_adds_none(fake_line, wakeups):  # noqa: F811 (the imported fixture)
    people = residents(1001)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    chunks = list(run.chunks.order_by("position"))
    assert [(c.position, c.recipient_count) for c in chunks] == [(0, 500), (1, 500), (2, 1)]
    assert [user for c in chunks for user in c.line_user_ids] == ids(people)
    assert len({c.retry_key for c in chunks}) == 3
    assert wakeups == [("send",)]
    assert prepared(run).status == "sending"
    assert run.chunks.count() == 3 and wakeups == [("send",)]


def test_chunks_are_multicast_once_and_the_run_and_broadcast_finish(fake_line):
    people = residents(1001)
    simulated = residents(1, simulated=True)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    assert sending.broadcast_chunks_send().sent == 3
    assert sorted(delivered_to(fake_line)) == sorted(ids(people + simulated))
    calls = fake_line.calls(MULTICAST)
    assert all(call.body["messages"] == TEXT for call in calls)
    assert chunk_keys(fake_line) == [str(c.retry_key) for c in run.chunks.order_by("position")]
    run.refresh_from_db()
    assert (run.status, run.delivered, run.failed) == ("done", 1002, 0) and run.finished_at is not None
    assert run.broadcast.status == "sent"
    # The resident simulator reads what the fake LINE delivered: the simulated resident sees the broadcast.
    seen = fake_line.control.messages_for(simulated[0].line_user_id)["messages"]
    assert [(m["via"], m["message"]) for m in seen] == [("multicast", TEXT[0])]


def test_a_repeating_broadcast_goes_back_to_scheduled_after_its_run(fake_line):
    residents(2)
    run = prepared(
        run_for(
            audience=Broadcast.Audience.EVERYONE,
            status=Broadcast.Status.SCHEDULED,
            recurrence=Broadcast.Recurrence.WEEKLY,
            next_run_at=timezone.now() + timedelta(days=7),
        )
    )
    sending.broadcast_chunks_send()
    run.refresh_from_db()
    assert run.status == "done" and run.broadcast.status == "scheduled"


def test_a_run_without_recipients_is_done_at_once(fake_line, wakeups):  # noqa: F811 (the imported fixture)
    residents(1, following=False)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    assert (run.status, run.recipients_total, run.skipped_blocked) == ("done", 0, 1)
    assert run.broadcast.status == "sent" and wakeups == []


# --------------------------------------------------------------------------
# Retries, all with the chunk's own retry key
# --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500])
def test_a_429_or_500_is_retried_after_a_back_off_with_the_same_retry_key(fake_line, status):
    people = residents(3)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    fake_line.fail_next(status, path_prefix=MULTICAST)
    outcome = sending.broadcast_chunks_send()
    assert (outcome.sent, outcome.retrying) == (0, 1)
    chunk = run.chunks.get()
    assert (chunk.status, chunk.attempts, chunk.claim_token) == ("pending", 1, None)
    assert chunk.last_error.startswith(str(status)) and chunk.next_attempt_at > timezone.now()
    assert sending.broadcast_chunks_send().sent == 0  # not due yet: no call
    with time_machine.travel(chunk.next_attempt_at + timedelta(seconds=1)):
        assert sending.broadcast_chunks_send().sent == 1
    chunk.refresh_from_db()
    assert (chunk.status, chunk.attempts) == ("sent", 2)
    assert chunk_keys(fake_line) == [str(chunk.retry_key)] * 2
    assert sorted(delivered_to(fake_line)) == sorted(ids(people))


def test_a_retry_after_from_line_says_when_to_try_again(fake_line):
    residents(1)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    fake_line.fail_next(429, path_prefix=MULTICAST, headers={"Retry-After": "90"})
    with time_machine.travel(timezone.now(), tick=False):
        sending.broadcast_chunks_send()
        assert run.chunks.get().next_attempt_at == timezone.now() + timedelta(seconds=90)


def test_a_400_fails_the_chunk_with_lines_message_and_the_run_counts_it(fake_line):
    residents(2)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    body = {"message": "The request body has 1 error(s)", "details": [{"message": "invalid", "property": "to[0]"}]}
    fake_line.fail_next(400, path_prefix=MULTICAST, body=body)
    assert sending.broadcast_chunks_send().failed == 1
    chunk = run.chunks.get()
    assert chunk.status == "failed"
    assert chunk.last_error == "400: The request body has 1 error(s) (to[0]: invalid)"
    run.refresh_from_db()
    assert (run.status, run.delivered, run.failed) == ("done", 0, 2)
    assert len(fake_line.calls(MULTICAST)) == 1  # never retried


def test_a_run_line_took_none_of_ends_its_broadcast_as_not_sent_with_what_to_check(fake_line):
    residents(2)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    fake_line.fail_next(401, path_prefix=MULTICAST, body={"message": "Authentication failed"})
    assert sending.broadcast_chunks_send().failed == 1
    broadcast = Broadcast.objects.get(pk=run.broadcast_id)
    assert broadcast.status == "refused"  # not 配信済み: nobody received it
    assert broadcast.refused_reason == (
        "LINE が配信を受け付けませんでした（2 人分）。「配信の実行」で LINE の応答を確かめてください。"
    )


def test_a_chunk_over_the_monthly_limit_fails_at_once_with_what_staff_can_do(fake_line):
    residents(2)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    # Checked when the run started, used up since (by notices, another tool on the channel…).
    fake_line.set_quota(type="limited", value=0)
    assert sending.broadcast_chunks_send().failed == 1
    chunk = run.chunks.get()
    assert (chunk.status, chunk.attempts) == ("failed", 1)
    assert chunk.last_error == f"{retry.MONTHLY_LIMIT_HINT}（429: You have reached your monthly limit.）"
    assert len(fake_line.calls(MULTICAST)) == 1  # not retried: nothing changes before next month


def test_a_409_for_the_retry_key_counts_as_sent_and_delivers_nothing_twice(fake_line):
    people = residents(2)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    chunk = run.chunks.get()
    # A sender that died after LINE took the request: LINE knows the key already.
    with LineClient() as line:
        first = line.multicast(chunk.line_user_ids, TEXT, str(chunk.retry_key))
    assert first.ok
    assert sending.broadcast_chunks_send().sent == 1
    chunk.refresh_from_db()
    assert fake_line.last_call(MULTICAST).status == 409
    assert chunk.status == "sent" and chunk.line_request_id == first.request_id
    assert sorted(delivered_to(fake_line)) == sorted(ids(people))
    run.refresh_from_db()
    assert (run.status, run.delivered) == ("done", 2)


def test_a_chunk_whose_sender_died_is_sent_again_with_its_key_once_the_lease_ran_out(fake_line, wakeups):  # noqa: F811 (the imported fixture)
    residents(2)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    now = timezone.now()
    run.chunks.update(status="sending", claim_token=uuid.uuid4(), lease_until=now + timedelta(minutes=1), attempts=1)
    assert sending.broadcast_chunks_send().sent == 0  # still held
    assert sending.broadcast_sweep(now=now + timedelta(seconds=30))["chunks_due"] is False
    later = now + timedelta(minutes=2)
    assert sending.broadcast_sweep(now=later)["chunks_due"] is True and ("send",) in wakeups
    with time_machine.travel(later):
        assert sending.broadcast_chunks_send().sent == 1
    chunk = run.chunks.get()
    assert (chunk.status, chunk.attempts) == ("sent", 2)
    assert chunk_keys(fake_line) == [str(chunk.retry_key)]


def test_a_chunk_that_used_up_its_attempts_fails_for_good(fake_line):
    residents(1)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    run.chunks.update(attempts=sending.CHUNK_MAX_ATTEMPTS, last_error="500: Internal Server Error")
    assert sending.broadcast_chunks_send().sent == 0
    chunk = run.chunks.get()
    assert chunk.status == "failed" and chunk.last_error.startswith("gave up after 10 attempts: 500")
    run.refresh_from_db()
    assert (run.status, run.failed) == ("done", 1) and fake_line.calls(MULTICAST) == []


def test_over_the_multicast_rate_limit_a_chunk_waits_for_the_next_window_without_losing_an_attempt(fake_line, settings):
    settings.LINE_RATE_LIMITS = {**django_settings.LINE_RATE_LIMITS, "multicast": 1}
    residents(501)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    with time_machine.travel(timezone.now(), tick=False):
        outcome = sending.broadcast_chunks_send()
        assert (outcome.sent, outcome.deferred) == (1, 1)
        late = run.chunks.get(status="pending")
        assert late.attempts == 0 and late.next_attempt_at > timezone.now()
    with time_machine.travel(late.next_attempt_at):
        assert sending.broadcast_chunks_send().sent == 1
    assert len(fake_line.calls(MULTICAST)) == 2


def test_chunks_of_a_cancelled_run_are_not_sent(fake_line):
    residents(1)
    run = prepared(run_for(audience=Broadcast.Audience.EVERYONE))
    BroadcastRun.objects.filter(pk=run.pk).update(status=BroadcastRun.Status.CANCELLED)
    assert sending.broadcast_chunks_send().sent == 0
    assert run.chunks.get().status == BroadcastChunk.Status.PENDING and fake_line.calls(MULTICAST) == []
