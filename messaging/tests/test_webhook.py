"""The LINE webhook: signature first, size cap, one transaction, redeliveries stored once.

Also the helpers the other LINE channel tests import: webhook bodies (from the fixtures in
fixtures/webhooks/ or built per event) signed like LINE signs them, and a fixture that records
task wake-ups instead of queueing them.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path

import pytest
from django.db import OperationalError, connection
from django.urls import reverse

from messaging.line.fakeline import sign_webhook, validate_webhook_body
from messaging.models import InboxEvent

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SECRET = "test-channel-secret"
ACCESS_TOKEN = "test-channel-access-token"
DESTINATION = "U0123456789abcdef0123456789abcdef"
USER = "U4af4980629aaaaaaaaaaaaaaaaaaaaaa"  # the user of the fixture files
OTHER_USER = "U" + "b" * 32
_event_numbers = itertools.count(1)
_message_numbers = itertools.count(700000000000000001)


# --------------------------------------------------------------------------
# Helpers shared by the LINE channel tests
# --------------------------------------------------------------------------


def fixture_body(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def user_id(n: int) -> str:
    return "U" + f"{n:032x}"


def new_event_id() -> str:
    """A ULID-shaped webhookEventId, unique in the test run."""
    return f"01JTEST{next(_event_numbers):019d}"


def now_ms() -> int:
    return int(time.time() * 1000)


def event(kind: str, user: str, *, timestamp: int | None = None, reply_token: str | None = None, **fields) -> dict:
    """One webhook event as LINE sends it (from a one-to-one chat)."""
    data = {
        "type": kind,
        "mode": "active",
        "timestamp": now_ms() if timestamp is None else timestamp,
        "source": {"type": "user", "userId": user},
        "webhookEventId": new_event_id(),
        "deliveryContext": {"isRedelivery": False},
        **fields,
    }
    if reply_token is not None:
        data["replyToken"] = reply_token
    return data


def text_event(user: str, text: str, **kwargs) -> dict:
    message = {"id": str(next(_message_numbers)), "type": "text", "quoteToken": "q-" + new_event_id(), "text": text}
    return event(
        "message", user, message=message, reply_token=kwargs.pop("reply_token", "r-" + new_event_id()), **kwargs
    )


def postback_event(user: str, data: str, params: dict | None = None, **kwargs) -> dict:
    postback = {"data": data}
    if params:
        postback["params"] = params
    return event(
        "postback", user, postback=postback, reply_token=kwargs.pop("reply_token", "r-" + new_event_id()), **kwargs
    )


def image_event(user: str, message_id: str, **kwargs) -> dict:
    message = {
        "id": message_id,
        "type": "image",
        "quoteToken": "q-" + new_event_id(),
        "contentProvider": {"type": "line"},
    }
    return event(
        "message", user, message=message, reply_token=kwargs.pop("reply_token", "r-" + new_event_id()), **kwargs
    )


def location_event(
    user: str, *, latitude: float, longitude: float, address: str = "", title: str = "", **kwargs
) -> dict:
    message = {
        "id": str(next(_message_numbers)),
        "type": "location",
        "latitude": latitude,
        "longitude": longitude,
        "address": address,
        "title": title,
    }
    return event(
        "message", user, message=message, reply_token=kwargs.pop("reply_token", "r-" + new_event_id()), **kwargs
    )


def follow_event(user: str, *, unblocked: bool = False, **kwargs) -> dict:
    return event(
        "follow",
        user,
        follow={"isUnblocked": unblocked},
        reply_token=kwargs.pop("reply_token", "r-" + new_event_id()),
        **kwargs,
    )


def unfollow_event(user: str, **kwargs) -> dict:
    return event("unfollow", user, **kwargs)


def callback(*events: dict) -> dict:
    return {"destination": DESTINATION, "events": list(events)}


def post_webhook(client, payload, *, secret: str = SECRET, signature: str | None = None, sign: bool = True):
    body = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = {}
    if sign:
        headers["HTTP_X_LINE_SIGNATURE"] = signature if signature is not None else sign_webhook(body, secret)
    return client.post(reverse("messaging:line-webhook"), data=body, content_type="application/json", **headers)


def actions_in(line_message: dict) -> list[dict]:
    """Every LINE action object in a message (quick replies, template actions, Flex buttons)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "action" and isinstance(value, dict):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(line_message)
    found += (line_message.get("template") or {}).get("actions", [])
    return found


class LinePhone:
    """A resident's LINE app: sends signed webhook events, then runs the worker and the sender
    (synchronously, as the queue would) and returns what arrived on the fake LINE."""

    def __init__(self, client, fake_line, user: str):
        self.client, self.fake, self.user = client, fake_line, user
        self.seen = 0
        self.last: list[dict] = []

    def send(self, line_event: dict) -> list[dict]:
        from messaging import services

        response = post_webhook(self.client, callback(line_event))
        assert response.status_code == 200, response.content
        services.inbox_process_user(line_user_id=self.user)
        services.outbox_send()
        received = self.fake.messages_sent_to(self.user)
        self.last, self.seen = received[self.seen :], len(received)
        return self.last

    def token(self) -> str:
        return self.fake.issue_reply_token(self.user)

    def follow(self, **kwargs) -> list[dict]:
        return self.send(follow_event(self.user, reply_token=self.token(), **kwargs))

    def say(self, text: str) -> list[dict]:
        return self.send(text_event(self.user, text, reply_token=self.token()))

    def action(self, label: str) -> dict:
        for message in reversed(self.last):
            for action in actions_in(message):
                if action.get("label") == label:
                    return action
        labels = [a.get("label") for m in self.last for a in actions_in(m)]
        raise AssertionError(f"no button {label!r} in the last messages: {labels}")

    def action_in_history(self, label: str) -> dict:
        """A button from any message this resident has received (an old card still on screen)."""
        for message in self.fake.messages_sent_to(self.user):
            for action in actions_in(message):
                if action.get("label") == label:
                    return action
        raise AssertionError(f"no button {label!r} was ever shown")

    def tap(self, label: str, *, date: str | None = None) -> list[dict]:
        action = self.action(label)
        params = {"date": date or action["initial"]} if action["type"] == "datetimepicker" else None
        return self.send(postback_event(self.user, action["data"], params, reply_token=self.token()))

    def send_image(self, data: bytes, content_type: str = "image/jpeg") -> list[dict]:
        message_id = str(next(_message_numbers))
        self.fake.add_content(message_id, data, content_type)
        return self.send(image_event(self.user, message_id, reply_token=self.token()))

    def send_location(self, **kwargs) -> list[dict]:
        return self.send(location_event(self.user, reply_token=self.token(), **kwargs))

    def texts(self) -> str:
        return "\n".join(m["text"] for m in self.last if m["type"] == "text")


@pytest.fixture(autouse=True)
def line_channel(settings):
    settings.LINE_CHANNEL_SECRET = SECRET
    settings.LINE_CHANNEL_ACCESS_TOKEN = ACCESS_TOKEN
    return settings


@pytest.fixture(autouse=True)
def wakeups(monkeypatch) -> list[tuple]:
    """Task wake-ups are recorded, not queued: tests run workers and senders themselves."""
    calls: list[tuple] = []
    monkeypatch.setattr("messaging.services._delay", lambda func, *args: calls.append((func, *args)))
    return calls


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

pytestmark = pytest.mark.django_db


def test_fixture_bodies_and_built_events_are_valid_line_webhooks():
    for path in sorted(FIXTURES.glob("*.json")):
        payload = json.loads(path.read_text(encoding="utf-8"))
        assert validate_webhook_body(payload, allow_unknown_types=True) == [], path.name
    built = callback(
        text_event(USER, "こんにちは"),
        postback_event(USER, "data", {"date": "2026-01-15"}),
        image_event(USER, "123"),
        location_event(USER, latitude=35.0, longitude=139.0, address="市役所"),
        follow_event(USER),
        unfollow_event(USER),
    )
    assert validate_webhook_body(built) == []


def test_unsigned_webhook_is_rejected_and_stores_nothing(client, wakeups):
    response = post_webhook(client, fixture_body("text_message"), sign=False)
    assert response.status_code == 400
    assert InboxEvent.objects.count() == 0
    assert wakeups == []


def test_wrong_signature_is_rejected(client):
    body = json.dumps(fixture_body("text_message")).encode()
    assert post_webhook(client, body, secret="another-channels-secret").status_code == 400
    assert post_webhook(client, body, signature="not base64 at all").status_code == 400
    tampered = body.replace(b'"mode": "active"', b'"mode": "standby"')
    assert tampered != body
    assert post_webhook(client, tampered, signature=sign_webhook(body, SECRET)).status_code == 400
    assert InboxEvent.objects.count() == 0


def test_non_json_body_is_400(client):
    assert post_webhook(client, b"this is not json").status_code == 400
    assert post_webhook(client, "\udcff".encode("utf-8", "surrogatepass")).status_code == 400
    assert InboxEvent.objects.count() == 0


def test_body_that_is_not_a_line_callback_is_400(client):
    assert post_webhook(client, {"destination": DESTINATION, "events": "none"}).status_code == 400
    assert post_webhook(client, {"events": []}).status_code == 400
    assert post_webhook(client, [1, 2, 3]).status_code == 400
    assert post_webhook(client, b'{"destination": "U1", "events": [], "x": NaN}').status_code == 400
    assert post_webhook(client, b"[" * 100_000 + b"]" * 100_000).status_code == 400
    assert InboxEvent.objects.count() == 0


def test_a_malformed_event_is_stored_as_ignored_and_the_others_are_kept(client, caplog):
    wrong_time, no_id, good = text_event(USER, "時刻が変"), text_event(USER, "IDがない"), text_event(USER, "正しい")
    wrong_time["timestamp"] = "yesterday"
    del no_id["webhookEventId"]
    response = post_webhook(client, callback(wrong_time, no_id, good))
    assert response.status_code == 200
    rows = {row.webhook_event_id: row for row in InboxEvent.objects.all()}
    assert set(rows) == {wrong_time["webhookEventId"], good["webhookEventId"]}  # no id: nothing to store it by
    assert rows[good["webhookEventId"]].status == "pending"
    ignored = rows[wrong_time["webhookEventId"]]
    assert ignored.status == "ignored" and ignored.processed_at is not None
    assert ignored.ignored_reason == "malformed event: events[0].timestamp is not a time in milliseconds"
    assert "時刻が変" not in str(ignored.payload) and ignored.payload["redacted"] is True
    # The skipped one is logged by its place in the body: nothing of what it carried.
    assert "events[1] skipped" in caplog.text and "IDがない" not in caplog.text
    # A redelivery of the same body stores nothing twice.
    assert post_webhook(client, callback(wrong_time, no_id, good)).status_code == 200
    assert InboxEvent.objects.count() == 2


def test_an_absurd_timestamp_is_ignored_not_a_500(client):
    absurd, good = text_event(USER, "未来から"), text_event(USER, "いま")
    absurd["timestamp"] = 10**17
    response = post_webhook(client, callback(absurd, good))
    assert response.status_code == 200
    row = InboxEvent.objects.get(webhook_event_id=absurd["webhookEventId"])
    assert row.status == "ignored" and "timestamp" in row.ignored_reason
    assert abs((row.line_timestamp - row.received_at).total_seconds()) < 5  # stored at its arrival
    assert InboxEvent.objects.get(webhook_event_id=good["webhookEventId"]).status == "pending"


def test_body_over_1mb_is_413(client):
    payload = callback(text_event(USER, "x" * 1_100_000))
    response = post_webhook(client, payload)
    assert response.status_code == 413
    assert InboxEvent.objects.count() == 0


def test_verification_call_without_events_answers_200(client, wakeups):
    response = post_webhook(client, {"destination": DESTINATION, "events": []})
    assert response.status_code == 200
    assert InboxEvent.objects.count() == 0 and wakeups == []


def test_missing_channel_secret_answers_503(client, settings):
    settings.LINE_CHANNEL_SECRET = ""
    response = post_webhook(client, fixture_body("text_message"))
    assert response.status_code == 503
    assert InboxEvent.objects.count() == 0


def test_only_post_is_accepted(client):
    assert client.get(reverse("messaging:line-webhook")).status_code == 405


def test_signed_events_are_stored_pending_and_workers_woken_after_commit(
    client, wakeups, django_capture_on_commit_callbacks
):
    other = user_id(2)
    payload = callback(text_event(USER, "一つ目"), text_event(USER, "二つ目"), follow_event(other))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_webhook(client, payload)
    assert response.status_code == 200
    rows = InboxEvent.objects.order_by("id")
    assert [(row.line_user_id, row.event_type, row.status) for row in rows] == [
        (USER, "message", "pending"),
        (USER, "message", "pending"),
        (other, "follow", "pending"),
    ]
    first = rows[0]
    assert first.payload == payload["events"][0]
    assert first.message_type == "text" and first.source_type == "user"
    assert int(first.line_timestamp.timestamp() * 1000) == payload["events"][0]["timestamp"]
    # One wake-up per resident, only once the events are committed.
    assert len(callbacks) == 2
    assert sorted(wakeups) == sorted(
        [("messaging.tasks.process_user_inbox", USER), ("messaging.tasks.process_user_inbox", other)]
    )


def test_redelivered_event_is_stored_once(client):
    payload = fixture_body("text_message")
    assert post_webhook(client, payload).status_code == 200
    redelivery = copy.deepcopy(payload)
    redelivery["events"][0]["deliveryContext"]["isRedelivery"] = True
    assert post_webhook(client, redelivery).status_code == 200
    # The same event again inside a request that also carries a new one.
    both = callback(redelivery["events"][0], text_event(USER, "新しいメッセージ"))
    assert post_webhook(client, both).status_code == 200
    assert InboxEvent.objects.count() == 2
    assert InboxEvent.objects.filter(webhook_event_id=payload["events"][0]["webhookEventId"]).count() == 1


def test_a_request_is_stored_by_one_statement_all_events_or_none(client, wakeups, django_capture_on_commit_callbacks):
    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    events = [text_event(USER, "一つ目"), text_event(OTHER_USER, "二つ目"), text_event(USER, "三つ目")]
    with django_capture_on_commit_callbacks(execute=True), connection.execute_wrapper(record):
        assert post_webhook(client, callback(*events)).status_code == 200
    assert len(statements) == 1 and statements[0].startswith("INSERT INTO")  # atomic without a transaction block
    stored = InboxEvent.objects.order_by("id")
    assert [row.payload["message"]["text"] for row in stored] == ["一つ目", "二つ目", "三つ目"]
    assert {row.line_user_id for row in stored} == {USER, OTHER_USER}
    assert all(row.received_at is not None and row.status == "pending" for row in stored)
    assert sorted(wakeups) == [("messaging.tasks.process_user_inbox", user) for user in sorted([USER, OTHER_USER])]


def test_database_unavailable_answers_503_and_stores_nothing(client, wakeups):
    def database_down(execute, sql, params, many, context):
        raise OperationalError("could not connect to server")

    with connection.execute_wrapper(database_down):
        response = post_webhook(client, callback(text_event(USER, "一つ目"), text_event(USER, "二つ目")))
    assert response.status_code == 503
    assert InboxEvent.objects.count() == 0
    assert wakeups == []


def test_events_without_a_user_are_stored_as_ignored(client, wakeups):
    room = event("join", USER)
    room["source"] = {"type": "room", "roomId": "Ra8dbf4673c4c812cd491258042226c99"}
    response = post_webhook(client, callback(room))
    assert response.status_code == 200
    row = InboxEvent.objects.get()
    assert row.status == "ignored" and row.ignored_reason == "not a one-to-one chat (source: room)"
    assert wakeups == []


def test_a_nul_character_does_not_cost_the_whole_request(client):
    odd, good = text_event(USER, "a\x00b"), text_event(USER, "ふつう")
    odd["deliveryContext"]["\x00"] = "\x00"
    assert post_webhook(client, callback(odd, good)).status_code == 200  # PostgreSQL refuses U+0000
    stored = InboxEvent.objects.get(webhook_event_id=odd["webhookEventId"])
    assert stored.status == "pending" and stored.payload["message"]["text"] == "a\ufffdb"
    assert InboxEvent.objects.filter(webhook_event_id=good["webhookEventId"]).exists()


def test_a_lone_surrogate_does_not_cost_the_whole_request(client):
    odd, good = text_event(USER, "PLACEHOLDER"), text_event(USER, "ふつう")
    # JSON can escape half of a surrogate pair; json.loads accepts it, UTF-8 cannot encode it.
    raw = json.dumps(callback(odd, good)).replace("PLACEHOLDER", "a\\ud83db").encode()
    assert json.loads(raw)["events"][0]["message"]["text"] == "a\ud83db"
    response = post_webhook(client, raw)
    assert response.status_code == 200
    stored = InboxEvent.objects.get(webhook_event_id=odd["webhookEventId"])
    assert stored.status == "pending" and stored.payload["message"]["text"] == "a\ufffdb"
    assert InboxEvent.objects.filter(webhook_event_id=good["webhookEventId"]).exists()


def test_a_request_too_large_for_one_statement_is_stored_in_one_transaction_all_or_none(client, monkeypatch):
    monkeypatch.setattr("messaging.services.INBOX_INSERT_MAX_PARAMETERS", 30)  # two rows per statement
    events = [text_event(USER, f"{number} 通目") for number in range(5)]
    assert post_webhook(client, callback(*events)).status_code == 200
    assert sorted(row.payload["message"]["text"] for row in InboxEvent.objects.all()) == [f"{n} 通目" for n in range(5)]

    statements = []

    def third_statement_fails(execute, sql, params, many, context):
        if sql.startswith("INSERT INTO"):
            statements.append(sql)
            if len(statements) == 3:
                raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    later = [text_event(USER, f"次の {number} 通目") for number in range(5)]
    with connection.execute_wrapper(third_statement_fails):
        assert post_webhook(client, callback(*later)).status_code == 503
    assert len(statements) == 3 and InboxEvent.objects.count() == 5  # the first two statements were undone
