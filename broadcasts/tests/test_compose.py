"""The composer's message kinds: checks staff can act on, and LINE messages LINE accepts."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from PIL import Image

from broadcasts import compose
from broadcasts.tests.composing import FLEX_BUBBLE, every_kind, jpeg_bytes, keyword, png_bytes, uri
from messaging.line.client import LineClient

USER = "U" + "a" * 32


@pytest.fixture(autouse=True)
def public_site(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.GOVTECH_BASE_URL = "https://city.example.jp"
    settings.LINE_CHANNEL_ACCESS_TOKEN = "test-channel-access-token"


def test_every_kind_renders_into_messages_the_fake_line_accepts(fake_line):
    image = compose.store_image(png_bytes())
    messages = every_kind(image)
    assert compose.messages_errors(messages[:5]) == []
    assert compose.message_errors(messages[5]) == []

    rendered = [compose.line_message(message) for message in messages]

    assert [m["type"] for m in rendered] == ["text", "image", "template", "template", "flex", "flex"]
    assert rendered[1]["originalContentUrl"].startswith("https://city.example.jp/broadcasts/images/")
    assert rendered[4]["contents"]["type"] == "carousel"
    with LineClient() as line:
        assert line.push(USER, rendered[:5], retry_key="0b4e7c1e-6f64-4a53-9d0e-1a2b3c4d5e6f").ok
        assert line.push(USER, rendered[5:], retry_key="1b4e7c1e-6f64-4a53-9d0e-1a2b3c4d5e6f").ok
    sent = fake_line.messages_sent_to(USER)
    assert [m["type"] for m in sent] == [m["type"] for m in rendered]
    assert sent[:4] == rendered[:4]  # the SDK adds LINE's defaults (e.g. "animated": false) to Flex images


def test_more_than_five_messages_are_refused():
    messages = [{"kind": "text", "text": f"{n}通目"} for n in range(6)]
    assert compose.messages_errors(messages) == ["メッセージは5個までです。"]
    with pytest.raises(compose.ComposeError):
        compose.line_messages(messages)


def test_text_longer_than_line_allows_is_refused_with_its_length():
    assert compose.message_errors({"kind": "text", "text": "あ" * 5000}) == []
    assert compose.message_errors({"kind": "text", "text": "あ" * 5001}) == ["本文は5000文字までです（いま5001文字）。"]
    assert compose.message_errors({"kind": "text", "text": "  "}) == ["本文を入力してください。"]


def test_buttons_take_one_to_four_actions_and_only_web_or_phone_links():
    five = {"kind": "buttons", "title": "", "text": "本文", "actions": [keyword()] * 5}
    assert compose.message_errors(five) == ["ボタンは1〜4個です。"]
    script = {"kind": "buttons", "title": "", "text": "本文", "actions": [uri(url="javascript:alert(1)")]}
    assert compose.message_errors(script) == ["ボタン1の URL は https:// で始めてください（電話は tel:）。"]
    long_label = {"kind": "buttons", "title": "", "text": "本文", "actions": [keyword(label="あ" * 21)]}
    assert compose.message_errors(long_label) == ["ボタン1の表示名は20文字までです（いま21文字）。"]


def test_buttons_text_limit_is_shorter_with_a_title():
    message = {"kind": "buttons", "title": "題", "text": "あ" * 61, "actions": [keyword()]}
    assert compose.message_errors(message) == ["本文は60文字までです（いま61文字）。"]
    assert compose.message_errors({**message, "title": ""}) == []


def test_confirm_needs_exactly_two_actions():
    message = {"kind": "confirm", "text": "参加しますか？", "actions": [keyword()]}
    assert compose.message_errors(message) == ["ボタンはちょうど2個です。"]


def test_cards_need_a_title_and_at_most_twelve_cards():
    card = {"image": "", "title": "", "text": "", "actions": [uri()]}
    assert compose.message_errors({"kind": "cards", "cards": [card]}) == ["カード1のタイトルを入力してください。"]
    many = {"kind": "cards", "cards": [{**card, "title": "題"}] * 13}
    assert compose.message_errors(many) == ["カードは1〜12枚です。"]


def test_a_missing_image_is_reported_instead_of_sent():
    assert compose.message_errors({"kind": "image", "image": "x" * 32 + ".png"}) == [
        "画像が見つかりません。もう一度選んでください。"
    ]
    assert compose.message_errors({"kind": "image", "image": "../../etc/passwd"}) == [
        "画像が見つかりません。もう一度選んでください。"
    ]


def test_invalid_flex_gives_errors_with_the_json_path():
    button_without_action = {"type": "button", "style": "primary"}
    broken = {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [button_without_action]}}
    errors = compose.message_errors({"kind": "flex", "alt_text": "お知らせ", "contents": broken})
    assert errors == ["contents.body.contents[0].action: 'action' is a required property"]


def test_flex_json_that_is_not_json_says_where():
    with pytest.raises(compose.ComposeError) as caught:
        compose.parse_flex_json('{"type": "bubble",\n  "body": }')
    assert caught.value.errors[0].startswith("JSON として読めません（2行目 11文字目）")


def test_a_whole_flex_message_pasted_gives_its_contents():
    assert compose.parse_flex_json('{"type": "flex", "altText": "x", "contents": {"type": "bubble"}}') == {
        "type": "bubble"
    }


def test_flex_postback_buttons_are_refused():
    bubble = {
        **FLEX_BUBBLE,
        "footer": {
            "type": "box",
            "layout": "vertical",
            "contents": [{"type": "button", "action": {"type": "postback", "label": "押す", "data": "x=1"}}],
        },
    }
    errors = compose.message_errors({"kind": "flex", "alt_text": "お知らせ", "contents": bubble})
    assert errors == [
        "contents.footer.contents[0].action: この種類のボタン（postback）は一斉配信では使えません。"
        "URL かメッセージのボタンにしてください。"
    ]


def test_uploaded_image_is_reencoded_with_a_small_preview_and_served_publicly():
    name = compose.store_image(jpeg_bytes(size=(1200, 900)))
    message = compose.line_message({"kind": "image", "image": name})

    client = Client()  # LINE fetches without logging in
    original = client.get(message["originalContentUrl"].removeprefix("https://city.example.jp"))
    preview = client.get(message["previewImageUrl"].removeprefix("https://city.example.jp"))

    assert original.status_code == 200 and original["Content-Type"] == "image/jpeg"
    assert preview.status_code == 200 and preview["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(b"".join(preview.streaming_content))) as small:
        assert max(small.size) <= 240
    assert Client().get("/broadcasts/images/" + "z" * 32 + ".jpg").status_code == 404


def test_files_that_are_not_jpeg_or_png_are_refused():
    with pytest.raises(compose.ComposeError) as caught:
        compose.store_image(b"GIF89a not really")
    assert caught.value.errors == ["JPEG または PNG の画像を選んでください。"]
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, "GIF")
    with pytest.raises(compose.ComposeError):
        compose.store_image(out.getvalue())


def test_a_damaged_image_is_refused_with_a_message_not_an_error_page():
    whole = jpeg_bytes()
    with pytest.raises(compose.ComposeError) as refused:
        compose.store_image(whole[: len(whole) // 2])  # a truncated JPEG still sniffs as JPEG
    assert "画像を読み込めませんでした" in refused.value.errors[0]
