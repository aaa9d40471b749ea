"""The resident simulator (/line/simulator/): a simulated resident of the whole LINE account.

The page's JSON endpoints are called with the Django test client, with the Host of pytest-django's
live server: the simulator POSTs its signed webhook over HTTP to that server's /line/webhook/, the
same path LINE uses, and reads what the city sent from the fake LINE's control API. No task cluster
runs in tests: the inbox worker and the outbox sender are run synchronously here, as the queue would.
"""

from __future__ import annotations

import io
import json
import re
from urllib.parse import urlsplit

import pytest
import requests
from django.urls import reverse
from PIL import Image

from messaging import services, simulator
from messaging.line.fakeline import sign_webhook, validate_webhook_body
from messaging.models import DEFAULT_GREETING, InboxEvent, OutboxMessage
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    ACCESS_TOKEN,
    SECRET,
    actions_in,
    line_channel,
    wakeups,
)
from procedures.demo import load_demo
from procedures.services import procedure_import, version_publish
from procedures.tests.spec_data import template_bytes

JAPANESE = re.compile(r"[ぁ-んァ-ン一-龥]")


@pytest.fixture
def webhook_posts(monkeypatch) -> list[dict]:
    """Every webhook request the simulator makes (URL, headers, raw body, answer), passed through for real."""
    posts: list[dict] = []
    original = requests.post

    def recording_post(url, data=None, headers=None, **kwargs):
        response = original(url, data=data, headers=headers, **kwargs)
        posts.append({"url": url, "body": data, "headers": dict(headers or {}), "status": response.status_code})
        return response

    monkeypatch.setattr(simulator.requests, "post", recording_post)
    return posts


class Browser:
    """The simulator page's JavaScript: calls the JSON endpoints as the page does."""

    def __init__(self, client, live_server):
        self.client = client
        self.host = urlsplit(live_server.url).netloc
        self.cursor = 0
        self.received: list[dict] = []

    def url(self, name: str) -> str:
        return reverse(f"messaging:resident-simulator-{name}")

    def post(self, name: str, body=None, **kwargs):
        data = body if isinstance(body, bytes | str) else json.dumps(body or {})
        kwargs.setdefault("content_type", "application/json")
        return self.client.post(self.url(name), data=data, HTTP_HOST=self.host, **kwargs)

    def ok(self, name: str, body=None) -> dict:
        response = self.post(name, body)
        assert response.status_code == 200, response.content.decode()
        return response.json()

    def poll(self) -> dict:
        response = self.client.get(self.url("poll"), {"after": self.cursor}, HTTP_HOST=self.host)
        assert response.status_code == 200, response.content.decode()
        data = response.json()
        self.cursor = data["next"]
        return data

    @property
    def user(self) -> str:
        return self.poll_state()["user_id"]

    def poll_state(self) -> dict:
        response = self.client.get(self.url("poll"), {"after": 10**12}, HTTP_HOST=self.host)
        return response.json()

    def run_pipeline(self) -> list[dict]:
        """What the task cluster does after the webhook: the resident's worker, then the sender."""
        user = self.user
        services.inbox_process_user(line_user_id=user)
        services.outbox_send()
        data = self.poll()
        self.received = [item["message"] for item in data["messages"]]
        return self.received

    def action(self, label: str) -> dict:
        for message in reversed(self.received):
            for action in actions_in(message):
                if action.get("label") == label:
                    return action
        raise AssertionError(f"no button {label!r} in {[a.get('label') for m in self.received for a in actions_in(m)]}")

    def tap(self, label: str, params: dict | None = None) -> list[dict]:
        body = {"type": "postback", "data": self.action(label)["data"]}
        if params:
            body["params"] = params
        self.ok("send", body)
        return self.run_pipeline()

    def say(self, text: str) -> list[dict]:
        self.ok("send", {"type": "text", "text": text})
        return self.run_pipeline()


def quick_labels(messages: list[dict]) -> list[str]:
    return [item["action"]["label"] for item in messages[-1].get("quickReply", {}).get("items", [])]


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 90, 160)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def browser(client, admin_user, live_server, fake_line, webhook_posts) -> Browser:
    client.force_login(admin_user)
    return Browser(client, live_server)


# --------------------------------------------------------------------------
# The real pipeline, end to end
# --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_follow_text_and_postback_go_through_the_webhook_inbox_and_outbox(browser, fake_line, webhook_posts):
    load_demo()
    page = browser.client.get(reverse("messaging:resident-simulator"), HTTP_HOST=browser.host)
    assert page.status_code == 200
    config = page.context["config"]
    assert config["available"] is True and config["user_id"].startswith("U")
    user = config["user_id"]
    assert simulator.is_user_id(user)

    # Opening the page: the resident never followed, so it follows; the greeting comes back.
    followed = browser.ok("follow", {"if_new": True})
    assert followed["sent"] is True and followed["user_id"] == user
    event = InboxEvent.objects.get(webhook_event_id=followed["event_id"])
    assert (event.line_user_id, event.event_type, event.status) == (user, "follow", "pending")
    assert browser.poll()["pending"] == {"inbox": 1, "outbox": 0}
    assert browser.run_pipeline() == [{"type": "text", "text": DEFAULT_GREETING}]
    assert OutboxMessage.objects.get().sent_via == "reply"
    assert browser.poll()["state"] == "following"
    # Opening the page again does not follow again.
    assert browser.ok("follow", {"if_new": True})["sent"] is False

    # A keyword: quick replies.
    received = browser.say("粗大ごみ")
    assert "小城市内にお住まいですか？" in received[-1]["text"]
    assert quick_labels(received) == ["はい", "いいえ", "やめる"]

    # Tapping a rendered postback sends exactly its data: the next question.
    tapped = browser.action("はい")["data"]
    received = browser.tap("はい")
    assert received[-1]["type"] == "flex"
    assert "タンス（1,200円）" in [a["label"] for a in actions_in(received[-1])]
    last_body = json.loads(webhook_posts[-1]["body"])
    assert last_body["events"][0]["postback"] == {"data": tapped}

    # Every webhook went to this server's /line/webhook/, signed with the channel secret, valid for LINE.
    assert len(webhook_posts) == 3
    for post in webhook_posts:
        assert post["url"] == f"http://{browser.host}/line/webhook/"
        assert post["status"] == 200
        assert post["headers"]["X-Line-Signature"] == sign_webhook(post["body"], SECRET)
        payload = json.loads(post["body"])
        assert validate_webhook_body(payload) == []
        assert payload["destination"] == simulator.destination()
        event = payload["events"][0]
        assert event["source"] == {"type": "user", "userId": user}
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", event["webhookEventId"])
    assert InboxEvent.objects.filter(line_user_id=user, status="done").count() == 3
    # Replies used the reply tokens the simulator had the fake issue.
    assert {row.sent_via for row in OutboxMessage.objects.all()} == {"reply"}
    assert fake_line.invalid_calls() == []


@pytest.mark.django_db(transaction=True)
def test_the_signature_is_what_the_webhook_checks(browser, live_server, webhook_posts):
    browser.ok("follow", {"if_new": True})
    post = webhook_posts[-1]
    body = post["body"]
    assert post["headers"]["X-Line-Signature"] == sign_webhook(body, SECRET)
    url = live_server.url + "/line/webhook/"
    headers = {"Content-Type": "application/json"}
    wrong = requests.post(url, data=body, headers={**headers, "X-Line-Signature": sign_webhook(body, "another-secret")}, timeout=5)
    assert wrong.status_code == 400
    unsigned = requests.post(url, data=body, headers=headers, timeout=5)
    assert unsigned.status_code == 400
    assert InboxEvent.objects.count() == 1  # only the simulator's own, correctly signed request


@pytest.mark.django_db(transaction=True)
def test_pushes_and_broadcasts_reach_the_resident(browser, fake_line):
    browser.ok("follow", {"if_new": True})
    browser.run_pipeline()
    user = browser.user
    # A push the city queues later (e.g. a notice about an application).
    services.outbox_push_create(line_user_id=user, messages=[{"type": "text", "text": "収集日が決まりました。"}])
    services.outbox_send()
    # A broadcast: the simulated resident is a follower of the fake LINE.
    response = requests.post(
        fake_line.url + "/v2/bot/message/broadcast",
        json={"messages": [{"type": "text", "text": "台風のお知らせ"}]},
        headers={"Authorization": f"Bearer {ACCESS_TOKEN}"},
        timeout=5,
    )
    assert response.status_code == 200
    data = browser.poll()
    assert [(m["via"], m["message"]["text"]) for m in data["messages"]] == [
        ("push", "収集日が決まりました。"),
        ("broadcast", "台風のお知らせ"),
    ]


@pytest.mark.django_db(transaction=True)
def test_date_picker_image_location_and_sticker(browser, fake_line, webhook_posts, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    data = {
        "name": "写真つき予約",
        "keywords": ["予約"],
        "receipt_prefix": "YOYAKU",
        "steps": [
            {"key": "day", "kind": "date", "label": "希望日を選んでください", "options": {"min_days": 1, "max_days": 30}},
            {"key": "photo", "kind": "image", "label": "写真を送ってください"},
            {"key": "place", "kind": "location", "label": "場所を送ってください"},
            {"key": "confirm", "kind": "confirmation", "label": "確認してください"},
            {"key": "done", "kind": "completion", "label": "受け付けました"},
        ],
    }
    version_publish(version=procedure_import(raw=template_bytes(data), max_bytes=1_000_000).draft)
    browser.ok("follow", {"if_new": True})
    browser.run_pipeline()
    browser.say("予約")
    picker = browser.action("日付を選ぶ")
    assert picker["type"] == "datetimepicker" and picker["mode"] == "date"
    browser.tap("日付を選ぶ", {"date": picker["initial"]})
    assert json.loads(webhook_posts[-1]["body"])["events"][0]["postback"]["params"] == {"date": picker["initial"]}
    assert "写真を送ってください" in json.dumps(browser.received, ensure_ascii=False)

    response = browser.client.post(
        browser.url("upload"), {"file": io.BytesIO(jpeg())}, HTTP_HOST=browser.host
    )
    assert response.status_code == 200, response.content.decode()
    message_id = json.loads(webhook_posts[-1]["body"])["events"][0]["message"]["id"]
    received = browser.run_pipeline()
    # The worker fetched the content from the fake's data host, as it would from LINE.
    assert fake_line.last_call(f"/v2/bot/message/{message_id}/content").status == 200
    assert "場所を送ってください" in json.dumps(received, ensure_ascii=False)

    browser.ok("send", {"type": "location", "latitude": 33.27, "longitude": 130.21, "address": "市役所前"})
    received = browser.run_pipeline()
    assert received[-1]["type"] in ("flex", "template")

    browser.ok("send", {"type": "sticker"})
    browser.run_pipeline()
    kinds = [json.loads(p["body"])["events"][0].get("message", {}).get("type") for p in webhook_posts]
    assert kinds[-3:] == ["image", "location", "sticker"]
    for post in webhook_posts:
        assert validate_webhook_body(json.loads(post["body"])) == []
    assert not InboxEvent.objects.exclude(status="done").exists()


@pytest.mark.django_db(transaction=True)
def test_block_and_follow_again(browser, fake_line):
    browser.ok("follow", {"if_new": True})
    browser.run_pipeline()
    browser.ok("send", {"type": "unfollow"})
    assert browser.run_pipeline() == []
    assert browser.poll()["state"] == "blocked"
    blocked = browser.post("send", {"type": "text", "text": "こんにちは"})
    assert blocked.status_code == 400 and "ブロック中" in blocked.json()["error"]
    # The page opened again does not follow by itself...
    assert browser.ok("follow", {"if_new": True})["sent"] is False
    # ...the 友だち追加 button does: an unblocking follow, and the greeting again.
    again = browser.ok("follow", {"if_new": False})
    assert again["sent"] is True
    assert InboxEvent.objects.get(webhook_event_id=again["event_id"]).payload["follow"] == {"isUnblocked": True}
    assert browser.run_pipeline() == [{"type": "text", "text": DEFAULT_GREETING}]
    assert browser.post("follow", {"if_new": False}).status_code == 400


@pytest.mark.django_db(transaction=True)
def test_another_resident_gets_a_new_stable_user_id(browser, admin_user):
    first = browser.user
    assert first == simulator.resident_user_id(admin_user, 0)
    assert simulator.resident_user_id(admin_user, 0) == first  # stable
    other = browser.ok("reset")["user_id"]
    assert other != first and simulator.is_user_id(other)
    assert browser.user == other
    assert browser.ok("follow", {"if_new": True})["sent"] is True  # a new resident follows on opening


# --------------------------------------------------------------------------
# Access and bad input
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_only(client, django_user_model, fake_line):
    page = reverse("messaging:resident-simulator")
    anonymous = client.get(page)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    for name in ("send", "follow", "reset", "upload"):
        response = client.post(reverse(f"messaging:resident-simulator-{name}"), "{}", content_type="application/json")
        assert response.status_code == 403 and JAPANESE.search(response.json()["error"])
    assert client.get(reverse("messaging:resident-simulator-poll")).status_code == 403
    resident = django_user_model.objects.create_user("resident", password="x" * 16)
    client.force_login(resident)
    assert client.get(page).status_code == 302
    assert client.post(reverse("messaging:resident-simulator-send"), "{}", content_type="application/json").status_code == 403
    assert fake_line.calls() == [] and InboxEvent.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"type": "video"},
        {"type": None},
        {"type": "text", "text": "あ" * 5001},
        {"type": "text", "text": "   "},
        {"type": "text", "text": 42},
        {"type": "postback", "data": "1.forged.[\"c\",\"a\",\"q\",\"\",\"\"]"},
        {"type": "postback", "data": "x" * 301},
        {"type": "postback", "data": ""},
        {"type": "location", "latitude": 91, "longitude": 0},
        {"type": "location", "latitude": "north", "longitude": 0},
        {"type": "location", "latitude": 35, "longitude": 139, "address": "x" * 501},
    ],
)
def test_bad_input_is_a_400_in_japanese(admin_client, fake_line, body):
    response = admin_client.post(reverse("messaging:resident-simulator-send"), json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert JAPANESE.search(response.json()["error"])
    assert InboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_bad_picker_params_and_malformed_requests(admin_client, fake_line, settings):
    from messaging.line import postback
    from procedures.engine.types import Event

    data = postback.encode(Event(type="date", step="day", session="s1"))
    url = reverse("messaging:resident-simulator-send")
    for params in ({"date": "2026-02-30"}, {"date": "tomorrow"}, {"when": "2026-01-01"}, ["2026-01-01"], {}):
        body = {"type": "postback", "data": data, "params": params}
        response = admin_client.post(url, json.dumps(body), content_type="application/json")
        assert response.status_code == 400 and JAPANESE.search(response.json()["error"]), params
    assert admin_client.post(url, "not json", content_type="application/json").status_code == 400
    assert admin_client.post(url, "[1]", content_type="application/json").status_code == 400
    assert admin_client.post(url, "type=text", content_type="text/plain").status_code == 415
    assert admin_client.get(url).status_code == 405
    poll = reverse("messaging:resident-simulator-poll")
    for after in ("-1", "abc", "9" * 19):
        response = admin_client.get(poll, {"after": after})
        assert response.status_code == 400 and JAPANESE.search(response.json()["error"])
    follow = reverse("messaging:resident-simulator-follow")
    assert admin_client.post(follow, json.dumps({"if_new": "yes"}), content_type="application/json").status_code == 400
    upload = reverse("messaging:resident-simulator-upload")
    assert admin_client.post(upload, {}).status_code == 400
    settings.SIMULATOR_UPLOAD_MAX_BYTES = 1024
    too_large = admin_client.post(upload, {"file": io.BytesIO(b"x" * 2048)})
    assert too_large.status_code == 413 and JAPANESE.search(too_large.json()["error"])
    assert InboxEvent.objects.count() == 0 and fake_line.calls() == []


@pytest.mark.django_db
def test_never_talks_to_the_real_line(admin_client, settings, monkeypatch):
    settings.LINE_API_BASE_URL = "https://api.line.me"

    def no_network(*args, **kwargs):
        raise AssertionError("the simulator must not call out when LINE is the real one")

    monkeypatch.setattr(simulator.requests, "post", no_network)
    monkeypatch.setattr(simulator.requests.Session, "request", no_network)
    page = admin_client.get(reverse("messaging:resident-simulator"))
    assert page.status_code == 200
    assert page.context["config"]["available"] is False
    assert "本物の LINE" in page.context["problem"]
    response = admin_client.post(
        reverse("messaging:resident-simulator-send"),
        json.dumps({"type": "text", "text": "こんにちは"}),
        content_type="application/json",
    )
    assert response.status_code == 503 and JAPANESE.search(response.json()["error"])


@pytest.mark.django_db
def test_a_fake_line_that_is_down_is_a_503_not_a_500(admin_client, settings):
    settings.LINE_API_BASE_URL = "http://127.0.0.1:9"  # discard: nothing listens
    page = admin_client.get(reverse("messaging:resident-simulator"))
    assert page.status_code == 200 and page.context["config"]["available"] is False
    response = admin_client.get(reverse("messaging:resident-simulator-poll"))
    assert response.status_code == 503 and "fakeline" in response.json()["error"]


def test_event_ids_are_unique_ulids():
    ids = {simulator.new_webhook_event_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", value) for value in ids)
    assert all(len(simulator.new_message_id()) == 18 for _ in range(10))
