"""Deploying rich menus to LINE (the fake LINE API validates every request against LINE's spec)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pydoc import locate
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone
from django_q.models import Schedule

from audit import actions as audit_actions
from audit.models import AuditEntry
from broadcasts.richmenu import deploy, line_json, linking, taps
from broadcasts.richmenu.models import RichMenu, RichMenuArea, RichMenuDeployment, RichMenuLink
from broadcasts.tests.richmenu_fixtures import (
    followers_create,
    menu_create,
    menus_shown,
    richmenu_settings,  # noqa: F401 (fixture)
    segment_of,
)
from messaging.line.client import LineClient
from messaging.line.openapi.validation import HOST_DATA
from procedures.tests.factories import ProcedureFactory, StaffUserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("richmenu_settings")]

NOW = datetime(2031, 4, 1, 9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def no_queue(monkeypatch):
    """Tasks the services enqueue are recorded; tests run them themselves."""
    queued: list[tuple] = []
    monkeypatch.setattr(linking, "async_task", lambda func, *args: queued.append((func, *args)))
    return queued


@pytest.fixture
def staff():
    return StaffUserFactory()


def deployed(menu: RichMenu, staff) -> RichMenuDeployment:
    deployment = deploy.rich_menu_deploy(menu_id=menu.pk, actor=staff, now=NOW)
    assert deployment.status == RichMenuDeployment.Status.SUCCEEDED, deployment.error
    menu.refresh_from_db()
    return deployment


def live_segment_menu(staff) -> tuple[RichMenu, list]:
    """The default menu and a segment menu (alias "kids") deployed, the segment's two followers linked to it."""
    deployed(menu_create(name="標準"), staff)
    members = followers_create(2)
    menu = menu_create(role=RichMenu.Role.SEGMENT, segment=segment_of(members, "kosodate"), alias_id="kids")
    deployed(menu, staff)
    linking.rich_menu_links_reconcile(now=NOW)
    return menu, members


def test_every_tile_action_becomes_a_countable_action_line_accepts(fake_line):
    tab = menu_create(role=RichMenu.Role.TAB, alias_id="tab-events")
    menu = menu_create(tiles=6)
    procedure = ProcedureFactory(name="粗大ごみの申込み")
    kinds = RichMenuArea.ActionType
    settings_by_position = [
        {"action_type": kinds.PROCEDURE, "procedure": procedure, "text": ""},
        {"action_type": kinds.MESSAGE, "text": "ごみの日"},
        {"action_type": kinds.POSTBACK, "text": "help"},
        {"action_type": kinds.DATETIME_PICKER, "text": "予約", "datetime_mode": "date"},
        {"action_type": kinds.SWITCH, "switch_to": tab, "text": ""},
        {"action_type": kinds.URI, "uri": "https://www.city.example.jp/gomi", "text": ""},
    ]
    for area, fields in zip(menu.areas.order_by("position"), settings_by_position, strict=True):
        RichMenuArea.objects.filter(pk=area.pk).update(**fields)
    areas = list(menu.areas.order_by("position"))

    menu_json = line_json.rich_menu_object(menu)
    with LineClient() as line:
        assert line.rich_menu_validate(menu_json).ok

    actions = [area["action"] for area in menu_json["areas"]]
    assert [action["type"] for action in actions] == [
        "postback",
        "postback",
        "postback",
        "datetimepicker",
        "richmenuswitch",
        "uri",
    ]
    assert actions[0]["displayText"] == "粗大ごみの申込み"
    assert actions[1]["displayText"] == "ごみの日"  # the chat shows the keyword
    assert "displayText" not in actions[2]
    assert actions[3]["mode"] == "date"
    assert actions[4]["richMenuAliasId"] == "tab-events"
    assert actions[5]["uri"] == taps.tracking_url(areas[5])  # the redirect counts, then opens the page
    assert actions[5]["uri"].startswith("https://city.example.jp/") and str(areas[5].pk) in actions[5]["uri"]
    for action, area in zip(actions[:5], areas[:5], strict=True):
        assert taps.area_id_from(action["data"]) == area.pk  # every tap is counted by the tap routing
    assert menu_json["size"] == {"width": 2500, "height": 843}
    assert menu_json["chatBarText"] == menu.chat_bar_text


def test_a_switch_to_a_menu_without_alias_is_explained():
    target = menu_create(role=RichMenu.Role.TAB, name="イベント")
    menu = menu_create()
    RichMenuArea.objects.filter(menu=menu, position=0).update(
        action_type=RichMenuArea.ActionType.SWITCH, switch_to=target
    )
    with pytest.raises(line_json.RichMenuJsonError) as raised:
        line_json.rich_menu_object(menu)
    assert "「タイル1」の切り替え先" in raised.value.problems[0]


def test_first_deploy_creates_the_menu_uploads_the_image_on_the_data_host_and_sets_alias_and_default(fake_line, staff):
    menu = menu_create(alias_id="main")
    deployment = deployed(menu, staff)

    new_id = menu.line_rich_menu_id
    assert new_id in fake_line.rich_menus
    assert deployment.line_rich_menu_id == new_id and deployment.replaced_line_rich_menu_id == ""
    upload = fake_line.last_call(operation_id="setRichMenuImage")
    assert upload.host == HOST_DATA and upload.path_params["richMenuId"] == new_id
    assert fake_line.rich_menu_image(new_id)[1] == "image/png"
    assert fake_line.rich_menu_aliases == {"main": new_id}
    assert fake_line.default_rich_menu_id == new_id
    assert (menu.deployed_at, menu.changed_since_deploy) == (NOW, False)
    assert [call.operation_id for call in fake_line.calls()] == [
        "validateRichMenuObject",
        "createRichMenu",
        "setRichMenuImage",
        "getRichMenuAlias",
        "createRichMenuAlias",
        "setDefaultRichMenu",
    ]
    entry = AuditEntry.objects.get(action=audit_actions.RICH_MENU_DEPLOY)
    assert entry.actor == staff and entry.object_id == str(menu.pk)
    assert entry.details["status"] == "succeeded"


def test_redeploying_moves_linked_residents_and_the_alias_before_deleting_the_old_menu(fake_line, staff):
    default = menu_create(name="標準")
    deployed(default, staff)
    in_segment, others = followers_create(2), followers_create(2, start=10)
    segment_menu = menu_create(role=RichMenu.Role.SEGMENT, segment=segment_of(in_segment, "kosodate"), alias_id="kids")
    deployed(segment_menu, staff)
    linking.rich_menu_links_reconcile(now=NOW)
    old_id = segment_menu.line_rich_menu_id
    assert {fake_line.rich_menu_of(u.line_user_id) for u in in_segment} == {old_id}
    start = len(fake_line.calls())

    RichMenuArea.objects.filter(menu=segment_menu, position=0).update(label="子育て相談")
    RichMenu.objects.filter(pk=segment_menu.pk).update(changed_since_deploy=True)
    deployment = deployed(segment_menu, staff)

    new_id = segment_menu.line_rich_menu_id
    assert new_id != old_id and deployment.replaced_line_rich_menu_id == old_id
    assert old_id not in fake_line.rich_menus
    assert fake_line.rich_menu_aliases["kids"] == new_id
    assert {fake_line.rich_menu_of(u.line_user_id) for u in in_segment} == {new_id}
    assert set(RichMenuLink.objects.values_list("line_rich_menu_id", flat=True)) == {new_id}
    assert fake_line.default_rich_menu_id == default.line_rich_menu_id  # a segment menu is never the default
    steps = [call.operation_id for call in fake_line.calls()[start:]]
    assert steps.index("updateRichMenuAlias") < steps.index("linkRichMenuIdToUsers") < steps.index("deleteRichMenu")
    everyone = [u.line_user_id for u in in_segment + others]
    for index, operation, shown in menus_shown(fake_line, everyone):
        if index >= start:
            assert None not in shown.values(), (operation, shown)
            assert {shown[u.line_user_id] for u in in_segment} <= {old_id, new_id}, operation
            assert {shown[u.line_user_id] for u in others} == {default.line_rich_menu_id}, operation


@pytest.mark.parametrize(
    ("path_prefix", "status", "message", "step"),
    [
        ("/v2/bot/richmenu/validate", 400, "must be specified valid size", "LINE での確認"),
        ("/v2/bot/richmenu/richmenu-", 500, "Internal server error", "画像のアップロード"),
    ],
)
def test_a_failed_redeploy_keeps_the_old_menu_records_lines_message_and_deletes_the_new_one(
    fake_line, staff, path_prefix, status, message, step
):
    menu = menu_create(alias_id="main")
    deployed(menu, staff)
    old_id = menu.line_rich_menu_id
    fake_line.fail_next(status, path_prefix=path_prefix, body={"message": message})

    deployment = deploy.rich_menu_deploy(menu_id=menu.pk, actor=staff, now=NOW)

    menu.refresh_from_db()
    assert deployment.status == RichMenuDeployment.Status.FAILED
    assert step in deployment.error and message in deployment.error and str(status) in deployment.error
    assert menu.line_rich_menu_id == old_id
    assert list(fake_line.rich_menus) == [old_id]  # the half-made menu is gone, the old one untouched
    assert fake_line.default_rich_menu_id == old_id
    assert fake_line.rich_menu_aliases == {"main": old_id}
    assert AuditEntry.objects.filter(action=audit_actions.RICH_MENU_DEPLOY, details__status="failed").exists()


def test_a_deploy_over_lines_hourly_rich_menu_limit_fails_before_changing_anything(fake_line, staff, settings):
    settings.LINE_RATE_LIMITS = {**settings.LINE_RATE_LIMITS, "rich_menu_create": 1}
    menu = menu_create(alias_id="main")
    deployed(menu, staff)
    old_id = menu.line_rich_menu_id
    start = len(fake_line.calls())

    deployment = deploy.rich_menu_deploy(menu_id=menu.pk, actor=staff, now=NOW)

    assert deployment.status == RichMenuDeployment.Status.FAILED
    assert deployment.error == (
        "LINE でのメニュー作成で失敗しました（LINE の上限（1時間に1回）に達しています。60分後にもう一度反映してください。）。"
    )
    assert [call.operation_id for call in fake_line.calls()[start:]] == ["validateRichMenuObject"]
    menu.refresh_from_db()
    assert menu.line_rich_menu_id == old_id and list(fake_line.rich_menus) == [old_id]


def test_over_the_hourly_delete_limit_the_old_menu_is_left_on_line_and_the_deploy_succeeds(
    fake_line, staff, settings, caplog
):
    settings.LINE_RATE_LIMITS = {**settings.LINE_RATE_LIMITS, "rich_menu_delete": 1}
    menu = menu_create(alias_id="main")
    deployed(menu, staff)
    deployed(menu, staff)  # replaces the first menu: the hour's one delete
    second = menu.line_rich_menu_id

    deployed(menu, staff)

    assert second in fake_line.rich_menus and menu.line_rich_menu_id in fake_line.rich_menus
    assert fake_line.rich_menu_aliases == {"main": menu.line_rich_menu_id}
    assert f"rich menu {menu.pk}: old LINE menu not deleted" in caplog.text


def test_a_refused_relink_puts_the_alias_back_and_removes_the_new_menu(fake_line, staff):
    segment_menu, members = live_segment_menu(staff)
    old_id = segment_menu.line_rich_menu_id
    fake_line.fail_next(503, path_prefix="/v2/bot/richmenu/bulk/link", body={"message": "Service unavailable"})

    deployment = deploy.rich_menu_deploy(menu_id=segment_menu.pk, actor=staff, now=NOW)

    assert deployment.status == RichMenuDeployment.Status.FAILED
    assert "住民のメニューの付け替え" in deployment.error and "Service unavailable" in deployment.error
    assert fake_line.rich_menu_aliases["kids"] == old_id
    assert deployment.line_rich_menu_id not in fake_line.rich_menus
    assert {fake_line.rich_menu_of(u.line_user_id) for u in members} == {old_id}


def test_a_menu_with_problems_fails_before_calling_line(fake_line, staff):
    menu = menu_create(with_image=False)
    deployment = deploy.rich_menu_deploy(menu_id=menu.pk, actor=staff, now=NOW)
    assert deployment.status == RichMenuDeployment.Status.FAILED
    assert "内容の確認" in deployment.error and "画像がありません" in deployment.error
    assert fake_line.calls() == []


def test_a_menu_being_deployed_is_not_deployed_twice_at_once(fake_line, staff):
    menu = menu_create()
    RichMenuDeployment.objects.create(menu=menu, started_at=NOW)
    with pytest.raises(deploy.RichMenuDeployBusy):
        deploy.rich_menu_deploy(menu_id=menu.pk, actor=staff, now=NOW)
    assert fake_line.calls() == []


def test_three_tabs_switching_by_alias_deploy_end_to_end(fake_line, staff):
    home = menu_create(name="ホーム", alias_id="tab-home", tiles=3)
    life = menu_create(role=RichMenu.Role.TAB, name="くらし", alias_id="tab-life", tiles=3)
    events = menu_create(role=RichMenu.Role.TAB, name="イベント", alias_id="tab-events", tiles=3)
    tabs = [home, life, events]
    for menu in tabs:
        for position, target in enumerate(tabs):
            RichMenuArea.objects.filter(menu=menu, position=position).update(
                action_type=RichMenuArea.ActionType.SWITCH, switch_to=target, text=""
            )

    deployed(home, staff)

    for menu in tabs:
        menu.refresh_from_db()
        assert menu.line_rich_menu_id in fake_line.rich_menus
        assert fake_line.rich_menu_aliases[menu.alias_id] == menu.line_rich_menu_id
    created = [call.response["richMenuId"] for call in fake_line.calls(operation_id="createRichMenu")]
    assert created[-1] == home.line_rich_menu_id  # the tabs it switches to went first
    assert fake_line.default_rich_menu_id == home.line_rich_menu_id
    for rich_menu in fake_line.rich_menus.values():
        switches = [area["action"]["richMenuAliasId"] for area in rich_menu["areas"]]
        assert set(switches) <= set(fake_line.rich_menu_aliases)
    assert RichMenuDeployment.objects.filter(status=RichMenuDeployment.Status.SUCCEEDED).count() == 3

    deployed(home, staff)  # unchanged tabs are not deployed again
    assert RichMenuDeployment.objects.count() == 4


def test_moving_residents_during_a_deploy_waits_for_lines_bulk_link_window(fake_line, richmenu_settings, monkeypatch):  # noqa: F811
    from broadcasts.richmenu import deploy as deploy_module

    turns = iter([0.0, 0.25, 0.0])
    slept = []
    monkeypatch.setattr(deploy_module.ratelimit, "acquire", lambda operation: next(turns))
    monkeypatch.setattr(deploy_module.time, "sleep", slept.append)

    deploy_module._bulk_turn()
    deploy_module._bulk_turn()

    assert slept == [0.25]


# --------------------------------------------------------------------------
# Left-over menus on LINE (nightly)
# --------------------------------------------------------------------------

NIGHT = NOW + timedelta(hours=1)  # the deploys at NOW are no longer recent


def test_menus_left_on_line_by_refused_deletes_go_at_night_and_nothing_in_use_or_foreign_is_touched(fake_line, staff):
    kids, _members = live_segment_menu(staff)
    replaced = kids.line_rich_menu_id
    fake_line.fail_next(500, path_prefix=f"/v2/bot/richmenu/{replaced}")  # LINE refuses the old menu's delete
    deployed(kids, staff)
    with LineClient() as line:
        # A menu another tool made through the API on the same channel: not in our deploy history.
        foreign = line.rich_menu_create({**line_json.rich_menu_object(kids), "name": "他のツール"}).rich_menu_id
    live = {RichMenu.objects.get(name="標準").line_rich_menu_id, kids.line_rich_menu_id}
    assert set(fake_line.rich_menus) == live | {replaced, foreign}

    outcome = deploy.rich_menus_left_over_delete(now=NIGHT)

    assert (outcome.deleted, outcome.kept, outcome.error) == (1, 0, "")
    assert set(fake_line.rich_menus) == live | {foreign}
    assert fake_line.rich_menu_aliases == {"kids": kids.line_rich_menu_id}
    assert deploy.rich_menus_left_over_delete(now=NIGHT).deleted == 0


def test_left_over_menus_wait_for_the_next_night_once_the_hours_deletes_are_used(fake_line, staff, settings):
    menu = menu_create(alias_id="main")
    deployed(menu, staff)
    settings.LINE_RATE_LIMITS = {**settings.LINE_RATE_LIMITS, "rich_menu_delete": 1}
    replaced = []
    for _ in range(3):
        replaced.append(menu.line_rich_menu_id)
        deployed(menu, staff)  # the first of these takes the hour's delete; the others leave their old menu
    assert set(replaced[1:]) <= set(fake_line.rich_menus)
    start = len(fake_line.calls())

    outcome = deploy.rich_menus_left_over_delete(now=NIGHT)  # the limiter's clock is still in NOW's hour

    assert (outcome.deleted, outcome.kept) == (0, 2)
    assert "deleteRichMenu" not in [call.operation_id for call in fake_line.calls()[start:]]
    settings.LINE_RATE_LIMITS = {**settings.LINE_RATE_LIMITS, "rich_menu_delete": 100}
    with time_machine.travel(NIGHT, tick=False):  # the next hour's window
        assert deploy.rich_menus_left_over_delete(now=NIGHT).deleted == 2
    assert set(fake_line.rich_menus) == {menu.line_rich_menu_id}


def test_when_lines_list_cannot_be_read_nothing_is_deleted(fake_line, staff):
    menu = menu_create()
    deployed(menu, staff)
    fake_line.fail_next(500, path_prefix="/v2/bot/richmenu/list")

    outcome = deploy.rich_menus_left_over_delete(now=NOW)

    assert outcome.deleted == 0 and "500" in outcome.error
    assert list(fake_line.rich_menus) == [menu.line_rich_menu_id]


def test_the_left_over_cleanup_is_scheduled_after_the_reconciler():
    schedule = Schedule.objects.get(func="broadcasts.richmenu.tasks.rich_menus_left_over_delete_task")
    assert (schedule.schedule_type, schedule.repeats) == (Schedule.DAILY, -1)
    assert timezone.localtime(schedule.next_run).time() == time(4, 30)
    assert callable(locate(schedule.func))


def test_a_left_over_menu_someone_made_lines_default_is_kept(fake_line, staff):
    menu = menu_create(role=RichMenu.Role.TAB, alias_id="tab-kids")
    deployed(menu, staff)
    replaced = menu.line_rich_menu_id
    fake_line.fail_next(500, path_prefix=f"/v2/bot/richmenu/{replaced}")
    deployed(menu, staff)
    with LineClient() as line:
        assert line.rich_menu_default_set(replaced).ok  # by hand, e.g. from another tool

    assert deploy.rich_menus_left_over_delete(now=NIGHT).deleted == 0
    assert replaced in fake_line.rich_menus


def test_left_over_menus_still_linked_recent_or_behind_any_alias_are_kept(fake_line, staff):
    menu = menu_create(role=RichMenu.Role.TAB, alias_id="tab-kids")
    replaced = []
    for _ in range(4):
        deployed(menu, staff)
        replaced.append(menu.line_rich_menu_id)
        fake_line.fail_next(500, path_prefix=f"/v2/bot/richmenu/{menu.line_rich_menu_id}")  # each delete refused
    deployed(menu, staff)
    linked, recent, aliased, stale = replaced
    follower = followers_create(1)[0]
    RichMenuLink.objects.create(line_user=follower, menu=menu, line_rich_menu_id=linked, linked_at=NOW)
    # A deploy that finished just now (its menu may have gone live after the live menus were read).
    RichMenuDeployment.objects.filter(line_rich_menu_id=recent).update(started_at=NOW - timedelta(minutes=3))
    RichMenuDeployment.objects.exclude(line_rich_menu_id=recent).update(started_at=NOW - timedelta(hours=1))
    with LineClient() as line:
        assert line.rich_menu_alias_create("old-name", aliased).ok  # an alias renamed in the admin since

    outcome = deploy.rich_menus_left_over_delete(now=NOW)

    assert (outcome.deleted, outcome.kept) == (1, 0)
    assert stale not in fake_line.rich_menus
    assert {linked, recent, aliased, menu.line_rich_menu_id} <= set(fake_line.rich_menus)
