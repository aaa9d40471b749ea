"""Hardening of the LINE pipeline: each test is named after the behaviour it pins down.

Outbox: an unexpected exception costs one row one attempt, never the resident's queue; a reply
that may have arrived is never pushed blindly. Inbox: parked events keep nothing the resident
sent; unsigned postbacks are answered; a new event is never left to the sweep because the
resident was busy. Content from LINE is read up to the limit, no further. Shared image sniffing.
"""

from __future__ import annotations

import importlib
import io
import logging
import socket
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
import urllib3
from django.apps import apps as django_apps
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from govtech.images import sniff_image
from messaging import services
from messaging.line import client as line_client
from messaging.line import parse
from messaging.line.client import LineClient, SendResult
from messaging.models import InboxEvent, LineFollowEvent, LineUser, OutboxMessage
from messaging.tests.test_inbox_worker import engine_calls, image_bytes, photo_procedure, store  # noqa: F401
from messaging.tests.test_outbox import PUSH, REPLY, queue, retry_keys
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    USER,
    LinePhone,
    line_channel,
    now_ms,
    postback_event,
    text_event,
    user_id,
    wakeups,
)
from procedures.models import ConversationSession

pytestmark = pytest.mark.django_db
OTHER = user_id(77)


class WorkerKilled(BaseException):  # noqa: N818 (stands for a process killed mid-call)
    """Not an Exception: like a killed process, nothing in the sender catches it."""


def failing(exception: BaseException, *, only_for: str | None = None, real=None):
    """A LineClient method that raises `exception` (for one user only, when given)."""

    def call(self, to, *args, **kwargs):
        if only_for is None or to == only_for:
            raise exception
        return real(self, to, *args, **kwargs)

    return call


# --------------------------------------------------------------------------
# 2. An unexpected exception costs one row one attempt
# --------------------------------------------------------------------------


def test_an_unexpected_exception_is_retried_with_back_off_and_other_residents_are_sent(fake_line, monkeypatch, caplog):
    secret = "小城市三日月町長神田2312番地2"
    monkeypatch.setattr(
        LineClient, "push", failing(ValueError(f"bad message: {secret}"), only_for=USER, real=LineClient.push)
    )
    row, other = queue(USER, [f"住所：{secret}"]), queue(OTHER, ["受け付けました"])
    before = timezone.now()
    run = services.outbox_send()
    assert (run.sent, run.retrying) == (1, 1)
    row.refresh_from_db()
    other.refresh_from_db()
    assert other.status == "sent"
    # Released at once (not left "sending" until the lease runs out), due again after a back-off.
    assert (row.status, row.attempts, row.claim_token, row.lease_until) == ("pending", 1, None, None)
    assert before < row.next_attempt_at < timezone.now() + timedelta(seconds=10)
    assert row.last_error == "unexpected error: ValueError"  # the class, not the text
    assert secret not in caplog.text and "ValueError" in caplog.text


def test_an_unexpected_exception_gives_up_after_the_maximum_and_frees_the_residents_queue(fake_line, monkeypatch):
    real = LineClient.push

    def push(self, to, messages, retry_key):
        if messages[0]["text"] == "一通目":
            raise ValueError("boom")
        return real(self, to, messages, retry_key)

    monkeypatch.setattr(LineClient, "push", push)
    row, later = queue(USER, ["一通目"]), queue(USER, ["二通目"])
    now = timezone.now()
    for _ in range(services.OUTBOX_MAX_ATTEMPTS - 1):
        services.outbox_send(now=now)
        later.refresh_from_db()
        assert (later.status, later.attempts) == ("pending", 0)  # waits behind the first row, in order
        now += timedelta(hours=1)
    services.outbox_send(now=now)
    row.refresh_from_db()
    assert row.status == "failed" and row.attempts == services.OUTBOX_MAX_ATTEMPTS
    assert row.last_error == f"gave up after {services.OUTBOX_MAX_ATTEMPTS} attempts: unexpected error: ValueError"
    later.refresh_from_db()
    assert (later.status, later.attempts) == ("sent", 1)  # no longer held back
    assert fake_line.messages_sent_to(USER) == [{"type": "text", "text": "二通目"}]


def test_a_row_out_of_attempts_is_failed_when_claimed_and_not_sent(fake_line):
    row = queue()
    now = timezone.now()
    # Its senders kept dying mid-call: it never reached the give-up after an answer.
    OutboxMessage.objects.filter(pk=row.pk).update(
        status="sending",
        attempts=services.OUTBOX_MAX_ATTEMPTS,
        lease_until=now - timedelta(seconds=1),
        claim_token="00000000-0000-4000-8000-000000000000",
        last_error="503: Service Unavailable",
    )
    assert services.outbox_send(now=now) == services.SendRun()
    row.refresh_from_db()
    assert (row.status, row.attempts, row.claim_token) == ("failed", services.OUTBOX_MAX_ATTEMPTS, None)
    assert row.last_error == f"gave up after {services.OUTBOX_MAX_ATTEMPTS} attempts: 503: Service Unavailable"
    assert fake_line.calls(PUSH) == []


# --------------------------------------------------------------------------
# 1. A reply that may have arrived is never pushed blindly
# --------------------------------------------------------------------------


def test_an_unexpected_exception_during_a_reply_is_unknown_and_not_pushed(fake_line, monkeypatch):
    monkeypatch.setattr(LineClient, "reply", failing(RuntimeError("connection pool broke")))
    row = queue(reply_token=fake_line.issue_reply_token(USER))
    assert services.outbox_send().unknown == 1
    row.refresh_from_db()
    assert row.status == "unknown" and row.last_error.startswith(services.UNKNOWN_REPLY_REASON)
    services.outbox_send(now=timezone.now() + timedelta(hours=1))
    assert fake_line.calls(PUSH) == []


def test_a_reply_whose_sender_died_during_the_call_is_unknown_when_taken_over(fake_line, monkeypatch):
    row = queue(reply_token=fake_line.issue_reply_token(USER), expires_in=600)
    monkeypatch.setattr(LineClient, "reply", failing(WorkerKilled()))
    now = timezone.now()
    with pytest.raises(WorkerKilled):
        services.outbox_send(now=now)
    monkeypatch.undo()
    row.refresh_from_db()
    assert row.status == "sending" and row.reply_attempted_at is not None
    assert services.outbox_send(now=now + services.OUTBOX_LEASE + timedelta(seconds=1)).sent == 0
    row.refresh_from_db()
    assert (row.status, row.claim_token, row.reply_token) == ("unknown", None, "")
    assert row.last_error.startswith(services.UNKNOWN_REPLY_REASON)
    assert fake_line.calls(REPLY) == [] and fake_line.calls(PUSH) == []  # neither a second reply nor a push


def test_a_reply_that_never_left_is_pushed_with_the_retry_key(fake_line, monkeypatch):
    not_sent = SendResult(status=None, error="NewConnectionError: refused", request_sent=False)
    monkeypatch.setattr(LineClient, "reply", lambda self, token, messages: not_sent)
    row = queue(reply_token=fake_line.issue_reply_token(USER))
    assert services.outbox_send().retrying == 1
    row.refresh_from_db()
    assert (row.status, row.reply_token) == ("pending", "") and row.reply_attempted_at is not None
    services.outbox_send(now=row.next_attempt_at + timedelta(seconds=1))
    row.refresh_from_db()
    assert (row.status, row.sent_via) == ("sent", "push") and retry_keys(fake_line) == [str(row.retry_key)]


def test_the_client_tells_a_request_that_never_left_from_one_without_an_answer(settings):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.LINE_API_BASE_URL = f"http://127.0.0.1:{port}"
    with LineClient() as line:
        refused = line.push(USER, [{"type": "text", "text": "x"}], "00000000-0000-4000-8000-000000000000")
    assert refused.status is None and refused.request_sent is False
    read_timeout = urllib3.exceptions.ReadTimeoutError(None, "/v2/bot/message/reply", "Read timed out.")
    assert line_client._network_failure(read_timeout).request_sent is True
    dropped = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError())
    assert line_client._network_failure(dropped).request_sent is True


# --------------------------------------------------------------------------
# 3. Parked events keep nothing the resident sent
# --------------------------------------------------------------------------


def test_a_parked_event_keeps_none_of_the_residents_text(engine_calls, admin_client):  # noqa: F811
    store(text_event(USER, "壊れる"))
    for _ in range(services.INBOX_MAX_ATTEMPTS):
        services.inbox_process_user(line_user_id=USER)
    parked = InboxEvent.objects.get()
    assert parked.status == "failed"
    assert "壊れる" not in str(parked.payload) and "engine exploded" not in parked.last_error
    for url in (
        reverse("admin:messaging_inboxevent_change", args=[parked.pk]),
        reverse("admin:messaging_inboxevent_changelist"),
    ):
        page = admin_client.get(url).content.decode()
        assert "壊れる" not in page and "engine exploded" not in page


def engine_that(monkeypatch, *outcomes: BaseException | None) -> list[str]:
    """The engine raises the given outcomes in turn for the text "落ちる" (None: answers it)."""
    real, left, texts = services.conversation_handle, list(outcomes), []

    def engine(*, line_user_id, event, **kwargs):
        texts.append(event.text)
        outcome = left.pop(0) if event.text == "落ちる" and left else None
        if outcome is not None:
            raise outcome
        return real(line_user_id=line_user_id, event=event, **kwargs)

    monkeypatch.setattr(services, "conversation_handle", engine)
    return texts


def test_an_event_that_kills_every_worker_is_parked_and_the_residents_later_events_go_on(monkeypatch):
    texts = engine_that(monkeypatch, *[WorkerKilled()] * (services.INBOX_MAX_ATTEMPTS + 1))
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=False) as clock:
        store(text_event(USER, "落ちる"), text_event(USER, "次の用件", timestamp=now_ms() + 1000))
        with pytest.raises(WorkerKilled):  # the first attempt dies: rolled back, count and all
            services.inbox_process_user(line_user_id=USER)
        poison = InboxEvent.objects.order_by("line_timestamp").first()
        assert (poison.status, poison.attempts, poison.attempt_started_at) == ("pending", 0, None)
        for attempt in range(1, services.INBOX_MAX_ATTEMPTS + 1):
            clock.shift(timedelta(minutes=1))  # the sweep wakes the resident again
            with pytest.raises(WorkerKilled):
                services.inbox_process_user(line_user_id=USER)
            poison.refresh_from_db()
            # Counted before it ran, so the count survived the worker.
            assert (poison.status, poison.attempts) == ("pending", attempt)
            assert poison.attempt_started_at == timezone.now()
            assert poison.last_error == ("" if attempt == 1 else services.INTERRUPTED_ERROR)
        clock.shift(timedelta(minutes=1))
        run = services.inbox_process_user(line_user_id=USER)
    poison.refresh_from_db()
    assert (poison.status, poison.attempts, poison.attempt_started_at) == ("failed", 5, None)
    assert poison.last_error.startswith(services.INTERRUPTED_ERROR) and "保留" in poison.last_error
    assert "落ちる" not in str(poison.payload)  # parked: redacted like any other
    assert (run.parked, run.processed) == (1, 1)
    assert texts.count("落ちる") == services.INBOX_MAX_ATTEMPTS + 1 and texts[-1] == "次の用件"
    later = InboxEvent.objects.order_by("line_timestamp").last()
    assert (later.status, later.attempts, later.attempt_started_at) == ("done", 1, None)


def test_an_attempt_counted_ahead_is_counted_once_whether_it_fails_or_succeeds(monkeypatch):
    engine_that(monkeypatch, RuntimeError("engine exploded"), RuntimeError("engine exploded"))
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=False) as clock:
        store(text_event(USER, "落ちる"))
        event = InboxEvent.objects.get()
        counts = []
        for _ in range(3):  # fails fresh, fails after waiting (counted ahead), then succeeds
            services.inbox_process_user(line_user_id=USER)
            event.refresh_from_db()
            counts.append((event.status, event.attempts, event.attempt_started_at))
            clock.shift(timedelta(minutes=1))
    assert counts == [("pending", 1, None), ("pending", 2, None), ("done", 3, None)]
    assert event.last_error == f"RuntimeError: {services.INBOX_ERROR_MESSAGE}"  # the last failure, for the record


def test_a_worker_taking_the_resident_between_count_and_run_runs_the_counted_attempt_once(monkeypatch):
    texts = engine_that(monkeypatch)
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=False) as clock:
        store(text_event(USER, "落ちる"))
        LineUser.objects.create(line_user_id=USER)
        clock.shift(timedelta(minutes=1))
        # Worker 1 counts the waiting event's attempt and lets go of the resident to run it…
        assert services._inbox_process_next(USER) == "counted"
        # …and worker 2, woken by the resident's next tap, takes the resident in that moment.
        clock.shift(timedelta(seconds=1))
        assert services.inbox_process_user(line_user_id=USER).processed == 1
        assert services._inbox_process_next(USER, count_ahead=False) == "empty"  # worker 1 goes on: done
    event = InboxEvent.objects.get()
    assert (event.status, event.attempts, event.attempt_started_at, event.last_error) == ("done", 1, None, "")
    assert texts == ["落ちる"]


def test_staff_retry_forgets_an_attempt_that_did_not_finish(monkeypatch):
    engine_that(monkeypatch, WorkerKilled())
    with time_machine.travel(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), tick=False) as clock:
        store(text_event(USER, "落ちる"))
        clock.shift(timedelta(minutes=1))
        with pytest.raises(WorkerKilled):
            services.inbox_process_user(line_user_id=USER)
        event = InboxEvent.objects.get()
        assert event.attempt_started_at is not None
        assert services.inbox_retry(ids=[event.pk]) == 1
        event.refresh_from_db()
        assert (event.attempts, event.attempt_started_at) == (0, None)
        services.inbox_process_user(line_user_id=USER)
    event.refresh_from_db()
    assert (event.status, event.attempts, event.last_error) == ("done", 1, "")


def test_the_admin_shows_no_resident_text_even_for_an_event_still_waiting(admin_client):
    store(text_event(USER, "小城市三日月町長神田2312番地2"))
    waiting = InboxEvent.objects.get()
    assert waiting.status == "pending" and "三日月" in str(waiting.payload)  # still needed to process it
    page = admin_client.get(reverse("admin:messaging_inboxevent_change", args=[waiting.pk])).content.decode()
    assert "三日月" not in page and waiting.webhook_event_id in page


def test_the_migration_redacts_events_parked_before_it():
    migration = importlib.import_module("messaging.migrations.0003_outbox_unknown_status")
    event = text_event(USER, "小城 太郎")
    parked = InboxEvent.objects.create(
        payload=event, status="failed", last_error="ValueError: 小城 太郎 is not valid", **parse.inbox_fields(event)
    )
    migration.redact_parked_events(django_apps, None)
    parked.refresh_from_db()
    assert parked.payload == parse.redact(event)  # the frozen copy agrees with parse.redact
    assert parked.last_error == "ValueError: 処理中にエラーが発生しました（保留）"


# --------------------------------------------------------------------------
# 4. Unsigned postbacks are answered, never trusted
# --------------------------------------------------------------------------


def test_an_unsigned_postback_is_answered_with_the_menu(client, fake_line):
    photo_procedure()
    phone = LinePhone(client, fake_line, user_id(31))
    # e.g. a rich-menu postback set up in LINE's console.
    received = phone.send(postback_event(phone.user, "action=menu", reply_token=phone.token()))
    assert received and fake_line.last_call(REPLY).status == 200
    assert "このボタンは現在使えません。" in phone.texts() and "ご利用になる手続きを選んでください。" in phone.texts()
    assert InboxEvent.objects.get().status == "done"


def test_a_forged_postback_in_a_procedure_is_answered_but_changes_nothing(client, fake_line):
    photo_procedure()
    phone = LinePhone(client, fake_line, user_id(32))
    phone.say("写真")
    before = ConversationSession.objects.get(line_user_id=phone.user).state
    session_id = before["session"]["id"]
    forged = f'1.AAAAAAAAAAAAAAAAAAAAAA.["m","","photo","skip","{session_id}"]'  # "skip", but not signed by us
    phone.send(postback_event(phone.user, forged, reply_token=phone.token()))
    assert "このボタンは現在使えません。" in phone.texts() and "写真を送ってください。" in phone.texts()
    after = ConversationSession.objects.get(line_user_id=phone.user).state
    assert after["session"]["answers"] == before["session"]["answers"] == {}
    assert after["session"]["current"] == "photo"


# --------------------------------------------------------------------------
# 5. A new event is not left to the sweep because the resident was busy
# --------------------------------------------------------------------------


def test_the_claimer_looks_again_after_letting_go_and_requeues_an_event_that_came_meanwhile(
    engine_calls,  # noqa: F811 (the imported fixture)
    monkeypatch,
    wakeups,  # noqa: F811 (the imported fixture)
):
    LineUser.objects.create(line_user_id=USER)  # a resident the workers know
    real = services._inbox_process_next
    late = text_event(USER, "遅れて届いた")
    calls = []

    def claimer(line_user_id):
        outcome = real(line_user_id)
        calls.append(outcome)
        if len(calls) == 1:
            # Committed after this worker found nothing, while it still held the resident: the
            # event's own wake-up found the resident "busy" and stopped.
            assert outcome == "empty"
            store(late)
        return outcome

    monkeypatch.setattr(services, "_inbox_process_next", claimer)
    run = services.inbox_process_user(line_user_id=USER)
    # Not left to the sweep: woken again, at the back of the queue (it came after the run began,
    # so a resident answering at once cannot keep this worker while others wait).
    assert run.outcomes == ["empty"] and wakeups == [("messaging.tasks.process_user_inbox", USER)]
    assert services.inbox_process_user(line_user_id=USER).processed == 1  # the queued task
    assert engine_calls == [(USER, "遅れて届いた")]
    assert InboxEvent.objects.get().status == "done"


def test_a_worker_that_finds_the_resident_busy_stops_at_once(monkeypatch, wakeups):  # noqa: F811
    store(text_event(USER, "待っている"))
    wakeups.clear()
    monkeypatch.setattr(services, "_inbox_process_next", lambda line_user_id: "busy")
    run = services.inbox_process_user(line_user_id=USER)
    # No loop, no timer: the holder looks again once it lets go (the test above).
    assert run.busy and run.outcomes == ["busy"] and wakeups == []


def test_a_claimer_that_finds_nothing_after_letting_go_stops(engine_calls):  # noqa: F811
    store(text_event(USER, "ひとつだけ"))
    run = services.inbox_process_user(line_user_id=USER)
    assert run.outcomes == ["done"]  # the plain look after letting go found nothing: no other round


# --------------------------------------------------------------------------
# 7. Content is read up to the limit, no further
# --------------------------------------------------------------------------


@pytest.fixture
def bytes_read(monkeypatch) -> list[int]:
    """Sizes of what urllib3 hands out of response bodies (the streamed reads)."""
    sizes: list[int] = []
    real = urllib3.response.HTTPResponse.read

    def counting(self, *args, **kwargs):
        data = real(self, *args, **kwargs)
        sizes.append(len(data or b""))
        return data

    monkeypatch.setattr(urllib3.response.HTTPResponse, "read", counting)
    return sizes


def test_content_over_the_limit_is_not_read_past_it(fake_line, bytes_read):
    big = image_bytes("PNG", size=(1200, 900)) + b"\0" * (3 * 1024 * 1024)
    fake_line.add_content("900001", big, "image/png")
    with LineClient() as line:
        content = line.message_content("900001", max_bytes=100_000)
    assert content.result.ok and content.too_large and content.size == len(big)
    assert len(content.data) <= line_client.CONTENT_PREFIX_BYTES and sum(bytes_read) <= line_client.CONTENT_PREFIX_BYTES
    assert sniff_image(content.data, verify=False) == ("image/png", 1200, 900)  # its type is still known

    small = image_bytes("JPEG")
    fake_line.add_content("900002", small, "image/jpeg")
    with LineClient() as line:
        content = line.message_content("900002", max_bytes=100_000)
    assert (content.data, content.too_large, content.size, content.content_type) == (
        small,
        False,
        len(small),
        "image/jpeg",
    )


def test_content_without_a_length_stops_one_byte_past_the_limit():
    body = io.BytesIO(b"x" * 1_000_000)
    response = urllib3.HTTPResponse(body=body, preload_content=False, headers={})
    data, too_large = line_client.read_capped(response, 1000)
    assert too_large and len(data) == 1001 and body.tell() == 1001
    exact = urllib3.HTTPResponse(body=io.BytesIO(b"y" * 1000), preload_content=False, headers={})
    assert line_client.read_capped(exact, 1000) == (b"y" * 1000, False)


def test_an_image_over_the_limit_is_refused_with_its_real_type_and_size(client, fake_line, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.LINE_IMAGE_MAX_BYTES = 50_000
    photo_procedure()
    phone = LinePhone(client, fake_line, user_id(33))
    phone.say("写真")
    big = image_bytes("PNG", size=(600, 600)) + b"\0" * 200_000
    phone.send_image(big, "image/png")
    assert "写真を送ってください。" in phone.texts()  # asked again
    assert not (tmp_path / "line").exists()


# --------------------------------------------------------------------------
# 8, 9. Local time in the follow history; one image sniffer
# --------------------------------------------------------------------------


def test_follow_history_is_shown_in_local_time():
    user = LineUser.objects.create(line_user_id=USER)
    event = LineFollowEvent(line_user=user, kind="follow", occurred_at=datetime(2026, 1, 1, 0, 30, tzinfo=UTC))
    assert str(event) == "友だち追加 2026-01-01 09:30"  # Asia/Tokyo


def test_sniff_image_tells_the_real_type_and_size():
    assert sniff_image(image_bytes("PNG", size=(40, 30))) == ("image/png", 40, 30)
    assert sniff_image(image_bytes("JPEG", size=(8, 6))) == ("image/jpeg", 8, 6)
    assert sniff_image(image_bytes("GIF")) == ("image/gif", 40, 30)
    assert sniff_image(image_bytes("BMP")) == ("image/bmp", 40, 30)
    for junk in (b"", b"%PDF-1.4 not an image", b"\xff\xd8\xff\xe0 broken jpeg"):
        assert sniff_image(junk) == (None, 0, 0)


def test_sniff_image_reads_the_header_only_when_asked():
    truncated = image_bytes("PNG", size=(300, 200))[:200]
    assert sniff_image(truncated) == (None, 0, 0)  # not a sound image
    assert sniff_image(truncated, verify=False) == ("image/png", 300, 200)


def test_sniff_image_counts_a_multi_picture_jpeg_as_a_jpeg():
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (20, 10)), Image.new("RGB", (20, 10))
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    assert sniff_image(buffer.getvalue()) == ("image/jpeg", 20, 10)


def test_services_use_the_shared_sniffer():
    assert services.sniff_image is sniff_image
    assert not hasattr(services, "_sniff") and not hasattr(services, "_sniff_prefix")


def test_logs_and_errors_of_a_failing_event_carry_no_resident_text(monkeypatch, caplog):
    def quoting_engine(*, line_user_id, event, **kwargs):
        raise ValueError(f"cannot understand {event.text!r}")  # as many exceptions do

    monkeypatch.setattr(services, "conversation_handle", quoting_engine)
    caplog.set_level(logging.INFO, logger="messaging")
    store(text_event(USER, "小城 太郎"))
    for _ in range(services.INBOX_MAX_ATTEMPTS):
        services.inbox_process_user(line_user_id=USER)
    parked = InboxEvent.objects.get()
    assert parked.status == "failed" and parked.last_error.startswith("ValueError: ")
    assert "ValueError" in caplog.text and "quoting_engine" in caplog.text  # where it failed, for debugging
    assert "小城" not in caplog.text and "小城" not in parked.last_error and "小城" not in str(parked.payload)
