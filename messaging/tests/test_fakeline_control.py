"""The fake LINE's control API (/_fake/... on the API port): what a fake run outside pytest offers a simulator."""

import socket

import pytest
import requests

from messaging.line.fakeline import FakeLineServer
from messaging.line.fakeline.control import FakeLineControl

TOKEN = "test-channel-access-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
USER = "U" + "a" * 32
OTHER = "U" + "b" * 32


def control(fake_line, method, path, **kwargs):
    return requests.request(method, fake_line.control_url + path, timeout=5, **kwargs)


def send(fake_line, path, body):
    response = requests.post(fake_line.url + path, json=body, headers=AUTH, timeout=5)
    assert response.status_code == 200, response.text
    return response


def text(value):
    return {"type": "text", "text": value}


def test_health_answers_without_auth_and_is_not_a_recorded_call(fake_line):
    response = control(fake_line, "GET", "/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["calls"] == 0 and body["invalidCalls"] == 0
    assert body["instance"] == fake_line.control.instance
    assert fake_line.control_url == fake_line.url + "/_fake"
    assert fake_line.calls() == []


def test_reply_token_from_the_control_api_works_once_for_its_user(fake_line):
    response = control(fake_line, "POST", "/reply-tokens", json={"userId": USER})
    assert response.status_code == 200
    token = response.json()["replyToken"]
    assert response.json()["expiresIn"] == 60
    send(fake_line, "/v2/bot/message/reply", {"replyToken": token, "messages": [text("こんにちは")]})
    again = requests.post(
        fake_line.url + "/v2/bot/message/reply",
        json={"replyToken": token, "messages": [text("2回目")]},
        headers=AUTH,
        timeout=5,
    )
    assert again.status_code == 400
    assert fake_line.messages_sent_to(USER) == [text("こんにちは")]


def test_added_user_gets_a_profile_and_broadcasts_until_unfollowed(fake_line):
    response = control(fake_line, "POST", "/users", json={"userId": USER, "displayName": "佐賀 太郎"})
    assert response.status_code == 200
    assert response.json() == {"userId": USER, "displayName": "佐賀 太郎", "follower": True}
    profile = requests.get(f"{fake_line.url}/v2/bot/profile/{USER}", headers=AUTH, timeout=5)
    assert profile.json() == {"userId": USER, "displayName": "佐賀 太郎"}
    send(fake_line, "/v2/bot/message/broadcast", {"messages": [text("お知らせ1")]})
    control(fake_line, "POST", "/users", json={"userId": USER, "follower": False})
    send(fake_line, "/v2/bot/message/broadcast", {"messages": [text("お知らせ2")]})
    assert fake_line.messages_sent_to(USER) == [text("お知らせ1")]


def test_content_is_served_on_the_data_host(fake_line):
    jpeg = b"\xff\xd8\xff\xe0 not really a jpeg"
    response = control(fake_line, "PUT", "/contents/700000000000000123", data=jpeg, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 201
    assert response.json() == {"messageId": "700000000000000123", "size": len(jpeg), "contentType": "image/jpeg"}
    got = requests.get(f"{fake_line.data_url}/v2/bot/message/700000000000000123/content", headers=AUTH, timeout=5)
    assert got.status_code == 200 and got.content == jpeg and got.headers["Content-Type"] == "image/jpeg"
    # Without an id, the fake makes one.
    made = control(fake_line, "POST", "/contents", data=b"\x89PNG...", headers={"Content-Type": "image/png"})
    assert made.status_code == 201
    message_id = made.json()["messageId"]
    assert message_id.isdigit()
    got = requests.get(f"{fake_line.data_url}/v2/bot/message/{message_id}/content", headers=AUTH, timeout=5)
    assert got.content == b"\x89PNG..."


def test_messages_since_a_cursor_cover_reply_push_multicast_and_broadcast(fake_line):
    fake_line.add_user(USER)
    fake_line.add_user(OTHER)
    token = fake_line.issue_reply_token(USER)
    send(fake_line, "/v2/bot/message/reply", {"replyToken": token, "messages": [text("返信1"), text("返信2")]})
    send(fake_line, "/v2/bot/message/push", {"to": OTHER, "messages": [text("ほかの人へ")]})
    send(fake_line, "/v2/bot/message/push", {"to": USER, "messages": [text("プッシュ")]})
    send(fake_line, "/v2/bot/message/multicast", {"to": [USER, OTHER], "messages": [text("マルチ")]})
    send(fake_line, "/v2/bot/message/broadcast", {"messages": [text("全員へ")]})

    body = control(fake_line, "GET", "/messages", params={"userId": USER}).json()
    got = [(m["via"], m["message"]["text"]) for m in body["messages"]]
    assert got == [
        ("reply", "返信1"),
        ("reply", "返信2"),
        ("push", "プッシュ"),
        ("multicast", "マルチ"),
        ("broadcast", "全員へ"),
    ]
    seqs = [m["seq"] for m in body["messages"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert body["next"] == seqs[-1] and body["latestSeq"] == seqs[-1]
    assert body["instance"] == fake_line.control.instance
    assert all(m["sentAt"].endswith("+00:00") for m in body["messages"])
    assert [m["message"] for m in body["messages"]] == fake_line.messages_sent_to(USER)

    # Polling from a cursor returns only what is newer; nothing new keeps the cursor.
    later = control(fake_line, "GET", "/messages", params={"userId": USER, "after": seqs[2]}).json()
    assert [m["message"]["text"] for m in later["messages"]] == ["マルチ", "全員へ"]
    idle = control(fake_line, "GET", "/messages", params={"userId": USER, "after": body["next"]}).json()
    assert idle["messages"] == [] and idle["next"] == body["next"]
    limited = control(fake_line, "GET", "/messages", params={"userId": USER, "limit": 2}).json()
    assert len(limited["messages"]) == 2 and limited["next"] == seqs[1]


def test_refused_and_invalid_sends_are_not_delivered(fake_line):
    fake_line.expect_invalid()
    requests.post(
        fake_line.url + "/v2/bot/message/push", json={"to": USER, "messages": []}, headers=AUTH, timeout=5
    )
    fake_line.fail_next(500)
    requests.post(
        fake_line.url + "/v2/bot/message/push", json={"to": USER, "messages": [text("x")]}, headers=AUTH, timeout=5
    )
    assert control(fake_line, "GET", "/messages", params={"userId": USER}).json()["messages"] == []


def test_sequence_keeps_growing_across_reset(fake_line):
    send(fake_line, "/v2/bot/message/push", {"to": USER, "messages": [text("前")]})
    first = control(fake_line, "GET", "/messages", params={"userId": USER}).json()["next"]
    fake_line.reset()
    send(fake_line, "/v2/bot/message/push", {"to": USER, "messages": [text("後")]})
    body = control(fake_line, "GET", "/messages", params={"userId": USER, "after": first}).json()
    assert [m["message"]["text"] for m in body["messages"]] == ["後"]
    assert body["messages"][0]["seq"] > first


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/reply-tokens", {"json": {"userId": "someone"}}, 400),
        ("POST", "/reply-tokens", {"json": {"userId": USER, "ttl": -1}}, 400),
        ("POST", "/reply-tokens", {"data": "userId=U", "headers": {"Content-Type": "text/plain"}}, 415),
        ("POST", "/reply-tokens", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ("POST", "/reply-tokens", {"json": [USER]}, 400),
        ("POST", "/users", {"json": {"userId": USER, "follower": "yes"}}, 400),
        ("POST", "/users", {"json": {"userId": USER, "displayName": "x" * 101}}, 400),
        ("PUT", "/contents/" + "1" * 65, {"data": b"x", "headers": {"Content-Type": "image/png"}}, 400),
        ("PUT", "/contents/1/2", {"data": b"x", "headers": {"Content-Type": "image/png"}}, 400),
        ("PUT", "/contents/a%20b", {"data": b"x", "headers": {"Content-Type": "image/png"}}, 400),
        ("PUT", "/contents/123", {"data": b"", "headers": {"Content-Type": "image/png"}}, 400),
        ("PUT", "/contents/123", {"data": b"x", "headers": {"Content-Type": "not a type"}}, 400),
        ("GET", "/messages", {"params": {"userId": USER, "after": "-1"}}, 400),
        ("GET", "/messages", {"params": {"userId": USER, "limit": "0"}}, 400),
        ("GET", "/messages", {"params": {}}, 400),
        ("DELETE", "/messages", {}, 405),
        ("GET", "/nothing-here", {}, 404),
    ],
)
def test_bad_control_requests_answer_4xx_json(fake_line, method, path, kwargs, status):
    response = control(fake_line, method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["message"]
    assert fake_line.calls() == []


def test_control_body_over_the_limit_is_refused_before_reading(fake_line, monkeypatch):
    monkeypatch.setattr("messaging.line.fakeline.control.JSON_MAX_BYTES", 100)
    response = control(fake_line, "POST", "/users", json={"userId": USER, "displayName": "x" * 200})
    assert response.status_code == 413


def test_control_api_is_not_on_the_data_host(fake_line):
    fake_line.expect_invalid()
    response = requests.get(fake_line.data_url + "/_fake/health", timeout=5)
    assert response.status_code == 404
    assert fake_line.calls()[-1].invalid


def test_fixed_ports_and_only_loopback():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        data_port = probe.getsockname()[1]
    with FakeLineServer(api_port=port, data_port=data_port) as server:
        assert server.url == f"http://127.0.0.1:{port}"
        assert server.data_url == f"http://127.0.0.1:{data_port}"
        for listening in server._servers.values():
            assert listening.server_address[0] == "127.0.0.1"
        assert requests.get(server.control_url + "/health", timeout=5).json()["status"] == "ok"
        # A second fake on the same ports fails to start and leaves nothing open.
        clash = FakeLineServer(api_port=port, data_port=data_port)
        with pytest.raises(OSError):
            clash.start()
        assert clash._servers == {}


def test_log_keeps_the_newest_messages_only():
    server = FakeLineServer()
    server.control = FakeLineControl(server.state, log_max=2)
    server.start()
    try:
        for n in range(3):
            send(server, "/v2/bot/message/push", {"to": USER, "messages": [text(f"m{n}")]})
        body = server.control.messages_for(USER)
        assert [m["message"]["text"] for m in body["messages"]] == ["m1", "m2"]
        assert body["latestSeq"] == 3
    finally:
        server.stop()
