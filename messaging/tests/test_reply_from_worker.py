"""The inbox worker sends an event's reply itself, after the commit; the sender task and the sweep
remain the fallback. One LINE client per process, kept with its connections. No needless statements."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings as django_settings
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from messaging import ratelimit, services
from messaging.line import client as line_client
from messaging.line.client import LineClient, shared_client
from messaging.models import InboxEvent, LineUser, OutboxMessage
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    USER,
    line_channel,
    text_event,
    wakeups,
)

pytestmark = pytest.mark.django_db
REPLY = "/v2/bot/message/reply"
PUSH = "/v2/bot/message/push"
SEND_OUTBOX = "messaging.tasks.send_outbox"
START = datetime(2030, 1, 7, 9, 20, 0, 250000, tzinfo=ZoneInfo("Asia/Tokyo"))


def resident_says(fake_line, text: str = "こんにちは") -> str:
    """Store a text event with a reply token the fake LINE issued; returns the token."""
    token = fake_line.issue_reply_token(USER)
    services.inbox_store(events=[text_event(USER, text, reply_token=token)])
    return token


def process(django_capture_on_commit_callbacks) -> services.InboxRun:
    """Run the inbox worker as the queue would: its commits really happen (callbacks run)."""
    with django_capture_on_commit_callbacks(execute=True):
        return services.inbox_process_user(line_user_id=USER)


def sender_wakeups(wakeups) -> list[tuple]:  # noqa: F811 (the imported fixture)
    return [call for call in wakeups if call[0] == SEND_OUTBOX]


def test_the_inbox_worker_replies_itself_without_queueing_the_sender(
    fake_line,
    wakeups,  # noqa: F811 (the imported fixture)
    django_capture_on_commit_callbacks,
):
    token = resident_says(fake_line)
    assert process(django_capture_on_commit_callbacks).processed == 1
    row = OutboxMessage.objects.get()
    assert (row.status, row.sent_via, row.attempts) == ("sent", "reply", 1)
    assert [call.body["replyToken"] for call in fake_line.calls(REPLY)] == [token]
    assert fake_line.calls(PUSH) == [] and fake_line.messages_sent_to(USER)
    assert sender_wakeups(wakeups) == []  # one queue hop: no send_outbox task
    assert services.outbox_send() == services.SendRun()  # nothing left: replied once


def test_a_reply_deferred_by_the_rate_limit_stays_pending_for_the_sweep(
    fake_line,
    wakeups,  # noqa: F811 (the imported fixture)
    django_capture_on_commit_callbacks,
    settings,
):
    settings.LINE_RATE_LIMITS = {**django_settings.LINE_RATE_LIMITS, "reply": 1}
    with time_machine.travel(START, tick=False) as clock:
        token = resident_says(fake_line)
        ratelimit.acquire("reply")  # another worker used this second's only reply
        assert process(django_capture_on_commit_callbacks).processed == 1
        row = OutboxMessage.objects.get()
        next_second = START.replace(microsecond=0) + timedelta(seconds=1)
        assert (row.status, row.attempts, row.next_attempt_at, row.reply_attempted_at) == (
            "pending",
            0,
            next_second,
            None,
        )
        assert fake_line.calls(REPLY) == [] and sender_wakeups(wakeups) == []  # a sender now would find nothing due

        clock.move_to(next_second)
        assert services.inbox_sweep()["outbox_due"] is True
        assert sender_wakeups(wakeups) == [(SEND_OUTBOX, None)]
        assert services.outbox_send().sent == 1
    row.refresh_from_db()
    assert (row.status, row.sent_via) == ("sent", "reply")
    assert [call.body["replyToken"] for call in fake_line.calls(REPLY)] == [token]


def test_when_the_worker_cannot_send_the_rows_go_to_the_sender_task(
    fake_line,
    wakeups,  # noqa: F811 (the imported fixture)
    django_capture_on_commit_callbacks,
    monkeypatch,
):
    resident_says(fake_line)
    real_claim = services._outbox_claim

    def database_gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "_outbox_claim", database_gone)
    assert process(django_capture_on_commit_callbacks).processed == 1
    assert InboxEvent.objects.get().status == "done"  # the event's own work is committed regardless
    row = OutboxMessage.objects.get()
    assert (row.status, row.attempts, row.reply_attempted_at) == ("pending", 0, None)
    assert sender_wakeups(wakeups) == [(SEND_OUTBOX, [row.pk])]
    assert fake_line.calls(REPLY) == []

    monkeypatch.setattr(services, "_outbox_claim", real_claim)
    assert services.outbox_send(ids=[row.pk]).sent == 1  # the queued task
    row.refresh_from_db()
    assert (row.status, row.sent_via) == ("sent", "reply") and len(fake_line.calls(REPLY)) == 1


def test_a_worker_out_of_time_for_sending_queues_the_sender_task(
    fake_line,
    wakeups,  # noqa: F811 (the imported fixture)
    django_capture_on_commit_callbacks,
    monkeypatch,
):
    monkeypatch.setattr(services, "OUTBOX_WRITTEN_BUDGET_SECONDS", 0)
    resident_says(fake_line)
    process(django_capture_on_commit_callbacks)
    row = OutboxMessage.objects.get()
    assert row.status == "pending" and fake_line.calls(REPLY) == []
    assert sender_wakeups(wakeups) == [(SEND_OUTBOX, [row.pk])]


def test_an_unknown_reply_outcome_in_the_worker_is_left_to_staff_not_pushed(
    fake_line,
    wakeups,  # noqa: F811 (the imported fixture)
    django_capture_on_commit_callbacks,
):
    resident_says(fake_line)
    fake_line.fail_next(500, path_prefix=REPLY)
    process(django_capture_on_commit_callbacks)
    row = OutboxMessage.objects.get()
    assert (row.status, row.reply_token) == ("unknown", "")
    assert fake_line.calls(PUSH) == [] and sender_wakeups(wakeups) == []


def test_a_known_residents_event_takes_one_lock_and_one_plain_look_after(fake_line):
    LineUser.objects.create(line_user_id=USER)
    resident_says(fake_line)
    with CaptureQueriesContext(connection) as queries:
        assert services.inbox_process_user(line_user_id=USER).outcomes == ["done"]
    on_line_users = [query["sql"] for query in queries if 'FROM "messaging_lineuser"' in query["sql"]]
    assert len(on_line_users) == 1  # the claim: no lookup before it, no second locked round after
    on_events = [query["sql"] for query in queries if 'FROM "messaging_inboxevent"' in query["sql"]]
    assert len(on_events) == 2  # the event claimed, then "anything else?" once the resident is let go


# --------------------------------------------------------------------------
# The shared client
# --------------------------------------------------------------------------


def test_the_shared_client_is_kept_per_process_and_follows_the_settings(settings, monkeypatch):
    token = settings.LINE_CHANNEL_ACCESS_TOKEN
    settings.LINE_API_BASE_URL = "http://127.0.0.1:9/"
    first = shared_client()
    assert shared_client() is first
    settings.LINE_API_BASE_URL = "http://127.0.0.1:10/"
    other = shared_client()
    assert other is not first and other._api_client.configuration.host == "http://127.0.0.1:10"
    settings.LINE_CHANNEL_ACCESS_TOKEN = "another-token"
    assert shared_client() is not other
    settings.LINE_API_BASE_URL = "http://127.0.0.1:9/"
    settings.LINE_CHANNEL_ACCESS_TOKEN = token
    assert shared_client() is first  # still kept

    closed = []
    monkeypatch.setattr(LineClient, "close", lambda self: closed.append(self))
    monkeypatch.setattr(line_client.os, "getpid", lambda: -1)  # as in a forked qcluster worker
    forked = shared_client()
    assert forked is not first and closed == []  # the parent's connections are dropped, never closed
    assert list(line_client._shared_clients.values()) == [forked]


def test_the_oldest_shared_client_is_closed_beyond_the_kept_number(settings, monkeypatch):
    closed = []
    monkeypatch.setattr(LineClient, "close", lambda self: closed.append(self))
    clients = []
    for port in range(20, 20 + line_client.SHARED_CLIENTS_KEPT + 1):
        settings.LINE_API_BASE_URL = f"http://127.0.0.1:{port}"
        clients.append(shared_client())
    assert closed == [clients[0]]
    assert len(line_client._shared_clients) == line_client.SHARED_CLIENTS_KEPT


def test_replies_reuse_the_kept_connection(
    fake_line,
    django_capture_on_commit_callbacks,
):
    pool = shared_client()._api_client.rest_client.pool_manager.connection_from_url(fake_line.url)
    before = pool.num_connections
    for text in ("一つ目", "二つ目", "三つ目"):
        resident_says(fake_line, text)
        process(django_capture_on_commit_callbacks)
    assert len(fake_line.calls(REPLY)) == 3
    assert pool.num_connections - before <= 1  # one connection for the three calls (none if kept from before)
