"""The residents' LINE profile: fetched after a follow and when stale, against the fake LINE API."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pydoc import locate
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django_q.models import Schedule

from messaging import services as messaging_services
from messaging.models import LineUser
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    follow_event,
    line_channel,
    unfollow_event,
    user_id,
    wakeups,
)
from residents import line_services
from residents.models import Resident

pytestmark = pytest.mark.django_db

JST = ZoneInfo("Asia/Tokyo")
NOW = datetime(2031, 5, 12, 10, 0, tzinfo=JST)
PICTURE = "https://profile.line-scdn.net/0h-test-picture"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def resident(n: int, **fields) -> Resident:
    return Resident.objects.create(line_user_id=user_id(n), **fields)


def profile_calls(fake_line) -> list[str]:
    return [call.path for call in fake_line.calls("/v2/bot/profile/*")]


def test_a_follow_queues_a_profile_refresh_after_the_commit(wakeups, django_capture_on_commit_callbacks):  # noqa: F811
    user = user_id(1)
    messaging_services.inbox_store(events=[follow_event(user)])
    wakeups.clear()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        messaging_services.inbox_process_user(line_user_id=user)
    assert wakeups == []  # nothing is queued before the follow is committed
    for callback in callbacks:
        callback()
    created = Resident.objects.get(line_user_id=user)
    assert ("residents.tasks.refresh_resident_profile", created.pk) in wakeups
    assert callable(locate("residents.tasks.refresh_resident_profile"))


def test_an_unfollow_queues_no_profile_refresh(wakeups, django_capture_on_commit_callbacks):  # noqa: F811
    user = user_id(2)
    messaging_services.inbox_store(events=[unfollow_event(user)])
    with django_capture_on_commit_callbacks(execute=True):
        messaging_services.inbox_process_user(line_user_id=user)
    assert not [call for call in wakeups if call[0] == "residents.tasks.refresh_resident_profile"]


def test_the_queued_task_stores_the_display_name_and_picture(fake_line, clock, caplog):
    someone = resident(3)
    fake_line.add_user(someone.line_user_id, "山田花子", picture_url=PICTURE)
    task = locate("residents.tasks.refresh_resident_profile")
    with caplog.at_level(logging.DEBUG):
        assert task(someone.pk) == line_services.REFRESHED
    someone.refresh_from_db()
    assert (someone.display_name, someone.picture_url, someone.profile_refreshed_at) == ("山田花子", PICTURE, NOW)
    assert profile_calls(fake_line) == [f"/v2/bot/profile/{someone.line_user_id}"]
    assert "山田花子" not in caplog.text and PICTURE not in caplog.text  # personal data never logged


def test_a_profile_without_picture_clears_the_old_one(fake_line, clock):
    someone = resident(4, display_name="古い名前", picture_url=PICTURE)
    fake_line.add_user(someone.line_user_id, "新しい名前")
    assert line_services.resident_profile_refresh(resident_id=someone.pk) == line_services.REFRESHED
    someone.refresh_from_db()
    assert (someone.display_name, someone.picture_url) == ("新しい名前", "")


def test_a_picture_url_that_is_not_https_is_not_kept(fake_line, clock):
    someone = resident(5)
    fake_line.add_user(someone.line_user_id, "名前", picture_url="http://example.com/picture.png")
    line_services.resident_profile_refresh(resident_id=someone.pk)
    someone.refresh_from_db()
    assert someone.picture_url == ""


def test_not_a_friend_404_keeps_what_was_known_and_records_the_date(fake_line, clock):
    someone = resident(6, display_name="前の名前")
    assert line_services.resident_profile_refresh(resident_id=someone.pk) == line_services.NOT_FOUND
    someone.refresh_from_db()
    assert (someone.display_name, someone.profile_refreshed_at) == ("前の名前", NOW)


def test_a_500_changes_nothing_and_the_periodic_refresh_tries_again(fake_line, clock):
    someone = resident(7)
    fake_line.add_user(someone.line_user_id, "佐藤")
    fake_line.fail_next(500, path_prefix="/v2/bot/profile/")
    assert line_services.resident_profile_refresh(resident_id=someone.pk) == line_services.FAILED
    someone.refresh_from_db()
    assert (someone.display_name, someone.profile_refreshed_at) == ("", None)
    clock.shift(timedelta(minutes=10))
    assert locate("residents.tasks.refresh_stale_profiles")() == {line_services.REFRESHED: 1}
    someone.refresh_from_db()
    assert someone.display_name == "佐藤"


def test_simulated_residents_and_ids_that_are_not_line_ids_are_skipped(fake_line, clock):
    simulated = resident(8, is_simulated=True)
    fake_line.add_user(simulated.line_user_id, "シミュ")
    not_line = Resident.objects.create(line_user_id="sim-0123")
    for someone in (simulated, not_line):
        assert line_services.resident_profile_refresh(resident_id=someone.pk) == line_services.SKIPPED
    assert line_services.resident_profiles_refresh_stale() == {}
    assert profile_calls(fake_line) == []
    assert Resident.objects.get(pk=simulated.pk).display_name == ""


def test_the_periodic_refresh_takes_the_never_fetched_and_the_stale_but_not_fresh_or_blocked(fake_line, clock):
    never, stale, fresh, blocked = (resident(n) for n in (10, 11, 12, 13))
    Resident.objects.filter(pk=stale.pk).update(profile_refreshed_at=NOW - timedelta(days=8))
    Resident.objects.filter(pk=fresh.pk).update(profile_refreshed_at=NOW - timedelta(days=6))
    LineUser.objects.create(line_user_id=blocked.line_user_id, resident=blocked, is_following=False)
    for someone in (never, stale, fresh, blocked):
        fake_line.add_user(someone.line_user_id, f"名前{someone.pk}")
    assert line_services.resident_profiles_refresh_stale() == {line_services.REFRESHED: 2}
    assert profile_calls(fake_line) == [
        f"/v2/bot/profile/{never.line_user_id}",
        f"/v2/bot/profile/{stale.line_user_id}",
    ]


def test_the_periodic_refresh_stops_at_the_rate_limit_and_the_rest_waits_for_the_next_run(fake_line, clock, settings):
    settings.LINE_RATE_LIMITS = {**settings.LINE_RATE_LIMITS, "profile": 2}
    residents = [resident(n) for n in (20, 21, 22, 23)]
    for someone in residents:
        fake_line.add_user(someone.line_user_id, "名前")
    assert line_services.resident_profiles_refresh_stale() == {line_services.REFRESHED: 2, line_services.DEFERRED: 1}
    assert len(profile_calls(fake_line)) == 2
    clock.shift(timedelta(seconds=1))  # the next window
    assert line_services.resident_profiles_refresh_stale() == {line_services.REFRESHED: 2}
    assert Resident.objects.filter(profile_refreshed_at__isnull=True).count() == 0


def test_the_periodic_refresh_stops_at_the_first_failure(fake_line, clock):
    residents = [resident(n) for n in (30, 31, 32)]
    for someone in residents:
        fake_line.add_user(someone.line_user_id, "名前")
    with fake_line.outage(503, path_prefix="/v2/bot/profile/"):
        assert line_services.resident_profiles_refresh_stale() == {line_services.FAILED: 1}
    assert len(profile_calls(fake_line)) == 1


def test_the_periodic_refresh_is_scheduled():
    schedule = Schedule.objects.get(func="residents.tasks.refresh_stale_profiles")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 10, -1)
