"""Disaster mode: everyone to the disaster menu and back, with progress, against the fake LINE API."""

from __future__ import annotations

import json
from datetime import datetime
from pydoc import locate
from zoneinfo import ZoneInfo

import pytest
import time_machine

from audit import actions as audit_actions
from audit.models import AuditEntry
from broadcasts.richmenu import deploy, disaster, linking
from broadcasts.richmenu.models import DisasterModeSwitch, RichMenu, RichMenuDeployment, RichMenuLink
from broadcasts.tests.richmenu_fixtures import (
    followers_create,
    menu_create,
    richmenu_settings,  # noqa: F401 (fixture)
    segment_of,
)
from procedures.tests.factories import StaffUserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("richmenu_settings")]

NOW = datetime(2031, 9, 1, 11, 58, tzinfo=ZoneInfo("Asia/Tokyo"))
ON, OFF = DisasterModeSwitch.Direction.ON, DisasterModeSwitch.Direction.OFF


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def queued(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    monkeypatch.setattr(linking, "async_task", lambda func, *args: calls.append((func, *args)))
    monkeypatch.setattr(disaster, "async_task", lambda func, *args: calls.append((func, *args)))
    return calls


@pytest.fixture
def city(fake_line):
    """A default menu, a segment menu linked to two of five followers, and a deployed disaster menu."""
    followers = followers_create(5)
    menus = {
        "default": menu_create(name="標準"),
        "segment": menu_create(role=RichMenu.Role.SEGMENT, segment=segment_of(followers[:2], "kosodate")),
        "disaster": menu_create(role=RichMenu.Role.DISASTER, name="災害時"),
    }
    for menu in menus.values():
        deployment = deploy.rich_menu_deploy(menu_id=menu.pk, actor=None, now=NOW)
        assert deployment.status == RichMenuDeployment.Status.SUCCEEDED, deployment.error
        menu.refresh_from_db()
    linking.rich_menu_links_reconcile(now=NOW)
    return followers, menus


@pytest.fixture
def switched(queued, django_capture_on_commit_callbacks):
    """Switch, check the work was queued after the commit (never run inline), then run the queued task."""

    def switch_and_run(direction: str, menu: RichMenu, actor=None) -> DisasterModeSwitch:
        queued.clear()
        with django_capture_on_commit_callbacks(execute=True):
            switch = disaster.disaster_mode_switch(direction=direction, menu_id=menu.pk, actor=actor, now=NOW)
            assert queued == []
        assert queued == [(disaster.SWITCH_TASK, switch.pk)]
        locate(disaster.SWITCH_TASK)(switch.pk)
        switch.refresh_from_db()
        return switch

    return switch_and_run


def test_disaster_mode_on_shows_everyone_the_disaster_menu_with_progress_and_an_audit_entry(fake_line, city, switched):
    followers, menus = city
    staff = StaffUserFactory()
    disaster_id = menus["disaster"].line_rich_menu_id

    switch = switched(ON, menus["disaster"], actor=staff)

    assert switch.status == DisasterModeSwitch.Status.DONE
    assert fake_line.default_rich_menu_id == disaster_id
    assert {fake_line.rich_menu_of(u.line_user_id) for u in followers} == {disaster_id}
    assert RichMenuLink.objects.filter(menu=menus["disaster"]).count() == 5
    progress = disaster.disaster_mode_progress(switch)
    assert (progress["residents_done"], progress["residents_total"], progress["percent"]) == (5, 5, 100)
    assert progress["finished"] and progress["status_label"] == "完了"
    json.dumps(progress)  # what the admin's progress endpoint returns
    entry = AuditEntry.objects.get(action=audit_actions.RICH_MENU_DISASTER_MODE)
    assert entry.actor == staff and entry.details == {"switch_id": switch.pk, "direction": "on"}
    assert linking.disaster_mode_menu() == menus["disaster"]


def test_disaster_mode_off_restores_the_default_and_the_segment_menus(fake_line, city, switched):
    followers, menus = city
    switched(ON, menus["disaster"])

    switch = switched(OFF, menus["disaster"])

    assert switch.status == DisasterModeSwitch.Status.DONE
    assert fake_line.default_rich_menu_id == menus["default"].line_rich_menu_id
    assert [fake_line.rich_menu_of(u.line_user_id) for u in followers] == [menus["segment"].line_rich_menu_id] * 2 + [
        None
    ] * 3
    assert disaster.disaster_mode_progress(switch)["percent"] == 100
    assert linking.disaster_mode_menu() is None


def test_a_switch_that_failed_half_way_sends_only_the_rest_when_run_again(fake_line, city, switched):
    followers, menus = city
    more = followers_create(600, start=100)
    fake_line.fail_next(500, path_prefix="/v2/bot/richmenu/bulk/link", body={"message": "Internal error"})

    failed = switched(ON, menus["disaster"])

    assert failed.status == DisasterModeSwitch.Status.FAILED
    assert "Internal error" in failed.error and "もう一度実行" in failed.error
    assert 0 < failed.residents_done < failed.residents_total == 605
    start = len(fake_line.calls())
    retried = switched(ON, menus["disaster"])
    assert retried.status == DisasterModeSwitch.Status.DONE and retried.pk != failed.pk
    sent = sum(
        len(call.body["userIds"]) for call in fake_line.calls()[start:] if call.operation_id == "linkRichMenuIdToUsers"
    )
    assert sent == 605 - failed.residents_done
    assert {fake_line.rich_menu_of(u.line_user_id) for u in followers + more} == {menus["disaster"].line_rich_menu_id}


def test_asking_again_while_a_switch_runs_returns_it_and_a_finished_task_does_nothing_more(fake_line, city):
    _followers, menus = city
    first = disaster.disaster_mode_switch(direction=ON, menu_id=menus["disaster"].pk, actor=None, now=NOW)
    again = disaster.disaster_mode_switch(direction=ON, menu_id=menus["disaster"].pk, actor=None, now=NOW)
    assert again.pk == first.pk
    with pytest.raises(disaster.DisasterModeProblem):
        disaster.disaster_mode_switch(direction=OFF, menu_id=menus["disaster"].pk, actor=None, now=NOW)

    task = locate(disaster.SWITCH_TASK)
    assert task(first.pk) == DisasterModeSwitch.Status.DONE
    calls = len(fake_line.calls())
    assert task(first.pk) == DisasterModeSwitch.Status.DONE  # a repeated task (django-q retry) sends nothing
    assert len(fake_line.calls()) == calls


def test_the_reconciler_and_new_followers_respect_disaster_mode(fake_line, city, switched):
    _followers, menus = city
    switched(ON, menus["disaster"])
    newcomer = followers_create(1, start=900)[0]

    linking.rich_menu_link_resident(line_user_id=newcomer.line_user_id, now=NOW)
    assert fake_line.rich_menu_of(newcomer.line_user_id) == menus["disaster"].line_rich_menu_id
    assert linking.rich_menu_links_reconcile(now=NOW).calls == 0


def test_switching_on_needs_a_deployed_disaster_menu(queued):
    not_deployed = menu_create(role=RichMenu.Role.DISASTER)
    with pytest.raises(disaster.DisasterModeProblem, match="先に LINE に反映"):
        disaster.disaster_mode_switch(direction=ON, menu_id=not_deployed.pk, actor=None, now=NOW)
    with pytest.raises(disaster.DisasterModeProblem, match="災害時"):
        disaster.disaster_mode_switch(direction=ON, menu_id=menu_create().pk, actor=None, now=NOW)
    assert not DisasterModeSwitch.objects.exists() and queued == []
