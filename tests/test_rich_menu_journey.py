"""Issue 7, "Done when": a staff member builds a 6-tile city menu and a parents' tab in the admin,
previews and deploys them, and in the resident simulator each tile does what it says.

The admin pages, the deploy task against the fake LINE (which checks every request and the image
rules), then the simulator's own endpoints: the menu it shows is read back from the fake LINE.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from broadcasts.richmenu import admin as richmenu_admin
from broadcasts.richmenu import tasks
from broadcasts.richmenu.models import RichMenu, RichMenuDeployment, RichMenuTapCount
from broadcasts.tests.richmenu_fixtures import admin_form_data
from messaging.tests.test_resident_simulator import Browser, browser, webhook_posts  # noqa: F401 (fixtures)
from messaging.tests.test_webhook import actions_in, line_channel, wakeups  # noqa: F401 (autouse fixtures)
from procedures.demo import load_demo
from procedures.models import Procedure

CHANGELIST = "/admin/broadcasts/richmenu/"
CITY_PAGE = "https://www.city.example.jp/"


def _build(sim: Browser, *, name: str, alias: str, preset: str, tiles: list[dict]) -> RichMenu:
    admin = sim.client
    response = admin.post(
        CHANGELIST + "add/",
        {
            "name": name,
            "role": "tab",
            "priority": 100,
            "size": "2500x1686",
            "chat_bar_text": name[:14],
            "opens_by_default": "on",
            "alias_id": alias,
            "areas-TOTAL_FORMS": 0,
            "areas-INITIAL_FORMS": 0,
            "areas-MIN_NUM_FORMS": 0,
            "areas-MAX_NUM_FORMS": 1000,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    menu = RichMenu.objects.get(name=name)
    assert admin.post(f"{CHANGELIST}{menu.pk}/layout/", {"preset": preset}).status_code == 302
    return menu


def _set_tiles(sim: Browser, menu: RichMenu, tiles: list[dict], **fields) -> None:
    data = {**admin_form_data(menu, **{f"tile{i}": tile for i, tile in enumerate(tiles)}), **fields}
    response = sim.client.post(f"{CHANGELIST}{menu.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert sim.client.post(f"{CHANGELIST}{menu.pk}/generate-image/").status_code == 302


def _tap(sim: Browser, area: dict, params: dict | None = None) -> list[dict]:
    body = {"type": "postback", "data": area["action"]["data"]}
    if params:
        body["params"] = params
    sim.ok("send", body)
    return sim.run_pipeline()


def _start(sim: Browser, area: dict) -> str:
    """Tap a procedure tile; when another procedure is in progress, agree to leave it (as a resident would)."""
    received = _tap(sim, area)
    if "手続きの途中です" in _texts(received):
        switch = next(a for m in received for a in actions_in(m) if '"switch"' in a.get("data", ""))
        sim.ok("send", {"type": "postback", "data": switch["data"]})
        received = sim.run_pipeline()
    return _texts(received)


def _texts(messages: list[dict]) -> str:
    return "\n".join(m.get("text", "") or m.get("altText", "") for m in messages)


@pytest.mark.django_db(transaction=True)
def test_staff_build_and_deploy_a_city_menu_with_a_parents_tab_and_every_tile_works_in_the_simulator(
    browser,  # noqa: F811 (the imported fixture)
    fake_line,
    settings,
    tmp_path,
    monkeypatch,
):
    settings.MEDIA_ROOT = tmp_path
    load_demo()
    certificate = Procedure.objects.get(receipt_prefix="JUMIN")
    garbage = Procedure.objects.get(receipt_prefix="SODAI")
    receive_settings = Procedure.objects.get(receipt_prefix="JUSHIN")
    queued = []
    monkeypatch.setattr(richmenu_admin, "async_task", lambda *args: queued.append(args))

    # The parents' tab (top: back to the city menu; below: three tiles), then the 6-tile city menu.
    parents = _build(browser, name="子育てタブ", alias="parents", preset="large_1_3", tiles=[])
    city = _build(browser, name="市のメニュー", alias="city", preset="large_6", tiles=[])
    _set_tiles(
        browser,
        parents,
        [
            {"label": "市のメニューに戻る", "action_type": "switch", "switch_to": city.pk},
            {"label": "子育て情報", "action_type": "uri", "uri": CITY_PAGE},
            {"label": "受信設定", "action_type": "procedure", "procedure": receive_settings.pk},
            {"label": "申請状況", "action_type": "message", "text": "申請状況"},
        ],
    )
    _set_tiles(
        browser,
        city,
        [
            {"label": "住民票の写し", "action_type": "procedure", "procedure": certificate.pk},
            {"label": "粗大ごみ", "action_type": "procedure", "procedure": garbage.pk},
            {"label": "受信設定", "action_type": "procedure", "procedure": receive_settings.pk},
            {"label": "申請状況", "action_type": "message", "text": "申請状況"},
            {"label": "市のホームページ", "action_type": "uri", "uri": CITY_PAGE},
            {"label": "子育て", "action_type": "switch", "switch_to": parents.pk},
        ],
        role="default",
    )

    # Preview, then deploy (the worker runs the queued task against the fake LINE).
    preview = browser.client.get(f"{CHANGELIST}{city.pk}/deploy/").content.decode()
    assert preview.count("border:2px dashed") == 6 and "このままでは反映できません" not in preview
    assert browser.client.post(f"{CHANGELIST}{city.pk}/deploy/").status_code == 302
    [(task, menu_id, actor_id)] = queued
    assert task == "broadcasts.richmenu.tasks.rich_menu_deploy_task"
    assert tasks.rich_menu_deploy_task(menu_id, actor_id) == RichMenuDeployment.Status.SUCCEEDED
    city.refresh_from_db()
    parents.refresh_from_db()
    assert city.line_rich_menu_id and parents.line_rich_menu_id  # the tab went first, for its alias

    # The simulator: follow, then the menu under the chat is the city menu, read from LINE.
    browser.ok("follow", {"if_new": True})
    browser.run_pipeline()
    menu = browser.client.get(browser.url("richmenu"), HTTP_HOST=browser.host).json()["menu"]
    assert menu["chatBarText"] == "市のメニュー" and len(menu["areas"]) == 6
    image = browser.client.get(menu["image_url"], HTTP_HOST=browser.host)
    assert image.status_code == 200 and image["Content-Type"] in ("image/png", "image/jpeg")
    certificate_tile, garbage_tile, settings_tile, status_tile, page_tile, parents_tile = menu["areas"]

    assert f"「{certificate.name}」の手続きを始めます。" in _start(browser, certificate_tile)
    assert f"「{garbage.name}」の手続きを始めます。" in _start(browser, garbage_tile)
    assert f"「{receive_settings.name}」の手続きを始めます。" in _start(browser, settings_tile)
    assert "お申し込みの記録はありません。" in _texts(_tap(browser, status_tile))  # 申請状況: none yet

    assert page_tile["action"]["type"] == "uri"
    redirect = browser.client.get(urlsplit(page_tile["action"]["uri"]).path)  # the tracking redirect
    assert redirect.status_code == 302 and redirect["Location"] == CITY_PAGE

    # The 子育て tile switches to the parents' tab (by its alias); its first tile switches back.
    assert parents_tile["action"]["type"] == "richmenuswitch"
    tab = browser.client.get(
        browser.url("richmenu"), {"alias": parents_tile["action"]["richMenuAliasId"]}, HTTP_HOST=browser.host
    ).json()["menu"]
    assert tab["chatBarText"] == "子育てタブ" and len(tab["areas"]) == 4
    params = {"newRichMenuAliasId": "parents", "status": "SUCCESS"}
    assert _tap(browser, parents_tile, params) == []  # LINE switched the tab; nothing to answer
    back = tab["areas"][0]["action"]
    assert back["type"] == "richmenuswitch" and back["richMenuAliasId"] == "city"

    # Every tap was counted, per tile and day.
    counted = dict(RichMenuTapCount.objects.filter(day=timezone.localdate()).values_list("area__label", "count"))
    assert counted == {
        "住民票の写し": 1,
        "粗大ごみ": 1,
        "受信設定": 1,
        "申請状況": 1,
        "市のホームページ": 1,
        "子育て": 1,
    }
    assert fake_line.invalid_calls() == []
