"""The demo's rich menus: made once by load_demo, deployed by the task make run queues."""

from __future__ import annotations

import pytest

from broadcasts.richmenu import services, tasks
from broadcasts.richmenu.demo import demo_rich_menus_load
from broadcasts.richmenu.models import RichMenu, RichMenuArea, RichMenuDeployment
from broadcasts.tests.richmenu_fixtures import richmenu_settings  # noqa: F401 (fixture)
from procedures.demo import load_demo

pytestmark = pytest.mark.django_db


def test_the_demo_menus_are_complete_and_made_once(richmenu_settings):  # noqa: F811
    load_demo()
    menus = demo_rich_menus_load()
    assert {(menu.name, menu.role) for menu in menus} == {
        ("市のメニュー（デモ）", RichMenu.Role.DEFAULT),
        ("子育てタブ（デモ）", RichMenu.Role.TAB),
        ("災害時メニュー（デモ）", RichMenu.Role.DISASTER),
    }
    for menu in menus:
        assert services.rich_menu_problems(menu) == [], menu.name
    city = RichMenu.objects.get(role=RichMenu.Role.DEFAULT)
    tiles = {area.label: area for area in city.areas.select_related("procedure", "switch_to")}
    assert tiles["粗大ごみ"].procedure.receipt_prefix == "SODAI"
    assert tiles["受信設定"].procedure.receipt_prefix == "JUSHIN"
    assert tiles["子育て"].switch_to.name == "子育てタブ（デモ）"

    demo_rich_menus_load()
    assert RichMenu.objects.count() == 3 and RichMenuArea.objects.count() == 14


def test_make_runs_task_deploys_every_demo_menu_to_a_fresh_fake_line(richmenu_settings, fake_line):  # noqa: F811
    load_demo()
    demo_rich_menus_load()

    tasks.rich_menus_deploy_all_task()
    # each menu deployed once (a tab's target goes first, within the tab's own deploy)
    assert sorted(RichMenuDeployment.objects.values_list("menu__name", "status")) == [
        ("子育てタブ（デモ）", "succeeded"),
        ("市のメニュー（デモ）", "succeeded"),
        ("災害時メニュー（デモ）", "succeeded"),
    ]
    city = RichMenu.objects.get(role=RichMenu.Role.DEFAULT)
    assert all(menu.line_rich_menu_id for menu in RichMenu.objects.all())
    assert fake_line.default_rich_menu_id == city.line_rich_menu_id

    # The fake LINE forgets its menus when make run restarts it: deploying again just works.
    fake_line.reset()
    tasks.rich_menus_deploy_all_task()
    assert RichMenuDeployment.objects.filter(status="succeeded").count() == 6
    city.refresh_from_db()
    assert fake_line.default_rich_menu_id == city.line_rich_menu_id
