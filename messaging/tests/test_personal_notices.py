"""A personal notice to one resident (messaging.services.outbox_push_create): retried with its own
retry key until LINE takes it, delivered once, and a final failure is recorded for staff."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.test import TestCase
from django.utils import timezone

from messaging import services
from messaging.models import OutboxMessage
from messaging.tests.test_webhook import USER, line_channel, wakeups  # noqa: F401 (autouse fixtures)

pytestmark = pytest.mark.django_db
PUSH = "/v2/bot/message/push"
NOTICE = [{"type": "text", "text": "申請（受付番号 R-0001）の審査が終わりました。https://city.example.jp/status"}]


def notice() -> OutboxMessage:
    with TestCase.captureOnCommitCallbacks(execute=True), transaction.atomic():
        (row_id,) = services.outbox_push_create(line_user_id=USER, messages=NOTICE)
    return OutboxMessage.objects.get(pk=row_id)


def pushed_keys(fake_line) -> list[str]:
    return [call.headers["x-line-retry-key"] for call in fake_line.calls(PUSH)]


def test_a_notice_goes_by_push_with_a_retry_key_after_its_commit(fake_line, wakeups):  # noqa: F811
    row = notice()
    assert (row.kind, row.status, row.payload) == ("push", "pending", NOTICE)
    assert wakeups == [("messaging.tasks.send_outbox", [row.pk])]
    assert services.outbox_send(ids=[row.pk]).sent == 1
    assert pushed_keys(fake_line) == [str(row.retry_key)]
    assert fake_line.messages_sent_to(USER) == NOTICE


def test_a_notice_answered_429_then_500_is_retried_with_the_same_key_and_delivered_once(fake_line):
    row = notice()
    fake_line.fail_next(429, path_prefix=PUSH)
    fake_line.fail_next(500, path_prefix=PUSH)
    now = timezone.now()
    for expected in ("retrying", "retrying", "sent"):
        outcome = services.outbox_send(now=now)
        assert getattr(outcome, expected) == 1
        row.refresh_from_db()
        now = max(now, row.next_attempt_at) + timedelta(seconds=1)
    assert (row.status, row.attempts) == ("sent", 3)
    assert [call.status for call in fake_line.calls(PUSH)] == [429, 500, 200]
    assert pushed_keys(fake_line) == [str(row.retry_key)] * 3
    assert fake_line.messages_sent_to(USER) == NOTICE


def test_a_notice_waits_as_long_as_lines_retry_after_says(fake_line):
    row = notice()
    fake_line.fail_next(429, path_prefix=PUSH, headers={"Retry-After": "120"})
    now = timezone.now()
    services.outbox_send(now=now)
    row.refresh_from_db()
    assert row.next_attempt_at == now + timedelta(seconds=120)


def test_a_notice_line_took_whose_answer_was_lost_is_answered_409_on_the_repeat_and_counted_delivered(
    fake_line, settings
):
    settings.LINE_API_TIMEOUT_SECONDS = 1
    row = notice()
    fake_line.delay_next(3, path_prefix=PUSH)  # LINE takes the push; its answer comes after the time-out
    assert services.outbox_send().retrying == 1
    row.refresh_from_db()
    assert services.outbox_send(now=row.next_attempt_at + timedelta(seconds=1)).sent == 1
    row.refresh_from_db()
    taken, repeat = fake_line.calls(PUSH)
    assert (taken.status, repeat.status) == (200, 409)
    assert (row.status, row.line_request_id) == ("sent", taken.request_id)
    assert pushed_keys(fake_line) == [str(row.retry_key)] * 2
    assert fake_line.messages_sent_to(USER) == NOTICE  # once


def test_a_notice_line_refuses_is_recorded_as_failed_with_lines_message(fake_line):
    row = notice()
    fake_line.fail_next(400, path_prefix=PUSH, body={"message": "The user hasn't added the LINE Official Account"})
    assert services.outbox_send().failed == 1
    row.refresh_from_db()
    assert (row.status, row.last_error) == ("failed", "400: The user hasn't added the LINE Official Account")
    assert services.outbox_send(now=timezone.now() + timedelta(hours=1)).sent == 0
    assert len(fake_line.calls(PUSH)) == 1 and fake_line.messages_sent_to(USER) == []


def test_a_notice_that_keeps_failing_is_given_up_and_recorded_after_its_last_attempt(fake_line):
    row = notice()
    fake_line.fail_all(500, path_prefix=PUSH)
    now = timezone.now()
    for _ in range(services.OUTBOX_MAX_ATTEMPTS):
        services.outbox_send(now=now)
        now += timedelta(hours=1)
    row.refresh_from_db()
    assert row.status == "failed" and row.last_error.startswith(
        f"gave up after {services.OUTBOX_MAX_ATTEMPTS} attempts"
    )
    assert len(fake_line.calls(PUSH)) == services.OUTBOX_MAX_ATTEMPTS
    assert set(pushed_keys(fake_line)) == {str(row.retry_key)}
    assert fake_line.messages_sent_to(USER) == []
