"""Per-segment rich menus: each follower linked to the menu they should see, only differences sent."""

from __future__ import annotations

from datetime import datetime, timedelta
from pydoc import locate
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django_q.models import Schedule

from broadcasts.richmenu import deploy, linking
from broadcasts.richmenu.models import RichMenu, RichMenuDeployment, RichMenuLink
from broadcasts.tests.richmenu_fixtures import (
    category_join,
    category_leave,
    followers_create,
    line_user_id,
    menu_create,
    richmenu_settings,  # noqa: F401 (fixture)
    segment_of,
)
from messaging import services as messaging_services
from messaging.tests.test_webhook import follow_event, line_channel, wakeups  # noqa: F401 (autouse fixtures)
from residents.models import ProfileChange

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("richmenu_settings")]

NOW = datetime(2031, 4, 1, 4, 0, tzinfo=ZoneInfo("Asia/Tokyo"))


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def queued(monkeypatch) -> list[tuple]:
    """Tasks the rich menu services enqueue are recorded; tests run them themselves."""
    calls: list[tuple] = []
    monkeypatch.setattr(linking, "async_task", lambda func, *args: calls.append((func, *args)))
    return calls


def live(menu: RichMenu) -> RichMenu:
    deployment = deploy.rich_menu_deploy(menu_id=menu.pk, actor=None, now=NOW)
    assert deployment.status == RichMenuDeployment.Status.SUCCEEDED, deployment.error
    menu.refresh_from_db()
    return menu


def link_calls(fake_line, since: int = 0) -> list[tuple[str, int]]:
    """(operation, number of users) of the bulk link/unlink calls LINE accepted, from call `since` on."""
    return [
        (call.operation_id, len(call.body["userIds"]))
        for call in fake_line.calls()[since:]
        if call.accepted and call.operation_id in ("linkRichMenuIdToUsers", "unlinkRichMenuIdFromUsers")
    ]


def test_1001_residents_of_a_segment_are_linked_in_three_calls_and_only_differences_go_next_time(fake_line, queued):
    members = followers_create(1001)
    outsider = followers_create(1, start=5000)[0]
    menu = live(menu_create(role=RichMenu.Role.SEGMENT, segment=segment_of(members, "kosodate")))

    outcome = linking.rich_menu_links_reconcile(now=NOW)

    assert (outcome.linked, outcome.calls, outcome.failed) == (1001, 3, 0)
    assert link_calls(fake_line) == [("linkRichMenuIdToUsers", 500)] * 2 + [("linkRichMenuIdToUsers", 1)]
    assert RichMenuLink.objects.filter(menu=menu, line_rich_menu_id=menu.line_rich_menu_id).count() == 1001
    assert fake_line.rich_menu_of(members[-1].line_user_id) == menu.line_rich_menu_id
    assert fake_line.rich_menu_of(outsider.line_user_id) is None

    assert linking.rich_menu_links_reconcile(now=NOW).calls == 0  # nothing changed, nothing sent

    category_leave(members[0], "kosodate")
    category_join(outsider, "kosodate")
    start = len(fake_line.calls())
    linking.rich_menu_links_reconcile(now=NOW)
    assert sorted(link_calls(fake_line, start)) == [("linkRichMenuIdToUsers", 1), ("unlinkRichMenuIdFromUsers", 1)]
    assert fake_line.last_call(operation_id="unlinkRichMenuIdFromUsers").body["userIds"] == [members[0].line_user_id]
    assert not RichMenuLink.objects.filter(line_user=members[0]).exists()
    assert RichMenuLink.objects.get(line_user=outsider).menu == menu


def test_the_lowest_priority_number_wins_and_residents_outside_every_segment_get_the_default(fake_line):
    both, only_second, nobody = followers_create(3)
    second_segment = segment_of([both, only_second], "bousai")
    first = live(menu_create(role=RichMenu.Role.SEGMENT, segment=segment_of([both], "kosodate"), priority=1))
    second = live(menu_create(role=RichMenu.Role.SEGMENT, segment=second_segment, priority=5))

    linking.rich_menu_links_reconcile(now=NOW)

    assert fake_line.rich_menu_of(both.line_user_id) == first.line_rich_menu_id
    assert fake_line.rich_menu_of(only_second.line_user_id) == second.line_rich_menu_id
    assert fake_line.rich_menu_of(nobody.line_user_id) is None
    assert not RichMenuLink.objects.filter(line_user=nobody).exists()


def test_a_chunk_line_refuses_is_not_recorded_and_is_sent_again_next_run(fake_line):
    members = followers_create(1001)
    menu = live(menu_create(role=RichMenu.Role.SEGMENT, segment=segment_of(members, "kosodate")))
    fake_line.fail_next(500, path_prefix="/v2/bot/richmenu/bulk/link")

    outcome = linking.rich_menu_links_reconcile(now=NOW)

    assert (outcome.linked, outcome.failed) == (501, 500)
    assert "LINE の応答 500" in outcome.errors[0]
    assert RichMenuLink.objects.count() == 501
    retried = linking.rich_menu_links_reconcile(now=NOW)
    assert (retried.linked, retried.calls) == (500, 1)
    assert RichMenuLink.objects.filter(line_rich_menu_id=menu.line_rich_menu_id).count() == 1001


def test_a_rate_limited_run_stops_and_leaves_the_rest_for_the_next_run(fake_line):
    members = followers_create(1001)
    live(menu_create(role=RichMenu.Role.SEGMENT, segment=segment_of(members, "kosodate")))
    fake_line.fail_next(429, path_prefix="/v2/bot/richmenu/bulk/link")

    outcome = linking.rich_menu_links_reconcile(now=NOW)

    assert (outcome.calls, outcome.linked, outcome.failed) == (1, 0, 1001)
    assert RichMenuLink.objects.count() == 0


def test_a_follow_queues_relinking_of_that_resident_after_the_commit(queued, django_capture_on_commit_callbacks):
    user = line_user_id(77)
    messaging_services.inbox_store(events=[follow_event(user)])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        messaging_services.inbox_process_user(line_user_id=user)
    assert (linking.LINK_RESIDENT_TASK, user) not in queued
    for callback in callbacks:
        callback()
    assert (linking.LINK_RESIDENT_TASK, user) in queued
    assert callable(locate(linking.LINK_RESIDENT_TASK))


def test_an_attribute_or_category_change_queues_relinking_after_the_commit(queued, django_capture_on_commit_callbacks):
    user = followers_create(1)[0]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ProfileChange.objects.create(
            resident_id=user.resident_id, source=ProfileChange.Source.STAFF, value=["kosodate"], changed_at=NOW
        )
    assert queued == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert queued == [(linking.LINK_RESIDENT_TASK, user.line_user_id)]


def test_relinking_one_resident_sends_only_their_change(fake_line):
    members = followers_create(3)
    menu = live(menu_create(role=RichMenu.Role.SEGMENT, segment=segment_of(members[:2], "kosodate")))
    linking.rich_menu_links_reconcile(now=NOW)
    category_join(members[2], "kosodate")
    start = len(fake_line.calls())

    task = locate("broadcasts.richmenu.tasks.rich_menu_link_resident_task")
    assert task(members[2].line_user_id) == 1

    assert link_calls(fake_line, start) == [("linkRichMenuIdToUsers", 1)]
    assert fake_line.rich_menu_of(members[2].line_user_id) == menu.line_rich_menu_id
    assert task(members[2].line_user_id) == 0


def test_the_nightly_reconciler_is_scheduled():
    schedule = Schedule.objects.get(func="broadcasts.richmenu.tasks.rich_menu_links_reconcile_task")
    assert (schedule.schedule_type, schedule.repeats) == (Schedule.DAILY, -1)
    assert callable(locate(schedule.func))


def test_over_our_own_rate_limit_the_run_stops_before_calling_line_and_hands_over(
    fake_line, settings, queued, django_capture_on_commit_callbacks
):
    members = followers_create(1001)
    live(menu_create(role=RichMenu.Role.SEGMENT, segment=segment_of(members, "kosodate")))
    settings.LINE_RATE_LIMITS = {**settings.LINE_RATE_LIMITS, "rich_menu_bulk": 1}
    start = len(fake_line.calls())
    # A second of its own: with Redis the limiter's counters are shared by every test of the run.
    moment = NOW + timedelta(days=1, hours=7, seconds=13)

    with time_machine.travel(moment, tick=False), django_capture_on_commit_callbacks(execute=True):
        outcome = linking.rich_menu_links_reconcile(now=moment)

    assert outcome.out_of_time and outcome.calls == 1  # one call a second: the second waits
    assert link_calls(fake_line, start) == [("linkRichMenuIdToUsers", 500)]
    assert (linking.RECONCILE_TASK,) in queued  # the rest goes on in a follow-up task
