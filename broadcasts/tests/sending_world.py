"""Helpers of the sending tests: residents known to the channel, broadcasts, runs, recorded wake-ups."""

from __future__ import annotations

import itertools

import pytest
from django.utils import timezone

from broadcasts.models import Broadcast, BroadcastRun
from messaging.models import LineUser
from residents.models import Resident, ResidentCategory

MULTICAST = "/v2/bot/message/multicast"
TEXT = [{"type": "text", "text": "防災訓練のお知らせ https://city.example.jp/bousai"}]
_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def line_token(settings):
    settings.LINE_CHANNEL_ACCESS_TOKEN = "test-channel-access-token"


@pytest.fixture(autouse=True)
def wakeups(monkeypatch) -> list[tuple]:
    """Task wake-ups are recorded, not queued: tests run the preparer and the sender themselves."""
    calls: list[tuple] = []
    monkeypatch.setattr("broadcasts.sending.wake_sender", lambda: calls.append(("send",)))
    monkeypatch.setattr("broadcasts.sending.wake_preparer", lambda run_id: calls.append(("prepare", run_id)))
    return calls


def residents(
    count: int, *, following: bool = True, categories=(), settings_made: bool = False, simulated: bool = False
) -> list[Resident]:
    """`count` residents who talk to the channel (one LineUser each); `settings_made`: chose `categories` only."""
    made = timezone.now() if settings_made or categories else None
    created = Resident.objects.bulk_create(
        Resident(line_user_id=f"U{next(_numbers):032x}", receive_settings_at=made, is_simulated=simulated)
        for _ in range(count)
    )
    LineUser.objects.bulk_create(
        LineUser(line_user_id=resident.line_user_id, resident=resident, is_following=following) for resident in created
    )
    ResidentCategory.objects.bulk_create(
        ResidentCategory(resident=resident, category=category) for resident in created for category in categories
    )
    return created


def ids(people) -> list[str]:
    return [resident.line_user_id for resident in people]


def run_for(department=None, **fields) -> BroadcastRun:
    fields.setdefault("status", Broadcast.Status.SENDING)
    broadcast = Broadcast.objects.create(title="防災訓練", department=department, messages=[], **fields)
    return BroadcastRun.objects.create(broadcast=broadcast, scheduled_for=timezone.now(), line_messages=TEXT)


def delivered_to(fake_line) -> list[str]:
    """Every recipient of every multicast LINE accepted, once per delivery."""
    return [user for call in fake_line.calls(MULTICAST, accepted=True) for user in call.recipients]
