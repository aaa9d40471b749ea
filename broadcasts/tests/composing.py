"""Helpers of the composing and scheduling tests: images, staff, a valid message of every kind."""

from __future__ import annotations

import io

from django.test import Client
from PIL import Image

from procedures.tests.factories import StaffUserFactory
from staff.models import Role, StaffMembership


def png_bytes(size=(800, 600), color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def jpeg_bytes(size=(1200, 900)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (20, 120, 200)).save(out, "JPEG")
    return out.getvalue()


def member(username: str, department, role=Role.DEPARTMENT_STAFF):
    user = StaffUserFactory(username=username, is_superuser=False)
    StaffMembership.objects.create(user=user, role=role, department=department)
    client = Client()
    client.force_login(user)
    return user, client


def uri(label="詳しく", url="https://city.example.jp/info"):
    return {"type": "uri", "label": label, "uri": url}


def keyword(label="申し込む", text="粗大ごみ"):
    return {"type": "message", "label": label, "text": text}


FLEX_BUBBLE = {
    "type": "bubble",
    "body": {
        "type": "box",
        "layout": "vertical",
        "contents": [
            {"type": "text", "text": "防災訓練のお知らせ", "weight": "bold", "size": "xl"},
            {"type": "text", "text": "9月1日 10時から", "wrap": True},
        ],
    },
    "footer": {
        "type": "box",
        "layout": "vertical",
        "contents": [
            {"type": "button", "action": {"type": "uri", "label": "詳しく", "uri": "https://city.example.jp"}}
        ],
    },
}


def every_kind(image_name: str) -> list[dict]:
    """One valid composer message of each kind (six: more than one broadcast may hold)."""
    return [
        {"kind": "text", "text": "市からのお知らせです。\n今週末は資源ごみの日です。"},
        {"kind": "image", "image": image_name},
        {"kind": "buttons", "title": "子育て相談", "text": "予約はこちらから", "actions": [uri(), keyword()]},
        {
            "kind": "confirm",
            "text": "防災メールを受け取りますか？",
            "actions": [keyword("はい", "はい"), keyword("いいえ", "いいえ")],
        },
        {
            "kind": "cards",
            "alt_text": "今月のイベント",
            "cards": [
                {"image": image_name, "title": "夏祭り", "text": "8月10日", "actions": [uri(), keyword()]},
                {"image": "", "title": "花火大会", "text": "", "actions": [uri("地図", "https://city.example.jp/map")]},
            ],
        },
        {"kind": "flex", "alt_text": "防災訓練のお知らせ", "contents": FLEX_BUBBLE},
    ]
