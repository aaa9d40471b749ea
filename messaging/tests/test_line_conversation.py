"""End to end over the fake LINE: a resident applies for bulky garbage collection by tapping buttons.

Every step goes the real way: a signed webhook, the inbox, the worker, the engine, the outbox,
the sender, and the fake LINE validating each request against LINE's OpenAPI specs.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from PIL import Image

from messaging.models import DEFAULT_GREETING, InboxEvent, OutboxMessage
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    LinePhone,
    actions_in,
    line_channel,
    postback_event,
    user_id,
    wakeups,
)
from procedures.demo import load_demo
from procedures.models import Application
from procedures.services import procedure_import, version_publish
from procedures.tests.spec_data import template_bytes

pytestmark = pytest.mark.django_db

NAME, ADDRESS, PHONE = "佐賀 花子", "小城市牛津町牛津456番地7", "0952-73-1234"


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 90, 160)).save(buffer, format="JPEG")
    return buffer.getvalue()


def quick_labels(messages: list[dict]) -> list[str]:
    return [item["action"]["label"] for item in messages[-1].get("quickReply", {}).get("items", [])]


def test_resident_completes_bulky_garbage_over_line(client, fake_line, settings, tmp_path, caplog):
    settings.MEDIA_ROOT = tmp_path
    caplog.set_level(logging.DEBUG)
    load_demo()
    phone = LinePhone(client, fake_line, user_id(2026))

    assert phone.follow() == [{"type": "text", "text": DEFAULT_GREETING}]

    received = phone.say("粗大ごみ")
    assert "「粗大ごみ収集申込」の手続きを始めます。" in phone.texts()
    assert "小城市内にお住まいですか？" in received[-1]["text"]
    assert quick_labels(received) == ["はい", "いいえ", "やめる"]

    received = phone.tap("はい")
    # 16 items, paged by 11: the first page does not fit in 13 quick replies, so it is a card.
    assert received[-1]["type"] == "flex"
    assert "タンス（1,200円）" in [a["label"] for a in actions_in(received[-1])]
    assert {"選択完了", "次へ", "やめる"} <= set(quick_labels(received))

    phone.tap("タンス（1,200円）")
    assert "選択中：タンス（1,200円）" in phone.texts()
    phone.tap("自転車（400円）")
    assert "選択中：タンス（1,200円）、自転車（400円）" in phone.texts()
    received = phone.tap("次へ")
    assert "（2／2ページ目）" in phone.texts()
    assert "スキー板（400円）" in quick_labels(received)  # the last page fits in quick replies
    phone.tap("前へ")
    assert "（1／2ページ目）" in phone.texts()

    phone.tap("選択完了")
    assert "自転車は、1点目のほかに何点ありますか？" in phone.texts()
    received = phone.say("1")
    assert "収集を希望する日を選んでください。" in phone.texts()
    picker = phone.action("日付を選ぶ")
    assert picker["type"] == "datetimepicker" and picker["mode"] == "date"
    assert picker["min"] <= picker["initial"] <= picker["max"]

    phone.tap("日付を選ぶ")
    assert "粗大ごみを出す場所を入力してください。" in phone.texts()
    phone.say("玄関前")
    phone.say(NAME)
    phone.say(ADDRESS)
    received = phone.say(PHONE)
    assert "粗大ごみの写真があれば送ってください（任意）。" in phone.texts()
    assert {"カメラで撮る", "写真を選ぶ", "スキップ"} <= set(quick_labels(received))

    received = phone.send_image(jpeg())
    assert "出す場所の位置情報を送ってください（任意）。" in phone.texts()
    assert "位置情報を送る" in quick_labels(received)
    received = phone.send_location(latitude=33.2745, longitude=130.2166, address=ADDRESS, title="自宅")

    # The confirmation: a Flex card, a 変更 button per answer, the fee, sensitive answers masked.
    summary = received[-1]
    assert summary["type"] == "flex" and summary["altText"] == "「粗大ごみ収集申込」の入力内容の確認"
    card = json.dumps(summary, ensure_ascii=False)
    assert "手数料合計：2000円" in card and "玄関前" in card
    assert NAME not in card and ADDRESS not in card and PHONE not in card
    assert sum(1 for a in actions_in(summary) if a["label"] == "変更") >= 10

    # Change the place from the card, then come back to the confirmation.
    change = next(a for a in actions_in(summary) if a.get("displayText", "").startswith("「粗大ごみを出す場所"))
    phone.send(postback_event(phone.user, change["data"], reply_token=phone.token()))
    assert "粗大ごみを出す場所を入力してください。" in phone.texts()
    received = phone.say("アパート1階の駐輪場の横")
    assert received[-1]["type"] == "flex" and "アパート1階の駐輪場の横" in json.dumps(received[-1], ensure_ascii=False)

    submit = phone.action("この内容で申し込む")
    received = phone.tap("この内容で申し込む")
    application = Application.objects.get()
    assert application.receipt_number.startswith("SODAI-") and not application.is_test
    assert application.resident.line_user_id == phone.user
    assert application.answers["items"] == ["tansu", "bicycle"]
    assert application.answers["place"] == "アパート1階の駐輪場の横"
    assert application.answers["photo"]["content_type"] == "image/jpeg"
    assert (tmp_path / application.answers["photo"]["ref"]).read_bytes() == jpeg()
    assert application.computed == {"fee_total": 2000}
    last_text = "\n".join(m["text"] for m in received if m["type"] == "text")
    assert f"受付番号：{application.receipt_number}" in last_text
    assert fake_line.messages_sent_to(phone.user)[-1] == received[-1]

    # Tapping the submit button again does not apply twice.
    phone.send(postback_event(phone.user, submit["data"], reply_token=phone.token()))
    assert "この申し込みはすでに受け付けています。" in phone.texts()
    assert Application.objects.count() == 1

    # Every request was valid for LINE, every answer went out by reply, and nothing is pending.
    assert fake_line.invalid_calls() == []
    assert set(OutboxMessage.objects.values_list("status", flat=True)) == {"sent"}
    assert set(OutboxMessage.objects.values_list("sent_via", flat=True)) == {"reply"}
    assert set(InboxEvent.objects.values_list("status", flat=True)) == {"done"}

    # What the resident typed is in the application only: not in the inbox, the outbox, LINE or the logs.
    stored = json.dumps(
        [
            list(InboxEvent.objects.values_list("payload", flat=True)),
            list(OutboxMessage.objects.values_list("payload", flat=True)),
        ],
        ensure_ascii=False,
    )
    sent = json.dumps(fake_line.messages_sent_to(phone.user), ensure_ascii=False)
    for secret in (NAME, ADDRESS, PHONE):
        assert secret not in stored and secret not in sent and secret not in caplog.text


def test_stale_and_repeated_submit_taps_create_one_application(client, fake_line):
    data = {
        "name": "防災メールの登録",
        "keywords": ["防災"],
        "receipt_prefix": "BOSAI",
        "steps": [
            {"key": "agree", "kind": "yes_no", "label": "防災メールを受け取りますか？"},
            {"key": "confirm", "kind": "confirmation", "label": "確認してください"},
            {"key": "done", "kind": "completion", "label": "登録しました"},
        ],
    }
    version_publish(version=procedure_import(raw=template_bytes(data), max_bytes=1_000_000).draft)
    phone = LinePhone(client, fake_line, user_id(2027))
    phone.say("防災")
    phone.tap("はい")
    submit = phone.action("この内容で申し込む")
    phone.tap("この内容で申し込む")
    assert "受付番号：BOSAI-" in phone.texts()
    # The same button again (a double tap, or an old card): answered, nothing created.
    phone.send(postback_event(phone.user, submit["data"], reply_token=phone.token()))
    assert "この申し込みはすでに受け付けています。" in phone.texts()
    # An old button of the finished conversation: refused politely.
    phone.send(postback_event(phone.user, phone.action_in_history("はい")["data"], reply_token=phone.token()))
    assert "このボタンは現在使えません。" in phone.texts()
    assert Application.objects.count() == 1
    assert fake_line.invalid_calls() == []
