"""The inbox workers: one resident at a time, LINE's order, park failures and go on."""

from __future__ import annotations

import io
import threading

import pytest
from django.db import connection
from django.urls import reverse
from PIL import Image

from messaging import services
from messaging.models import InboxEvent, LineChannelSettings, LineFollowEvent, LineUser, OutboxMessage
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    USER,
    LinePhone,
    callback,
    fixture_body,
    follow_event,
    line_channel,
    now_ms,
    post_webhook,
    text_event,
    unfollow_event,
    user_id,
    wakeups,
)
from procedures.models import Application, ConversationSession
from procedures.services import procedure_import, version_publish
from procedures.tests.spec_data import template_bytes
from residents.models import Resident

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine_calls(monkeypatch) -> list[tuple[str, str]]:
    """Records (user, text) of every event that reaches the engine, then runs the real engine."""
    calls = []
    real = services.conversation_handle

    def recording(*, line_user_id, event, **kwargs):
        calls.append((line_user_id, event.text or event.type))
        if event.text == "壊れる":
            raise RuntimeError("engine exploded")
        return real(line_user_id=line_user_id, event=event, **kwargs)

    monkeypatch.setattr(services, "conversation_handle", recording)
    return calls


def store(*events: dict) -> None:
    services.inbox_store(events=list(events))


def test_events_of_one_user_are_processed_in_timestamp_order(engine_calls):
    base = now_ms()
    # Delivered out of order (LINE may deliver in parallel): the timestamp decides.
    store(text_event(USER, "三番目", timestamp=base + 3000), text_event(USER, "一番目", timestamp=base + 1000))
    store(text_event(USER, "二番目", timestamp=base + 2000))
    run = services.inbox_process_user(line_user_id=USER)
    assert run.processed == 3 and not run.busy
    assert engine_calls == [(USER, "一番目"), (USER, "二番目"), (USER, "三番目")]
    events = InboxEvent.objects.order_by("line_timestamp")
    assert {event.status for event in events} == {"done"}
    replies = list(OutboxMessage.objects.order_by("id").values_list("inbox_event_id", flat=True))
    assert replies == [event.pk for event in events]  # the answers are queued in the same order


def test_a_resident_is_claimed_per_event_and_the_claim_is_released(engine_calls):
    store(text_event(USER, "こんにちは"))
    assert services.inbox_process_user(line_user_id=USER).processed == 1
    assert services.inbox_process_user(line_user_id=USER).outcomes == ["empty"]


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_process_one_user_at_once(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("SKIP LOCKED needs PostgreSQL (SQLite has no row locks)")
    other = user_id(7)
    base = now_ms()
    store(*(text_event(USER, f"{n}件目", timestamp=base + n) for n in range(1, 4)), text_event(other, "別の住民"))

    inside, release = threading.Event(), threading.Event()
    active: dict[str, int] = {}
    most: dict[str, int] = {}
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()
    real = services.conversation_handle

    def slow_engine(*, line_user_id, event, **kwargs):
        with lock:
            active[line_user_id] = active.get(line_user_id, 0) + 1
            most[line_user_id] = max(most.get(line_user_id, 0), active[line_user_id])
            seen.append((line_user_id, event.text))
        try:
            if line_user_id == USER and event.text == "1件目":
                inside.set()
                assert release.wait(timeout=20)
            return real(line_user_id=line_user_id, event=event, **kwargs)
        finally:
            with lock:
                active[line_user_id] -= 1

    monkeypatch.setattr(services, "conversation_handle", slow_engine)
    results = {}

    def worker(name: str, line_user_id: str):
        try:
            results[name] = services.inbox_process_user(line_user_id=line_user_id)
        finally:
            connection.close()

    first = threading.Thread(target=worker, args=("first", USER))
    first.start()
    assert inside.wait(timeout=20)
    # While the first worker holds the resident, a second one skips them at once...
    second = threading.Thread(target=worker, args=("second", USER))
    second.start()
    second.join(timeout=20)
    # ...and other residents are processed in parallel.
    third = threading.Thread(target=worker, args=("third", other))
    third.start()
    third.join(timeout=20)
    release.set()
    first.join(timeout=30)

    assert results["second"].busy and results["second"].processed == 0
    assert results["third"].processed == 1
    assert results["first"].processed == 3
    assert most == {USER: 1, other: 1}
    assert [text for user, text in seen if user == USER] == ["1件目", "2件目", "3件目"]
    assert set(InboxEvent.objects.values_list("status", flat=True)) == {"done"}


def test_failing_event_is_retried_then_parked_and_later_events_continue(engine_calls, admin_client):
    base = now_ms()
    broken_event = text_event(USER, "壊れる", timestamp=base)
    store(broken_event, text_event(USER, "その次", timestamp=base + 1))
    # The payload is encrypted (govtech/crypto.py): rows are found by their plain columns.
    broken = InboxEvent.objects.get(webhook_event_id=broken_event["webhookEventId"])
    for attempt in range(1, services.INBOX_MAX_ATTEMPTS):
        run = services.inbox_process_user(line_user_id=USER)
        broken.refresh_from_db()
        assert run.outcomes == ["retry"] and (broken.status, broken.attempts) == ("pending", attempt)
        # The later event waits: the resident's order is kept while a retry may still succeed.
        assert InboxEvent.objects.get(pk=broken.pk + 1).status == "pending"
    run = services.inbox_process_user(line_user_id=USER)
    assert run.outcomes == ["parked", "done"]
    broken.refresh_from_db()
    assert broken.status == "failed" and broken.attempts == services.INBOX_MAX_ATTEMPTS
    # The exception's class and a fixed message: its text could quote what the resident sent.
    assert broken.last_error == f"RuntimeError: {services.INBOX_ERROR_MESSAGE}（5 回失敗したため保留）"
    # Parked means redacted, like a processed event: ids, types and times stay.
    assert broken.payload["redacted"] is True and "壊れる" not in str(broken.payload)
    assert broken.payload["message"]["type"] == "text" and broken.payload["webhookEventId"] == broken.webhook_event_id
    assert InboxEvent.objects.get(pk=broken.pk + 1).status == "done"
    assert not OutboxMessage.objects.filter(inbox_event=broken).exists()

    # Staff see the parked event with its error; with nothing left to process, it is not requeued.
    changelist = admin_client.get(reverse("admin:messaging_inboxevent_changelist") + "?status__exact=failed")
    assert "RuntimeError" in changelist.content.decode() and "壊れる" not in changelist.content.decode()
    response = admin_client.post(
        reverse("admin:messaging_inboxevent_changelist"),
        {"action": "retry_events", "_selected_action": [broken.pk]},
        follow=True,
    )
    assert "1 件は再処理できません" in response.content.decode()
    broken.refresh_from_db()
    assert (broken.status, broken.attempts) == ("failed", services.INBOX_MAX_ATTEMPTS)


def test_staff_can_requeue_an_event_that_is_still_being_retried(
    engine_calls,
    admin_client,
    wakeups,  # noqa: F811 (the imported fixture)
    django_capture_on_commit_callbacks,
):
    store(text_event(USER, "壊れる"))
    services.inbox_process_user(line_user_id=USER)
    failing = InboxEvent.objects.get()
    assert (failing.status, failing.attempts) == ("pending", 1)  # still holds the input: retried
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:messaging_inboxevent_changelist"),
            {"action": "retry_events", "_selected_action": [failing.pk]},
        )
    assert response.status_code == 302
    failing.refresh_from_db()
    assert (failing.status, failing.attempts) == ("pending", 0)
    assert wakeups[-1] == ("messaging.tasks.process_user_inbox", USER)


def test_group_and_unknown_events_are_ignored_with_reason(
    client,
    engine_calls,
    wakeups,  # noqa: F811 (the imported fixture)
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        for name in ("group_text_message", "unknown_event"):
            assert post_webhook(client, fixture_body(name)).status_code == 200
    group = InboxEvent.objects.get(event_type="message")
    # Judged at the webhook: no worker runs for a group, and its member is nobody's resident.
    assert (group.status, group.ignored_reason) == ("ignored", "not a one-to-one chat (source: group)")
    assert "開庁時間" not in str(group.payload)  # nothing the member wrote is kept
    assert wakeups == [("messaging.tasks.process_user_inbox", USER)]  # for the unknown event only
    run = services.inbox_process_user(line_user_id=USER)
    assert run.processed == 1
    unknown = InboxEvent.objects.get(event_type="futureEventFromLine")
    assert (unknown.status, unknown.ignored_reason) == ("ignored", "unsupported event type: futureEventFromLine")
    assert engine_calls == [] and OutboxMessage.objects.count() == 0


def test_a_group_member_who_never_added_the_account_is_not_made_a_follower(client):
    assert post_webhook(client, fixture_body("group_text_message")).status_code == 200
    assert services.inbox_process_user(line_user_id=USER).outcomes == ["empty"]  # a stray wake-up
    assert not LineUser.objects.filter(line_user_id=USER).exists()
    assert not Resident.objects.filter(line_user_id=USER).exists()


def test_events_for_an_unknown_user_create_the_resident(engine_calls):
    newcomer = user_id(42)
    store(text_event(newcomer, "こんにちは"))
    services.inbox_process_user(line_user_id=newcomer)
    resident = Resident.objects.get(line_user_id=newcomer)
    assert LineUser.objects.get(line_user_id=newcomer).resident == resident
    assert engine_calls == [(newcomer, "こんにちは")]


def test_processed_events_keep_no_resident_input(engine_calls):
    store(text_event(USER, "小城市三日月町長神田2312番地2"))
    services.inbox_process_user(line_user_id=USER)
    event = InboxEvent.objects.get()
    assert event.status == "done" and event.payload["redacted"] is True
    assert "三日月" not in str(event.payload)


def test_follow_creates_resident_and_sends_greeting(client, fake_line, admin_client):
    # Staff edit the greeting in the admin (a single settings row).
    page = admin_client.get(reverse("admin:messaging_linechannelsettings_changelist"))
    assert page.status_code == 302
    admin_client.post(page["Location"], {"greeting_text": "小城市公式LINEへようこそ！"})
    assert LineChannelSettings.load().greeting_text == "小城市公式LINEへようこそ！"

    phone = LinePhone(client, fake_line, user_id(5))
    received = phone.follow()
    assert received == [{"type": "text", "text": "小城市公式LINEへようこそ！"}]
    assert fake_line.last_call("/v2/bot/message/reply").status == 200
    resident = Resident.objects.get(line_user_id=phone.user)
    line_user = LineUser.objects.get(line_user_id=phone.user)
    assert line_user.resident == resident and line_user.is_following and line_user.followed_at is not None
    assert list(line_user.follow_events.values_list("kind", flat=True)) == ["follow"]
    assert OutboxMessage.objects.get().sent_via == "reply"


def test_unfollow_marks_blocked_and_keeps_history(engine_calls):
    base = now_ms()
    store(
        follow_event(USER, timestamp=base),
        unfollow_event(USER, timestamp=base + 60_000),
        follow_event(USER, unblocked=True, timestamp=base + 120_000, reply_token="expired-token"),
    )
    assert services.inbox_process_user(line_user_id=USER, max_events=2).processed == 2
    line_user = LineUser.objects.get(line_user_id=USER)
    assert not line_user.is_following
    assert int(line_user.blocked_at.timestamp() * 1000) == base + 60_000
    assert Resident.objects.filter(line_user_id=USER).exists()  # the resident and their applications stay
    assert OutboxMessage.objects.count() == 1  # the greeting; nothing is sent to a blocked user
    services.inbox_process_user(line_user_id=USER)
    line_user.refresh_from_db()
    assert line_user.is_following
    history = LineFollowEvent.objects.filter(line_user=line_user).order_by("occurred_at")
    assert [(h.kind, h.is_unblocked) for h in history] == [("follow", False), ("unfollow", False), ("follow", True)]
    assert engine_calls == []


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def photo_procedure():
    data = {
        "name": "写真の提出",
        "keywords": ["写真"],
        "receipt_prefix": "PHOTO",
        "steps": [
            {"key": "photo", "kind": "image", "label": "写真を送ってください。"},
            {"key": "confirm", "kind": "confirmation", "label": "確認してください"},
            {"key": "done", "kind": "completion", "label": "受け付けました"},
        ],
    }
    procedure = procedure_import(raw=template_bytes(data), max_bytes=1_000_000)
    version_publish(version=procedure.draft)
    return procedure


def image_bytes(image_format: str, size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, format=image_format)
    return buffer.getvalue()


def test_image_too_large_or_not_an_image_is_reasked(client, fake_line, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    photo_procedure()
    phone = LinePhone(client, fake_line, user_id(8))
    phone.say("写真")
    assert {a["type"] for m in phone.last for a in m.get("quickReply", {}).get("items", [])} == {"action"}
    labels = [i["action"]["type"] for i in phone.last[-1]["quickReply"]["items"]]
    assert labels[:2] == ["camera", "cameraRoll"]

    too_large = b"\xff\xd8\xff\xe0" + b"\0" * (10 * 1024 * 1024 + 1)
    phone.send_image(too_large)
    assert "画像が大きすぎます。10MB以下の画像を送ってください。" in phone.texts()
    assert "写真を送ってください。" in phone.texts()  # asked again

    for data, content_type in (
        (b"%PDF-1.4 not an image", "application/pdf"),
        (image_bytes("GIF"), "image/gif"),
        (b"\xff\xd8\xff\xe0 broken jpeg", "image/jpeg"),
    ):
        phone.send_image(data, content_type)
        assert "JPEGまたはPNG形式の画像を送ってください。" in phone.texts(), content_type
    assert not (tmp_path / "line").exists()  # nothing refused was stored

    png = image_bytes("PNG")
    phone.send_image(png, "image/png")
    assert phone.last[-1]["type"] == "flex"  # the confirmation
    stored = list((tmp_path / "line" / "images").rglob("*.png"))
    assert len(stored) == 1 and stored[0].read_bytes() == png
    answer = ConversationSession.objects.get(line_user_id=phone.user).state["session"]["answers"]["photo"]
    assert answer == {"ref": stored[0].relative_to(tmp_path).as_posix(), "content_type": "image/png", "size": len(png)}
    # Fetched from the data host, as LINE serves content.
    assert {call.host for call in fake_line.calls("/v2/bot/message/*") if call.path.endswith("/content")} == {"D"}


def test_image_content_that_is_gone_is_asked_again_and_an_outage_is_retried(client, fake_line, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    photo_procedure()
    phone = LinePhone(client, fake_line, user_id(9))
    phone.say("写真")
    phone.send(
        {
            **text_event(phone.user, "x"),
            "message": {"id": "404404", "type": "image", "contentProvider": {"type": "line"}},
        }
    )
    assert "画像を受け取れませんでした。もう一度送ってください。" in phone.texts()

    fake_line.fail_next(503, path_prefix="/v2/bot/message/55/content")
    fake_line.add_content("55", image_bytes("JPEG"), "image/jpeg")
    image = {
        **text_event(phone.user, "x"),
        "message": {"id": "55", "type": "image", "contentProvider": {"type": "line"}},
    }
    store(image)
    run = services.inbox_process_user(line_user_id=phone.user)
    assert run.outcomes == ["retry"]
    assert "ContentUnavailable" in InboxEvent.objects.get(webhook_event_id=image["webhookEventId"]).last_error
    assert services.inbox_process_user(line_user_id=phone.user).processed == 1
    assert not Application.objects.exists()


def test_admin_pages_show_events_and_follow_history(engine_calls, admin_client):
    base = now_ms()
    store(follow_event(USER, timestamp=base), unfollow_event(USER, timestamp=base + 1), text_event(USER, "壊れる"))
    for _ in range(services.INBOX_MAX_ATTEMPTS):
        services.inbox_process_user(line_user_id=USER)
    failed = InboxEvent.objects.get(status="failed")
    page = admin_client.get(reverse("admin:messaging_inboxevent_change", args=[failed.pk])).content.decode()
    assert "RuntimeError" in page and failed.webhook_event_id in page
    assert "壊れる" not in page and "engine exploded" not in page  # neither the input nor the exception's text
    line_user = LineUser.objects.get(line_user_id=USER)
    page = admin_client.get(reverse("admin:messaging_lineuser_change", args=[line_user.pk])).content.decode()
    assert "友だち追加" in page and "ブロック" in page
    for name in ("inboxevent", "outboxmessage", "lineuser"):
        assert admin_client.get(reverse(f"admin:messaging_{name}_changelist")).status_code == 200
