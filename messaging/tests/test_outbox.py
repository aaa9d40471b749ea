"""The outbox sender: reply while fresh (once), else push with the row's retry key; back off and retry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from messaging import services
from messaging.line import retry
from messaging.line.client import LineClient
from messaging.models import InboxEvent, OutboxMessage
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    USER,
    line_channel,
    text_event,
    user_id,
    wakeups,
)

pytestmark = pytest.mark.django_db
PUSH = "/v2/bot/message/push"
REPLY = "/v2/bot/message/reply"


def queue(
    user: str = USER, texts=("受け付けました",), *, reply_token: str = "", expires_in: float = 50
) -> OutboxMessage:
    now = timezone.now()
    return OutboxMessage.objects.create(
        line_user_id=user,
        kind="reply" if reply_token else "push",
        reply_token=reply_token,
        reply_token_expires_at=now + timedelta(seconds=expires_in) if reply_token else None,
        payload=[{"type": "text", "text": text} for text in texts],
        next_attempt_at=now,
    )


def retry_keys(fake_line) -> list[str | None]:
    return [call.headers.get("x-line-retry-key") for call in fake_line.calls(PUSH)]


def test_fresh_reply_token_is_used_once_without_retry_key(fake_line):
    row = queue(reply_token=fake_line.issue_reply_token(USER))
    assert services.outbox_send().sent == 1
    row.refresh_from_db()
    call = fake_line.last_call(REPLY)
    assert "x-line-retry-key" not in call.headers
    assert (row.status, row.sent_via, row.attempts) == ("sent", "reply", 1)
    assert row.line_request_id == call.request_id and row.reply_attempted_at is not None
    assert fake_line.messages_sent_to(USER) == [{"type": "text", "text": "受け付けました"}]


def test_reply_token_expired_falls_back_to_push_with_retry_key(fake_line):
    row = queue(reply_token=fake_line.issue_reply_token(USER), expires_in=-1)
    services.outbox_send()
    row.refresh_from_db()
    assert fake_line.calls(REPLY) == []
    assert retry_keys(fake_line) == [str(row.retry_key)]
    assert (row.status, row.kind, row.sent_via) == ("sent", "reply", "push")  # what was planned, what was used


def test_refused_reply_token_falls_back_to_push(fake_line):
    row = queue(reply_token="a-token-line-does-not-know")
    services.outbox_send()
    row.refresh_from_db()
    assert [call.status for call in fake_line.calls(REPLY)] == [400]
    assert retry_keys(fake_line) == [str(row.retry_key)]
    assert (row.status, row.sent_via) == ("sent", "push")
    assert fake_line.messages_sent_to(USER) == row.payload


def test_a_reply_without_an_answer_is_never_sent_again_by_reply_or_push(fake_line, settings, admin_client):
    settings.LINE_API_TIMEOUT_SECONDS = 0.3
    row = queue(reply_token=fake_line.issue_reply_token(USER))
    fake_line.delay_next(1.0, path_prefix=REPLY)  # LINE got the reply, its answer never came
    assert services.outbox_send().unknown == 1
    row.refresh_from_db()
    assert (row.status, row.sent_via) == ("unknown", "") and row.reply_attempted_at is not None
    assert row.last_error.startswith(services.UNKNOWN_REPLY_REASON) and "timed out" in row.last_error
    assert services.outbox_send(now=timezone.now() + timedelta(hours=1)) == services.SendRun()  # nothing due
    assert len(fake_line.calls(REPLY)) == 1  # never a second reply...
    assert fake_line.calls(PUSH) == []  # ...nor the same messages by push
    assert fake_line.messages_sent_to(USER) == row.payload  # the resident got them once
    # Staff see it, with the reason; it does not hold back the resident's later messages.
    listing = admin_client.get(reverse("admin:messaging_outboxmessage_changelist") + "?status__exact=unknown")
    assert services.UNKNOWN_REPLY_REASON in listing.content.decode()
    later = queue(texts=["次のお知らせ"])
    assert services.outbox_send().sent == 1
    later.refresh_from_db()
    assert later.status == "sent"


def test_a_reply_answered_with_5xx_is_unknown_and_staff_resend_it_by_push(fake_line, admin_client):
    row = queue(reply_token=fake_line.issue_reply_token(USER))
    fake_line.fail_next(500, path_prefix=REPLY)
    assert services.outbox_send().unknown == 1
    row.refresh_from_db()
    assert (
        row.status == "unknown" and row.last_error == f"{services.UNKNOWN_REPLY_REASON}（500: Internal Server Error）"
    )
    assert fake_line.calls(PUSH) == []
    # The failed-rows action leaves it alone: only the action for unknown rows resends it.
    changelist = reverse("admin:messaging_outboxmessage_changelist")
    admin_client.post(changelist, {"action": "retry_messages", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.status == "unknown"
    # Having checked that it did not arrive, staff resend it by push, with its retry key.
    admin_client.post(changelist, {"action": "resend_unknown_by_push", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert (row.status, row.kind, row.attempts) == ("pending", "push", 0)
    assert services.outbox_send().sent == 1
    row.refresh_from_db()
    assert (row.status, row.sent_via) == ("sent", "push")
    assert retry_keys(fake_line) == [str(row.retry_key)]
    assert fake_line.messages_sent_to(USER) == row.payload


def test_a_reply_refused_with_429_is_pushed_after_the_back_off(fake_line):
    row = queue(reply_token=fake_line.issue_reply_token(USER))
    fake_line.fail_next(429, path_prefix=REPLY)  # not taken: nothing was sent
    assert services.outbox_send().retrying == 1
    row.refresh_from_db()
    assert (row.status, row.reply_token) == ("pending", "")  # the reply is spent: push from now on
    services.outbox_send(now=row.next_attempt_at + timedelta(seconds=1))
    row.refresh_from_db()
    assert (row.status, row.sent_via) == ("sent", "push")
    assert len(fake_line.calls(REPLY)) == 1 and retry_keys(fake_line) == [str(row.retry_key)]


def test_429_backs_off_and_retries_with_same_key(fake_line):
    row = queue()
    fake_line.fail_next(429, path_prefix=PUSH)
    before = timezone.now()
    assert services.outbox_send().retrying == 1
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "429: Too Many Requests")
    # 10 s, with jitter
    assert before + timedelta(seconds=4) < row.next_attempt_at < timezone.now() + timedelta(seconds=16)
    assert services.outbox_send().sent == 0  # not due yet: no call
    assert len(fake_line.calls(PUSH)) == 1
    assert services.outbox_send(now=row.next_attempt_at + timedelta(seconds=1)).sent == 1
    row.refresh_from_db()
    assert row.status == "sent" and row.attempts == 2
    assert retry_keys(fake_line) == [str(row.retry_key)] * 2


def test_a_push_over_the_monthly_limit_fails_at_once_and_the_residents_next_reply_still_goes(fake_line):
    fake_line.set_quota(type="limited", value=0)
    notice = queue(USER, ["申請の状況が変わりました"])
    answer = queue(USER, ["受け付けました"], reply_token=fake_line.issue_reply_token(USER))
    services.outbox_send()
    notice.refresh_from_db()
    answer.refresh_from_db()
    assert (notice.status, notice.attempts) == ("failed", 1)
    assert notice.last_error == f"{retry.MONTHLY_LIMIT_HINT}（429: You have reached your monthly limit.）"
    # Replies do not count against the monthly limit: the conversation goes on.
    assert (answer.status, answer.sent_via) == ("sent", "reply")
    assert [call.path for call in fake_line.calls()] == [PUSH, REPLY]


def test_back_off_grows_and_has_jitter():
    delays = [retry.backoff(attempt, 5).total_seconds() for attempt in (1, 2, 3, 4)]
    assert 2.5 <= delays[0] <= 7.5 and 20 <= delays[3] <= 60
    assert len({retry.backoff(3, 5) for _ in range(20)}) > 1
    assert retry.backoff(50, 5).total_seconds() <= retry.BACKOFF_MAX_SECONDS * 1.5


def test_500_retries_then_succeeds(fake_line):
    row = queue()
    fake_line.fail_next(500, times=2, path_prefix=PUSH)
    now = timezone.now()
    for _ in range(3):
        services.outbox_send(now=now)
        now += timedelta(minutes=5)
    row.refresh_from_db()
    assert (row.status, row.attempts, row.sent_via) == ("sent", 3, "push")
    assert [call.status for call in fake_line.calls(PUSH)] == [500, 500, 200]
    assert retry_keys(fake_line) == [str(row.retry_key)] * 3
    assert fake_line.messages_sent_to(USER) == row.payload  # delivered once


def test_409_counts_as_sent(fake_line):
    row = queue()
    # An earlier attempt was accepted by LINE, but its answer was lost.
    with LineClient() as line:
        accepted = line.push(USER, row.payload, str(row.retry_key))
    assert services.outbox_send().sent == 1
    row.refresh_from_db()
    assert fake_line.last_call(PUSH).status == 409
    assert (row.status, row.line_request_id) == ("sent", accepted.request_id)
    assert len(fake_line.messages_sent_to(USER)) == 1


def test_400_is_final_failure_with_lines_message(fake_line):
    row = queue()
    fake_line.fail_next(
        400,
        path_prefix=PUSH,
        body={
            "message": "The request body has 1 error(s)",
            "details": [{"message": "May not be empty", "property": "messages[0].text"}],
        },
    )
    assert services.outbox_send().failed == 1
    row.refresh_from_db()
    assert row.status == "failed"
    assert row.last_error == "400: The request body has 1 error(s) (messages[0].text: May not be empty)"
    services.outbox_send(now=timezone.now() + timedelta(hours=1))
    assert len(fake_line.calls(PUSH)) == 1  # never retried


def test_timeout_retries(fake_line, settings):
    settings.LINE_API_TIMEOUT_SECONDS = 0.3
    row = queue()
    fake_line.delay_next(1.0, path_prefix=PUSH)
    assert services.outbox_send().retrying == 1
    row.refresh_from_db()
    assert row.status == "pending" and row.last_error.startswith("no answer: ReadTimeoutError")
    services.outbox_send(now=row.next_attempt_at + timedelta(seconds=1))
    row.refresh_from_db()
    # LINE had accepted the first push: the retry with the same key is a 409, and the resident got it once.
    assert [call.status for call in fake_line.calls(PUSH)] == [200, 409]
    assert retry_keys(fake_line) == [str(row.retry_key)] * 2
    assert row.status == "sent" and len(fake_line.messages_sent_to(USER)) == 1


def test_retries_stop_after_the_maximum_number_of_attempts(fake_line):
    row = queue()
    fake_line.fail_all(503, path_prefix=PUSH)
    now = timezone.now()
    for _ in range(services.OUTBOX_MAX_ATTEMPTS):
        services.outbox_send(now=now)
        now += timedelta(hours=1)
    row.refresh_from_db()
    assert row.status == "failed" and row.last_error.startswith(
        f"gave up after {services.OUTBOX_MAX_ATTEMPTS} attempts"
    )


def test_more_than_five_messages_are_split_and_sent_in_order(fake_line):
    event = InboxEvent.objects.create(
        webhook_event_id="01JTESTSPLIT",
        line_user_id=USER,
        event_type="message",
        line_timestamp=timezone.now(),
        payload=text_event(USER, "x"),
    )
    messages = [{"type": "text", "text": f"{n}通目"} for n in range(1, 8)]
    first_id, second_id = services._outbox_write(USER, event, fake_line.issue_reply_token(USER), messages)
    first, second = OutboxMessage.objects.get(pk=first_id), OutboxMessage.objects.get(pk=second_id)
    assert (first.kind, len(first.payload), second.kind, len(second.payload)) == ("reply", 5, "push", 2)
    other = queue(user_id(3), ["ほかの住民へ"])

    fake_line.fail_next(429, path_prefix=REPLY)
    run = services.outbox_send()
    # The first row backs off; the second waits for it; another resident is not held up.
    assert (run.sent, run.retrying) == (1, 1)
    second.refresh_from_db()
    other.refresh_from_db()
    assert second.status == "pending" and second.attempts == 0 and other.status == "sent"
    services.outbox_send(now=timezone.now() + timedelta(minutes=1))
    assert [m["text"] for m in fake_line.messages_sent_to(USER)] == [f"{n}通目" for n in range(1, 8)]
    first.refresh_from_db()
    assert first.sent_via == "push" and len(fake_line.calls(REPLY)) == 1  # the token was used once


def test_a_dead_senders_claim_is_taken_over_after_its_lease(fake_line):
    row = queue(reply_token=fake_line.issue_reply_token(USER))
    now = timezone.now()
    services._outbox_claim(None, now, 10)  # a sender claimed it, then died before calling LINE
    assert services.outbox_send(now=now).sent == 0
    assert services.outbox_send(now=now + services.OUTBOX_LEASE + timedelta(seconds=1)).sent == 1
    row.refresh_from_db()
    # No reply was attempted (so a push cannot double it); the token has expired meanwhile.
    assert (row.status, row.sent_via, row.attempts) == ("sent", "push", 2)
    assert fake_line.calls(REPLY) == []


def test_a_retry_key_older_than_a_day_is_not_reused(fake_line):
    row = queue()
    OutboxMessage.objects.filter(pk=row.pk).update(retry_key_issued_at=timezone.now() - timedelta(hours=25))
    assert services.outbox_send().failed == 1
    row.refresh_from_db()
    assert row.last_error == "not sent within the retry key's 24 hours"
    old_key = row.retry_key
    assert services.outbox_retry(ids=[row.pk]) == 1
    row.refresh_from_db()
    assert row.retry_key != old_key and row.status == "pending"
    services.outbox_send()
    assert retry_keys(fake_line) == [str(row.retry_key)]


def test_sweep_wakes_waiting_residents_and_the_sender(wakeups):  # noqa: F811 (the imported fixture)
    services.inbox_store(events=[text_event(USER, "届いたまま")])
    assert services.inbox_sweep() == {"users": 0, "outbox_due": False}  # its own wake-up is on the way
    later = timezone.now() + services.SWEEP_GRACE + timedelta(seconds=1)
    queue()
    assert services.inbox_sweep(now=later) == {"users": 1, "outbox_due": True}
    assert wakeups[-2:] == [("messaging.tasks.process_user_inbox", USER), ("messaging.tasks.send_outbox", None)]


def test_outbox_admin_shows_payload_and_error_and_resends(fake_line, admin_client):
    row = queue(texts=["受付番号：SODAI-2026-000001"])
    fake_line.fail_next(400, path_prefix=PUSH, body={"message": "Invalid message"})
    services.outbox_send()
    page = admin_client.get(reverse("admin:messaging_outboxmessage_change", args=[row.pk])).content.decode()
    assert "SODAI-2026-000001" in page and "Invalid message" in page
    listing = admin_client.get(reverse("admin:messaging_outboxmessage_changelist") + "?status__exact=failed")
    assert "400: Invalid message" in listing.content.decode()
    admin_client.post(
        reverse("admin:messaging_outboxmessage_changelist"), {"action": "retry_messages", "_selected_action": [row.pk]}
    )
    services.outbox_send()
    row.refresh_from_db()
    assert row.status == "sent" and retry_keys(fake_line) == [str(row.retry_key)] * 2


def test_a_residents_queue_is_claimed_from_its_head_exactly_as_the_everyone_query_would():
    """The sender's per-resident claim (`_outbox_queue_heads`) and the sweep's (`outbox_due`) agree.

    Random queues of unsent, sent, failed and unknown rows, due or not, leases live or expired:
    for each the resident's claimable row is the same, and it is never one behind an unsent row.
    """
    import random

    rng = random.Random(20261203)
    now = timezone.now()
    users = [user_id(900 + number) for number in range(6)]
    for _round in range(25):
        OutboxMessage.objects.all().delete()
        for user in users:
            for _row in range(rng.randint(0, 4)):
                row = queue(user)
                row.status = rng.choice(["pending", "pending", "sending", "sent", "failed", "unknown"])
                row.next_attempt_at = now + timedelta(seconds=rng.choice([-60, -1, 30]))
                row.lease_until = now + timedelta(seconds=rng.choice([-5, 60])) if row.status == "sending" else None
                row.save()
        expected = set(
            services.selectors.outbox_due(now=now).filter(line_user_id__in=users).values_list("id", flat=True)
        )
        heads = {row.pk for row in services._outbox_queue_heads(set(users), now, batch_size=len(users))}
        assert heads == expected
        assert len({OutboxMessage.objects.get(pk=pk).line_user_id for pk in heads}) == len(heads)


def test_a_row_waiting_for_its_retry_holds_back_the_residents_later_rows(fake_line):
    first, later = queue(texts=("一通目",)), queue(texts=("二通目",))
    OutboxMessage.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=1))
    other = queue(user_id(950), texts=("別の住民",))
    run = services.outbox_send(ids=[later.pk, other.pk])
    assert run.sent == 1
    assert OutboxMessage.objects.get(pk=later.pk).status == "pending"
    assert OutboxMessage.objects.get(pk=other.pk).status == "sent"


def test_a_long_queue_held_back_does_not_hide_another_residents_due_row(fake_line, monkeypatch):
    monkeypatch.setattr(services, "OUTBOX_QUEUE_PAGE", 5)  # pages of 5 rows: the held queue spans three
    held = [queue(texts=(f"{number} 通目",)) for number in range(12)]
    OutboxMessage.objects.filter(pk=held[0].pk).update(next_attempt_at=timezone.now() + timedelta(minutes=1))
    other = queue(user_id(951), texts=("別の住民",))
    run = services.outbox_send(ids=[held[-1].pk, other.pk])
    assert run.sent == 1 and OutboxMessage.objects.get(pk=other.pk).status == "sent"
    assert not OutboxMessage.objects.filter(line_user_id=USER, status="sent").exists()
