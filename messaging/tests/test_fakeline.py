"""The fake LINE API server: spec validation, host awareness, recorded calls, behaviours and LINE-side state."""

import io
import json
import uuid
from pathlib import Path

import pytest
import requests
from PIL import Image

from messaging.line.fakeline import HOST_API, HOST_DATA, load_specs, schema_errors, sign_webhook, validate_webhook_body
from messaging.line.fakeline.pytest_plugin import check_invalid_requests, invalid_request_report

TOKEN = "test-channel-access-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
USER = "U4af4980629aaaaaaaaaaaaaaaaaaaaaa"
OTHER_USER = "U95afb1d4dfbbbbbbbbbbbbbbbbbbbbbb"
WEBHOOK_FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"


def post(fake_line, path, body=None, *, data_host=False, headers=None, auth=True, **kwargs):
    base = fake_line.data_url if data_host else fake_line.url
    all_headers = {**(AUTH if auth else {}), **(headers or {})}
    return requests.post(base + path, json=body, headers=all_headers, timeout=5, **kwargs)


def get(fake_line, path, *, data_host=False, **kwargs):
    base = fake_line.data_url if data_host else fake_line.url
    return requests.get(base + path, headers=AUTH, timeout=5, **kwargs)


def push(fake_line, messages, to=USER, headers=None):
    return post(fake_line, "/v2/bot/message/push", {"to": to, "messages": messages}, headers=headers)


def text(value="こんにちは"):
    return {"type": "text", "text": value}


def png(width=2500, height=843, fmt="PNG"):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format=fmt)
    return buffer.getvalue()


RICH_MENU = {
    "size": {"width": 2500, "height": 843},
    "selected": True,
    "name": "main",
    "chatBarText": "メニュー",
    "areas": [
        {"bounds": {"x": 0, "y": 0, "width": 1250, "height": 843}, "action": {"type": "postback", "data": "a=1"}},
        {
            "bounds": {"x": 1250, "y": 0, "width": 1250, "height": 843},
            "action": {"type": "richmenuswitch", "richMenuAliasId": "page-2", "data": "page=2"},
        },
    ],
}

POSTBACK = {"type": "postback", "label": "はい", "data": "answer=yes", "displayText": "はい"}
MESSAGE_ACTION = {"type": "message", "label": "いいえ", "text": "いいえ"}
URI_ACTION = {"type": "uri", "label": "詳細", "uri": "https://example.com/info"}
DATETIME_ACTION = {"type": "datetimepicker", "label": "日時", "data": "pick=1", "mode": "datetime"}

VALID_MESSAGES = {
    "text": text(),
    "text_quick_reply": {
        "type": "text",
        "text": "選んでください",
        "quickReply": {
            "items": [
                {"type": "action", "action": POSTBACK},
                {"type": "action", "action": DATETIME_ACTION},
                {"type": "action", "action": {"type": "location", "label": "位置情報"}},
                {"type": "action", "action": {"type": "camera", "label": "カメラ"}},
            ]
        },
    },
    "buttons": {
        "type": "template",
        "altText": "ボタン",
        "template": {
            "type": "buttons",
            "title": "粗大ごみ",
            "text": "申し込みますか？",
            "thumbnailImageUrl": "https://example.com/a.jpg",
            "actions": [POSTBACK, MESSAGE_ACTION, URI_ACTION, DATETIME_ACTION],
        },
    },
    "confirm": {
        "type": "template",
        "altText": "確認",
        "template": {"type": "confirm", "text": "よろしいですか？", "actions": [POSTBACK, MESSAGE_ACTION]},
    },
    "carousel": {
        "type": "template",
        "altText": "カルーセル",
        "template": {
            "type": "carousel",
            "columns": [
                {"text": "第1候補", "actions": [POSTBACK]},
                {"text": "第2候補", "title": "午後", "actions": [URI_ACTION]},
            ],
        },
    },
    "flex": {
        "type": "flex",
        "altText": "受付完了",
        "contents": {
            "type": "bubble",
            "body": {
                "type": "box",
                "layout": "vertical",
                "contents": [
                    {"type": "text", "text": "受付番号", "weight": "bold"},
                    {"type": "separator"},
                    {"type": "button", "action": URI_ACTION, "style": "primary"},
                ],
            },
        },
    },
    "flex_carousel": {
        "type": "flex",
        "altText": "一覧",
        "contents": {
            "type": "carousel",
            "contents": [{"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": []}}],
        },
    },
    "imagemap": {
        "type": "imagemap",
        "baseUrl": "https://example.com/imagemap",
        "altText": "地図",
        "baseSize": {"width": 1040, "height": 1040},
        "actions": [
            {"type": "uri", "linkUri": "https://example.com/", "area": {"x": 0, "y": 0, "width": 520, "height": 1040}},
            {"type": "message", "text": "右", "area": {"x": 520, "y": 0, "width": 520, "height": 1040}},
        ],
    },
    "sticker": {"type": "sticker", "packageId": "446", "stickerId": "1988"},
    "image": {
        "type": "image",
        "originalContentUrl": "https://example.com/original.jpg",
        "previewImageUrl": "https://example.com/preview.jpg",
    },
    "location": {
        "type": "location",
        "title": "市役所",
        "address": "東京都千代田区丸の内1-1-1",
        "latitude": 35.681236,
        "longitude": 139.767125,
    },
}


# ------------------------------------------------------------------------------------------------------------
# Messages and validation


def test_valid_push_is_accepted_and_recorded(fake_line):
    response = push(fake_line, [text("お知らせ")])

    assert response.status_code == 200
    sent = response.json()["sentMessages"]
    assert len(sent) == 1 and sent[0]["id"].isdigit()
    assert response.headers["x-line-request-id"]
    call = fake_line.last_call("/v2/bot/message/push", "POST")
    assert (call.method, call.host, call.path, call.status) == ("POST", HOST_API, "/v2/bot/message/push", 200)
    assert call.operation_id == "pushMessage"
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.headers["content-type"].startswith("application/json")
    assert call.body == {"to": USER, "messages": [text("お知らせ")]}
    assert call.query == {}
    assert call.timestamp > 0 and not call.invalid
    assert fake_line.messages_sent_to(USER) == [text("お知らせ")]
    assert fake_line.messages_sent_to(OTHER_USER) == []


@pytest.mark.parametrize("name", sorted(VALID_MESSAGES))
def test_valid_message_kinds_pass_the_schema(name):
    assert schema_errors("messaging-api", "Message", VALID_MESSAGES[name]) == []


def test_push_of_five_valid_messages_of_different_kinds_is_accepted(fake_line):
    messages = [VALID_MESSAGES[k] for k in ("text_quick_reply", "buttons", "flex", "imagemap", "location")]
    assert push(fake_line, messages).status_code == 200
    assert fake_line.messages_sent_to(USER) == messages


def test_message_of_unknown_type_is_rejected_with_details(fake_line):
    fake_line.expect_invalid()
    response = push(fake_line, [text(), {"type": "bogus", "text": "x"}])

    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "The request body has 1 error(s)"
    assert body["details"][0]["property"] == "messages[1].type"
    assert "bogus" in body["details"][0]["message"]
    call = fake_line.last_call()
    assert call.invalid and call.status == 400
    assert fake_line.messages_sent_to(USER) == []


def test_text_message_without_text_is_rejected(fake_line):
    fake_line.expect_invalid()
    response = push(fake_line, [{"type": "text"}])

    assert response.status_code == 400
    assert response.json()["details"] == [{"message": "'text' is a required property", "property": "messages[0].text"}]


def test_quick_reply_postback_without_data_is_rejected(fake_line):
    fake_line.expect_invalid()
    message = {
        "type": "text",
        "text": "?",
        "quickReply": {"items": [{"type": "action", "action": {"type": "postback", "label": "x"}}]},
    }
    response = push(fake_line, [message])

    assert response.status_code == 400
    assert [d["property"] for d in response.json()["details"]] == ["messages[0].quickReply.items[0].action.data"]


def test_template_buttons_and_confirm_validate_concrete_action_types(fake_line):
    assert (
        push(fake_line, [VALID_MESSAGES["buttons"], VALID_MESSAGES["confirm"], VALID_MESSAGES["carousel"]]).status_code
        == 200
    )

    fake_line.expect_invalid()
    broken_buttons = json.loads(json.dumps(VALID_MESSAGES["buttons"]))
    broken_buttons["template"]["actions"] = [
        {"type": "datetimepicker", "label": "日時", "data": "d"},
        {"type": "uri", "label": "x"},
    ]
    broken_confirm = {
        "type": "template",
        "altText": "a",
        "template": {"type": "confirm", "text": "?", "actions": [{"type": "teleport"}]},
    }
    response = push(fake_line, [broken_buttons, broken_confirm])

    assert response.status_code == 400
    assert [d["property"] for d in response.json()["details"]] == [
        "messages[0].template.actions[0].mode",
        "messages[0].template.actions[1].uri",
        "messages[1].template.actions[0].type",
    ]


def test_flex_component_of_unknown_type_and_relative_image_url_are_rejected():
    flex = json.loads(json.dumps(VALID_MESSAGES["flex"]))
    flex["contents"]["body"]["contents"].append({"type": "sparkle"})
    image = {"type": "image", "originalContentUrl": "/media/a.jpg", "previewImageUrl": "https://example.com/p.jpg"}

    assert [e.split(":")[0] for e in schema_errors("messaging-api", "Message", flex)] == [
        "contents.body.contents[3].type"
    ]
    assert schema_errors("messaging-api", "Message", image) == ["originalContentUrl: '/media/a.jpg' is not a 'uri'"]


def test_more_than_five_messages_or_multicast_over_500_are_rejected(fake_line):
    fake_line.expect_invalid()
    assert push(fake_line, [text()] * 6).status_code == 400
    to = [f"U{i:032x}" for i in range(501)]
    response = post(fake_line, "/v2/bot/message/multicast", {"to": to, "messages": [text()]})
    assert response.status_code == 400
    assert response.json()["details"][0]["property"] == "to"


def test_multicast_within_limits_reaches_every_recipient(fake_line):
    assert (
        post(
            fake_line, "/v2/bot/message/multicast", {"to": [USER, OTHER_USER], "messages": [text("全員へ")]}
        ).status_code
        == 200
    )
    assert fake_line.messages_sent_to(USER) == fake_line.messages_sent_to(OTHER_USER) == [text("全員へ")]


# ------------------------------------------------------------------------------------------------------------
# Retry keys, injected failures and delays


def test_repeated_retry_key_answers_409_and_is_not_delivered_twice(fake_line):
    key = str(uuid.uuid4())
    first = push(fake_line, [text("一回だけ")], headers={"X-Line-Retry-Key": key})
    second = push(fake_line, [text("一回だけ")], headers={"X-Line-Retry-Key": key})

    assert first.status_code == 200
    assert second.status_code == 409
    assert second.headers["x-line-accepted-request-id"] == first.headers["x-line-request-id"]
    assert second.json() == {
        "message": "The retry key is already accepted",
        "sentMessages": first.json()["sentMessages"],
    }
    assert fake_line.messages_sent_to(USER) == [text("一回だけ")]

    multicast_key = str(uuid.uuid4())
    body = {"to": [OTHER_USER], "messages": [text()]}
    statuses = [
        post(fake_line, "/v2/bot/message/multicast", body, headers={"X-Line-Retry-Key": multicast_key}).status_code
        for _ in range(2)
    ]
    assert statuses == [200, 409]
    assert len(fake_line.messages_sent_to(OTHER_USER)) == 1


def test_retry_key_of_a_failed_request_can_be_used_again(fake_line):
    key = str(uuid.uuid4())
    fake_line.fail_next(status=500)
    assert push(fake_line, [text()], headers={"X-Line-Retry-Key": key}).status_code == 500
    assert push(fake_line, [text()], headers={"X-Line-Retry-Key": key}).status_code == 200
    assert len(fake_line.messages_sent_to(USER)) == 1


def test_malformed_retry_key_is_rejected(fake_line):
    fake_line.expect_invalid()
    response = push(fake_line, [text()], headers={"X-Line-Retry-Key": "not-a-uuid"})
    assert response.status_code == 400
    assert response.json()["details"][0]["property"] == "X-Line-Retry-Key"


def test_fail_next_answers_429_then_recovers(fake_line):
    fake_line.fail_next(status=429, times=2)

    responses = [push(fake_line, [text()]) for _ in range(3)]

    assert [r.status_code for r in responses] == [429, 429, 200]
    assert responses[0].json() == {"message": "Too Many Requests"}
    assert fake_line.messages_sent_to(USER) == [text()]
    assert [c.injected for c in fake_line.calls()] == [True, True, False]


def test_fail_next_only_hits_matching_path_prefix(fake_line):
    fake_line.fail_next(status=500, path_prefix="/v2/bot/message/multicast")
    assert push(fake_line, [text()]).status_code == 200
    assert post(fake_line, "/v2/bot/message/multicast", {"to": [USER], "messages": [text()]}).status_code == 500


def test_outage_fails_every_call_until_recovered(fake_line):
    with fake_line.outage(status=503):
        assert [push(fake_line, [text()]).status_code for _ in range(3)] == [503, 503, 503]
    assert push(fake_line, [text()]).status_code == 200


def test_invalid_request_is_reported_even_during_an_outage(fake_line):
    fake_line.expect_invalid()
    fake_line.fail_all(status=500)
    assert push(fake_line, [{"type": "text"}]).status_code == 400


def test_delay_next_times_the_client_out_but_the_request_was_processed(fake_line):
    fake_line.delay_next(0.5)
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{fake_line.url}/v2/bot/message/push", json={"to": USER, "messages": [text()]}, headers=AUTH, timeout=0.1
        )
    assert fake_line.last_call().accepted
    assert push(fake_line, [text("次")]).status_code == 200  # the next call is fast again


# ------------------------------------------------------------------------------------------------------------
# Hosts, auth, routing, parameters


def test_content_is_served_only_on_data_host(fake_line):
    fake_line.add_content("1001", b"\xff\xd8jpeg-bytes", "image/jpeg")

    on_data = get(fake_line, "/v2/bot/message/1001/content", data_host=True)
    assert on_data.status_code == 200
    assert on_data.content == b"\xff\xd8jpeg-bytes"
    assert on_data.headers["content-type"] == "image/jpeg"
    assert fake_line.last_call().host == HOST_DATA

    assert get(fake_line, "/v2/bot/message/9999/content", data_host=True).status_code == 404
    assert not fake_line.last_call().invalid  # unknown content is not a client bug

    fake_line.expect_invalid()
    on_api = get(fake_line, "/v2/bot/message/1001/content")
    assert on_api.status_code == 404
    assert "api-data.line.me" in on_api.json()["message"]
    wrong_way = requests.post(
        f"{fake_line.data_url}/v2/bot/message/push", json={"to": USER, "messages": [text()]}, headers=AUTH, timeout=5
    )
    assert wrong_way.status_code == 404
    assert "api.line.me" in wrong_way.json()["message"]
    assert [c.invalid for c in fake_line.calls()] == [False, False, True, True]


def test_reply_with_unknown_token_is_refused(fake_line):
    token = fake_line.issue_reply_token(USER)
    expired = fake_line.issue_reply_token(USER, ttl=-1)

    def reply(reply_token):
        return post(fake_line, "/v2/bot/message/reply", {"replyToken": reply_token, "messages": [text("返信")]})

    assert reply("nHuyWiB7yP5Zw52FIkcQobQuGDXCTA").json() == {"message": "Invalid reply token"}
    assert reply(expired).status_code == 400
    first = reply(token)
    assert first.status_code == 200 and len(first.json()["sentMessages"]) == 1
    used_again = reply(token)
    assert (used_again.status_code, used_again.json()) == (400, {"message": "Invalid reply token"})
    assert fake_line.messages_sent_to(USER) == [text("返信")]
    assert fake_line.invalid_calls() == []  # token problems are LINE-side state, not malformed requests


def test_missing_authorization_is_401(fake_line):
    fake_line.expect_invalid()
    response = post(fake_line, "/v2/bot/message/push", {"to": USER, "messages": [text()]}, auth=False)
    assert response.status_code == 401
    assert response.json()["message"].startswith("Authentication failed")
    malformed = post(
        fake_line,
        "/v2/bot/message/push",
        {"to": USER, "messages": [text()]},
        auth=False,
        headers={"Authorization": TOKEN},
    )
    assert malformed.status_code == 401
    assert fake_line.messages_sent_to(USER) == []


def test_only_accepted_tokens_pass_when_configured(fake_line):
    fake_line.accept_tokens("other-token")
    fake_line.expect_invalid()
    assert push(fake_line, [text()]).status_code == 401


def test_unknown_route_and_wrong_method_are_rejected(fake_line):
    fake_line.expect_invalid()
    assert post(fake_line, "/v2/bot/message/pushh", {}).status_code == 404
    response = requests.put(f"{fake_line.url}/v2/bot/message/push", json={}, headers=AUTH, timeout=5)
    assert response.status_code == 405
    assert len(fake_line.invalid_calls()) == 2


def test_non_json_body_is_rejected(fake_line):
    fake_line.expect_invalid()
    response = requests.post(
        f"{fake_line.url}/v2/bot/message/push",
        data=b"to=U1",
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert response.status_code == 415
    broken = requests.post(
        f"{fake_line.url}/v2/bot/message/push",
        data=b"{",
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=5,
    )
    assert broken.status_code == 400


def test_query_parameters_are_validated(fake_line):
    for user_id in (USER, OTHER_USER, "U" + "c" * 32):
        fake_line.add_user(user_id)
    page = get(fake_line, "/v2/bot/followers/ids", params={"limit": 2}).json()
    assert page == {"userIds": [USER, OTHER_USER], "next": "2"}
    assert get(fake_line, "/v2/bot/followers/ids", params={"start": page["next"]}).json() == {
        "userIds": ["U" + "c" * 32]
    }

    fake_line.expect_invalid()
    too_many = get(fake_line, "/v2/bot/followers/ids", params={"limit": 5000})
    assert too_many.status_code == 400
    assert too_many.json()["details"][0]["property"] == "limit"
    assert get(fake_line, "/v2/bot/followers/ids", params={"limit": "many"}).status_code == 400


def test_profile_quota_and_narrowcast_state(fake_line):
    fake_line.add_user(USER, "市民 太郎", picture_url="https://example.com/p.png", language="ja")
    assert get(fake_line, f"/v2/bot/profile/{USER}").json() == {
        "userId": USER,
        "displayName": "市民 太郎",
        "pictureUrl": "https://example.com/p.png",
        "language": "ja",
    }
    assert get(fake_line, f"/v2/bot/profile/{OTHER_USER}").status_code == 404

    assert get(fake_line, "/v2/bot/message/quota").json() == {"type": "none"}
    fake_line.set_quota(type="limited", value=2)
    assert push(fake_line, [text()]).status_code == 200
    assert (
        post(fake_line, "/v2/bot/message/multicast", {"to": [USER, OTHER_USER], "messages": [text()]}).status_code
        == 429
    )
    assert get(fake_line, "/v2/bot/message/quota").json() == {"type": "limited", "value": 2}
    assert get(fake_line, "/v2/bot/message/quota/consumption").json() == {"totalUsage": 1}
    fake_line.set_quota(type="none", total_usage=1234)
    assert get(fake_line, "/v2/bot/message/quota/consumption").json() == {"totalUsage": 1234}

    narrowcast = post(fake_line, "/v2/bot/message/narrowcast", {"messages": [text()]})
    assert narrowcast.status_code == 202
    progress = get(
        fake_line, "/v2/bot/message/progress/narrowcast", params={"requestId": narrowcast.headers["x-line-request-id"]}
    )
    assert progress.json()["phase"] == "succeeded"

    assert post(fake_line, "/v2/bot/chat/loading/start", {"chatId": USER, "loadingSeconds": 5}).status_code == 202
    fake_line.expect_invalid()
    assert post(fake_line, "/v2/bot/chat/loading/start", {"chatId": USER, "loadingSeconds": 90}).status_code == 400


def test_multipart_audience_upload_on_data_host_is_validated(fake_line):
    ids = ("ids.txt", f"{USER}\n{OTHER_USER}\n".encode(), "text/plain")
    ok = requests.post(
        f"{fake_line.data_url}/v2/bot/audienceGroup/upload/byFile",
        files={"file": ids},
        data={"description": "粗大ごみ申込者", "isIfaAudience": "false"},
        headers=AUTH,
        timeout=5,
    )
    assert ok.status_code == 202
    assert fake_line.last_call().body["file"].data.decode() == f"{USER}\n{OTHER_USER}\n"

    fake_line.expect_invalid()
    bad = requests.post(
        f"{fake_line.data_url}/v2/bot/audienceGroup/upload/byFile",
        files={"other": ids},
        data={"isIfaAudience": "maybe"},
        headers=AUTH,
        timeout=5,
    )
    assert bad.status_code == 400
    assert {d["property"] for d in bad.json()["details"]} == {"file", "isIfaAudience"}


def test_a_bug_in_the_fake_answers_500_and_is_reported(fake_line, monkeypatch):
    def broken(call, op):
        raise KeyError("oops")

    monkeypatch.setitem(fake_line.platform._handlers, "getMessageQuota", broken)
    fake_line.expect_invalid()
    response = get(fake_line, "/v2/bot/message/quota")
    assert response.status_code == 500
    assert "internal error in the fake" in response.json()["message"]
    assert fake_line.last_call().invalid


# ------------------------------------------------------------------------------------------------------------
# Rich menus


def create_menu(fake_line, menu=RICH_MENU):
    response = post(fake_line, "/v2/bot/richmenu", menu)
    assert response.status_code == 200, response.text
    return response.json()["richMenuId"]


def upload(fake_line, rich_menu_id, data, content_type="image/png"):
    return requests.post(
        f"{fake_line.data_url}/v2/bot/richmenu/{rich_menu_id}/content",
        data=data,
        headers={**AUTH, "Content-Type": content_type},
        timeout=5,
    )


def test_rich_menu_lifecycle(fake_line):
    menu_id = create_menu(fake_line)
    assert get(fake_line, f"/v2/bot/richmenu/{menu_id}").json() == {"richMenuId": menu_id, **RICH_MENU}
    assert post(fake_line, f"/v2/bot/user/all/richmenu/{menu_id}").json() == {
        "message": "must upload richmenu image before applying it to user"
    }

    image = png()
    assert upload(fake_line, menu_id, image).status_code == 200
    assert fake_line.last_call().host == HOST_DATA and fake_line.last_call().body_size == len(image)
    assert get(fake_line, f"/v2/bot/richmenu/{menu_id}/content", data_host=True).content == image
    assert upload(fake_line, menu_id, image).status_code == 400  # LINE: an image can be uploaded only once

    assert post(fake_line, f"/v2/bot/user/all/richmenu/{menu_id}").status_code == 200
    assert get(fake_line, "/v2/bot/user/all/richmenu").json() == {"richMenuId": menu_id}
    assert requests.delete(f"{fake_line.url}/v2/bot/user/all/richmenu", headers=AUTH, timeout=5).status_code == 200
    assert get(fake_line, "/v2/bot/user/all/richmenu").status_code == 404

    assert post(fake_line, f"/v2/bot/user/{USER}/richmenu/{menu_id}").status_code == 200
    assert get(fake_line, f"/v2/bot/user/{USER}/richmenu").json() == {"richMenuId": menu_id}
    assert requests.delete(f"{fake_line.url}/v2/bot/user/{USER}/richmenu", headers=AUTH, timeout=5).status_code == 200
    assert fake_line.rich_menu_of(USER) is None

    bulk = post(fake_line, "/v2/bot/richmenu/bulk/link", {"richMenuId": menu_id, "userIds": [USER, OTHER_USER]})
    assert bulk.status_code == 202
    assert fake_line.rich_menu_of(OTHER_USER) == menu_id
    assert post(fake_line, "/v2/bot/richmenu/bulk/unlink", {"userIds": [USER, OTHER_USER]}).status_code == 202
    assert fake_line.rich_menu_of(OTHER_USER) is None

    second_id = create_menu(fake_line)
    assert (
        post(fake_line, "/v2/bot/richmenu/alias", {"richMenuAliasId": "page-2", "richMenuId": menu_id}).status_code
        == 200
    )
    assert (
        post(fake_line, "/v2/bot/richmenu/alias", {"richMenuAliasId": "page-2", "richMenuId": menu_id}).status_code
        == 400
    )
    assert post(fake_line, "/v2/bot/richmenu/alias/page-2", {"richMenuId": second_id}).status_code == 200
    assert get(fake_line, "/v2/bot/richmenu/alias/list").json() == {
        "aliases": [{"richMenuAliasId": "page-2", "richMenuId": second_id}]
    }
    assert requests.delete(f"{fake_line.url}/v2/bot/richmenu/alias/page-2", headers=AUTH, timeout=5).status_code == 200
    assert fake_line.rich_menu_aliases == {}

    assert len(get(fake_line, "/v2/bot/richmenu/list").json()["richmenus"]) == 2
    assert requests.delete(f"{fake_line.url}/v2/bot/richmenu/{second_id}", headers=AUTH, timeout=5).status_code == 200
    assert list(fake_line.rich_menus) == [menu_id]
    assert get(fake_line, f"/v2/bot/richmenu/{second_id}").status_code == 404
    assert fake_line.invalid_calls() == []


def test_rich_menu_image_over_1mb_or_wrong_size_is_rejected(fake_line):
    menu_id = create_menu(fake_line)
    fake_line.expect_invalid()

    wrong_size = upload(fake_line, menu_id, png(2500, 1686))
    assert wrong_size.status_code == 400
    assert "2500x1686px but the rich menu size is 2500x843" in wrong_size.text

    jpeg = png(fmt="JPEG")
    too_big = upload(fake_line, menu_id, jpeg + b"\0" * 1_000_001, "image/jpeg")
    assert too_big.status_code == 400
    assert "the maximum is 1000000" in too_big.text

    assert upload(fake_line, menu_id, png(), "image/gif").status_code == 400
    assert upload(fake_line, menu_id, jpeg, "image/png").status_code == 400  # content-type lies
    assert upload(fake_line, menu_id, b"not an image").status_code == 400
    assert len(fake_line.invalid_calls()) == 5
    assert fake_line.rich_menu_image(menu_id) is None
    assert upload(fake_line, menu_id, jpeg, "image/jpeg").status_code == 200


def test_rich_menu_without_required_fields_or_bulk_link_over_500_is_rejected(fake_line):
    fake_line.expect_invalid()
    response = post(fake_line, "/v2/bot/richmenu", {"size": {"width": 2500, "height": 843}, "areas": []})
    assert response.status_code == 400
    assert {d["property"] for d in response.json()["details"]} == {"selected", "name", "chatBarText"}
    bulk = post(fake_line, "/v2/bot/richmenu/bulk/link", {"richMenuId": "richmenu-x", "userIds": [USER] * 501})
    assert bulk.status_code == 400
    alias = post(fake_line, "/v2/bot/richmenu/alias", {"richMenuAliasId": "Page 2", "richMenuId": "richmenu-x"})
    assert alias.json()["details"][0]["property"] == "richMenuAliasId"


# ------------------------------------------------------------------------------------------------------------
# The fixture itself


def test_invalid_request_fails_the_test_unless_expected(fake_line):
    push(fake_line, [{"type": "text"}])
    report = invalid_request_report(fake_line)
    assert "POST /v2/bot/message/push on A -> 400" in report
    assert "messages[0].text" in report
    with pytest.raises(pytest.fail.Exception):
        check_invalid_requests(fake_line)

    fake_line.expect_invalid()
    check_invalid_requests(fake_line)  # declared: the fixture teardown passes


def test_fixture_points_django_settings_at_the_fake(fake_line):
    from django.conf import settings

    assert settings.LINE_API_BASE_URL == fake_line.url
    assert settings.LINE_API_DATA_BASE_URL == fake_line.data_url
    assert fake_line.url != fake_line.data_url
    assert fake_line.calls() == []  # reset between tests


def test_responses_of_the_fake_match_the_spec(fake_line):
    specs = load_specs()
    fake_line.add_user(USER, "太郎")
    token = fake_line.issue_reply_token(USER)
    menu_id = create_menu(fake_line)
    upload(fake_line, menu_id, png())
    post(fake_line, "/v2/bot/richmenu/alias", {"richMenuAliasId": "main", "richMenuId": menu_id})
    post(fake_line, f"/v2/bot/user/{USER}/richmenu/{menu_id}")
    push(fake_line, [text()])
    post(fake_line, "/v2/bot/message/reply", {"replyToken": token, "messages": [text()]})
    for path in (
        f"/v2/bot/profile/{USER}",
        "/v2/bot/message/quota",
        "/v2/bot/message/quota/consumption",
        "/v2/bot/followers/ids",
        f"/v2/bot/richmenu/{menu_id}",
        "/v2/bot/richmenu/list",
        "/v2/bot/richmenu/alias/list",
        "/v2/bot/richmenu/alias/main",
        f"/v2/bot/user/{USER}/richmenu",
    ):
        assert get(fake_line, path).status_code == 200, path

    checked = 0
    for call in fake_line.calls(accepted=True):
        if call.response:
            op = specs.operation(call.operation_id)
            assert specs.response_errors(op, call.status, call.response) == [], call.describe()
            checked += 1
    assert checked >= 10


# ------------------------------------------------------------------------------------------------------------
# The real line-bot-sdk against the fake (both hosts)


def test_line_bot_sdk_requests_validate(fake_line):
    from linebot.v3.messaging import (
        ApiClient,
        ApiException,
        Configuration,
        ConfirmTemplate,
        DatetimePickerAction,
        MessageAction,
        MessagingApi,
        MessagingApiBlob,
        PostbackAction,
        PushMessageRequest,
        QuickReply,
        QuickReplyItem,
        ReplyMessageRequest,
        RichMenuArea,
        RichMenuBounds,
        RichMenuRequest,
        RichMenuSize,
        TemplateMessage,
        TextMessage,
    )

    fake_line.add_user(USER, "市民 太郎")
    fake_line.add_content("2002", b"image-bytes", "image/jpeg")
    reply_token = fake_line.issue_reply_token(USER)
    quick_reply = QuickReply(
        items=[
            QuickReplyItem(action=PostbackAction(label="はい", data="yes", display_text="はい")),
            QuickReplyItem(action=DatetimePickerAction(label="日時", data="when", mode="datetime")),
        ]
    )
    confirm = TemplateMessage(
        alt_text="確認",
        template=ConfirmTemplate(
            text="よろしいですか？",
            actions=[PostbackAction(label="はい", data="y"), MessageAction(label="いいえ", text="いいえ")],
        ),
    )
    retry_key = str(uuid.uuid4())

    with ApiClient(Configuration(host=fake_line.url, access_token=TOKEN)) as api_client:
        api = MessagingApi(api_client)
        pushed = api.push_message(
            PushMessageRequest(
                to=USER, messages=[TextMessage(text="選んでください", quick_reply=quick_reply), confirm]
            ),
            x_line_retry_key=retry_key,
        )
        assert len(pushed.sent_messages) == 2
        with pytest.raises(ApiException) as conflict:
            api.push_message(PushMessageRequest(to=USER, messages=[TextMessage(text="x")]), x_line_retry_key=retry_key)
        assert conflict.value.status == 409
        assert conflict.value.headers["x-line-accepted-request-id"]

        api.reply_message(ReplyMessageRequest(reply_token=reply_token, messages=[TextMessage(text="返信")]))
        assert api.get_profile(USER).display_name == "市民 太郎"
        assert api.get_message_quota().type == "none"
        menu_id = api.create_rich_menu(
            RichMenuRequest(
                size=RichMenuSize(width=2500, height=843),
                selected=False,
                name="sdk",
                chat_bar_text="メニュー",
                areas=[
                    RichMenuArea(
                        bounds=RichMenuBounds(x=0, y=0, width=2500, height=843), action=PostbackAction(data="m")
                    )
                ],
            )
        ).rich_menu_id

    with ApiClient(Configuration(host=fake_line.data_url, access_token=TOKEN)) as data_client:
        blob = MessagingApiBlob(data_client)
        assert bytes(blob.get_message_content("2002")) == b"image-bytes"
        blob.set_rich_menu_image(menu_id, body=png(), _headers={"Content-Type": "image/png"})

    assert fake_line.rich_menu_image(menu_id)[1] == "image/png"
    assert [m["type"] for m in fake_line.messages_sent_to(USER)] == ["text", "template", "text"]
    assert {c.host for c in fake_line.calls()} == {HOST_API, HOST_DATA}
    assert fake_line.invalid_calls() == []


def test_line_bot_sdk_blob_api_pointed_at_the_api_host_is_caught(fake_line):
    from linebot.v3.messaging import ApiClient, ApiException, Configuration, MessagingApiBlob

    fake_line.expect_invalid()
    with ApiClient(Configuration(host=fake_line.url, access_token=TOKEN)) as api_client:
        with pytest.raises(ApiException) as wrong_host:
            MessagingApiBlob(api_client).get_message_content("2002")
    assert wrong_host.value.status == 404


# ------------------------------------------------------------------------------------------------------------
# Webhooks


VALID_WEBHOOKS = sorted(p.name for p in WEBHOOK_FIXTURES.glob("*.json") if p.name != "unknown_event.json")


def load_webhook(name):
    return json.loads((WEBHOOK_FIXTURES / name).read_text(encoding="utf-8"))


def test_webhook_fixtures_cover_the_expected_events():
    assert VALID_WEBHOOKS == [
        "follow.json",
        "group_text_message.json",
        "image_message.json",
        "location_message.json",
        "postback_datetime.json",
        "sticker_message.json",
        "text_message.json",
        "unfollow.json",
    ]


@pytest.mark.parametrize("name", VALID_WEBHOOKS)
def test_webhook_fixture_validates_against_webhook_spec(name):
    assert validate_webhook_body(load_webhook(name)) == []


def test_unknown_event_type_is_invalid_for_the_spec_but_valid_as_base_event():
    # webhook.yml's Event discriminator has an explicit mapping and no fallback, so strictly the unknown
    # type is invalid; a tolerant handler checks it against the base Event only.
    payload = load_webhook("unknown_event.json")
    errors = validate_webhook_body(payload)
    assert len(errors) == 1 and errors[0].startswith("events[0].type: 'futureEventFromLine' is not a known Event type")
    assert validate_webhook_body(payload, allow_unknown_types=True) == []
    del payload["events"][0]["deliveryContext"]
    assert validate_webhook_body(payload, allow_unknown_types=True) == [
        "events[0].deliveryContext: 'deliveryContext' is a required property"
    ]


def test_broken_webhook_bodies_are_caught():
    text_event = load_webhook("text_message.json")
    del text_event["events"][0]["message"]["text"]
    text_event["destination"] = "bot"
    group = load_webhook("group_text_message.json")
    del group["events"][0]["source"]["groupId"]

    assert validate_webhook_body(text_event) == [
        "destination: 'bot' does not match '^U[0-9a-f]{32}$'",
        "destination: 'bot' is too short",
        "events[0].message.text: 'text' is a required property",
    ]
    assert validate_webhook_body(group) == ["events[0].source.groupId: 'groupId' is a required property"]
    assert validate_webhook_body({"destination": "U" + "0" * 32, "events": []}) == []


def test_sign_webhook_matches_the_line_bot_sdk_signature_check():
    from linebot.v3 import SignatureValidator

    body = (WEBHOOK_FIXTURES / "text_message.json").read_bytes()
    signature = sign_webhook(body, "channel-secret")
    assert SignatureValidator("channel-secret").validate(body.decode("utf-8"), signature)
    assert not SignatureValidator("other-secret").validate(body.decode("utf-8"), signature)


def test_specs_are_loaded_once_per_process():
    assert load_specs() is load_specs()
