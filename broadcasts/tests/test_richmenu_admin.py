"""Building a rich menu in the admin: size, layout preset, tiles, image, preview, deploy request, statistics."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.test import Client, TestCase
from django.utils import timezone
from PIL import Image

from broadcasts.richmenu import admin as richmenu_admin
from broadcasts.richmenu import services
from broadcasts.richmenu.models import DisasterModeSwitch, RichMenu, RichMenuArea, RichMenuTapCount
from broadcasts.tests.richmenu_fixtures import admin_form_data
from procedures.tests.factories import StaffUserFactory
from staff.models import Department, Role, StaffMembership

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/broadcasts/richmenu/"


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(StaffUserFactory(username="richmenu-admin", is_superuser=True))
    return client


@pytest.fixture
def menu() -> RichMenu:
    menu = RichMenu.objects.create(name="市のメニュー", width=2500, height=1686, chat_bar_text="メニュー")
    services.rich_menu_layout_apply(menu=menu, preset_key="large_6")
    return menu


def _png(width: int, height: int, format: str = "PNG") -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "#88aacc").save(buffer, format=format)
    buffer.seek(0)
    buffer.name = "menu.png"
    return buffer


def _form_data(menu: RichMenu, **overrides) -> dict:
    return {**admin_form_data(menu), **overrides}


def test_a_preset_lays_out_tiles_that_fill_the_menu(menu):
    areas = list(menu.areas.all())
    assert len(areas) == 6
    assert sum(a.width * a.height for a in areas) == 2500 * 1686
    assert menu.layout == "large_6"


def test_reapplying_a_smaller_preset_keeps_the_first_tiles_actions_and_drops_the_rest(menu):
    first = menu.areas.first()
    first.label, first.text = "粗大ごみ", "粗大ごみ"
    first.save()
    services.rich_menu_layout_apply(menu=menu, preset_key="large_2_columns")
    areas = list(menu.areas.all())
    assert [a.label for a in areas][:1] == ["粗大ごみ"] and len(areas) == 2
    assert (areas[0].width, areas[0].height) == (1250, 1686)


def test_a_compact_preset_is_refused_on_a_large_menu(menu):
    with pytest.raises(services.RichMenuProblem):
        services.rich_menu_layout_apply(menu=menu, preset_key="compact_3")


def test_staff_add_a_menu_by_choosing_a_size(admin_client):
    response = admin_client.post(
        CHANGELIST + "add/",
        {
            "name": "子育てタブ",
            "role": "tab",
            "priority": 100,
            "size": "2500x843",
            "chat_bar_text": "子育て",
            "alias_id": "kosodate",
            "areas-TOTAL_FORMS": 0,
            "areas-INITIAL_FORMS": 0,
            "areas-MIN_NUM_FORMS": 0,
            "areas-MAX_NUM_FORMS": 1000,
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    menu = RichMenu.objects.get(name="子育てタブ")
    assert (menu.width, menu.height) == (2500, 843)


def test_a_size_line_refuses_and_a_long_chat_bar_text_are_explained(admin_client):
    response = admin_client.post(
        CHANGELIST + "add/",
        {
            "name": "x",
            "role": "tab",
            "priority": 1,
            "size": "custom",
            "width": 1000,
            "height": 900,
            "chat_bar_text": "あ" * 15,
            "areas-TOTAL_FORMS": 0,
            "areas-INITIAL_FORMS": 0,
            "areas-MIN_NUM_FORMS": 0,
            "areas-MAX_NUM_FORMS": 1000,
        },
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert "幅÷高さは 1.45 以上にしてください" in content
    assert not RichMenu.objects.exists()


def test_overlapping_tiles_are_refused_with_both_names(admin_client, menu):
    data = _form_data(menu, **{"areas-1-x": 100})  # the 2nd tile slides over the 1st
    response = admin_client.post(f"{CHANGELIST}{menu.pk}/change/", data)
    assert response.status_code == 200
    assert "「タイル1」と「タイル2」が重なっています。" in response.content.decode()


def test_a_tile_without_what_it_needs_is_refused(admin_client, menu):
    data = _form_data(menu, **{"areas-0-action_type": "procedure"})
    response = admin_client.post(f"{CHANGELIST}{menu.pk}/change/", data)
    assert "「タイル1」：始める手続きを選んでください。" in response.content.decode()


def test_an_uploaded_image_of_the_wrong_size_is_refused_and_the_right_one_kept(admin_client, menu, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    for index in range(6):
        RichMenuArea.objects.filter(menu=menu, position=index).update(text=f"k{index}")
    response = admin_client.post(
        f"{CHANGELIST}{menu.pk}/change/", {**_form_data(menu), "image_upload": _png(2500, 843)}
    )
    assert "メニューの大きさ（2500×1686）と違います" in response.content.decode()
    menu.refresh_from_db()
    assert not menu.image

    response = admin_client.post(
        f"{CHANGELIST}{menu.pk}/change/", {**_form_data(menu), "image_upload": _png(2500, 1686)}
    )
    assert response.status_code == 302
    menu.refresh_from_db()
    assert menu.image and menu.image_content_type == "image/png" and not menu.image_generated


def test_generating_the_image_from_tiles_and_the_preview_shows_each_tile_and_action(
    admin_client, menu, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    assert admin_client.post(f"{CHANGELIST}{menu.pk}/generate-image/").status_code == 302
    menu.refresh_from_db()
    assert menu.image_generated

    page = admin_client.get(f"{CHANGELIST}{menu.pk}/change/").content.decode()
    assert f"{CHANGELIST}{menu.pk}/image/" in page
    assert page.count("border:2px dashed") == 6
    assert "1. タイル1" in page and "キーワードを送る" in page
    image = admin_client.get(f"{CHANGELIST}{menu.pk}/image/")
    assert image["Content-Type"] == "image/png"


def test_deploy_lists_what_to_fix_and_enqueues_nothing_until_the_menu_is_complete(admin_client, menu, monkeypatch):
    queued = []
    monkeypatch.setattr(richmenu_admin, "async_task", lambda *args: queued.append(args))
    page = admin_client.get(f"{CHANGELIST}{menu.pk}/deploy/").content.decode()
    assert "画像がありません" in page and "送るキーワードを入力してください" in page
    admin_client.post(f"{CHANGELIST}{menu.pk}/deploy/")
    assert queued == []


def test_deploy_of_a_complete_menu_is_queued_for_the_worker(
    admin_client, menu, monkeypatch, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    menu.areas.update(text="粗大ごみ")
    services.rich_menu_image_generate(menu=menu)
    queued = []
    monkeypatch.setattr(richmenu_admin, "async_task", lambda *args: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{CHANGELIST}{menu.pk}/deploy/")
    assert response.status_code == 302
    assert queued == [("broadcasts.richmenu.tasks.rich_menu_deploy_task", menu.pk, response.wsgi_request.user.pk)]


def test_tap_statistics_show_taps_per_tile_and_day(admin_client, menu):
    today = timezone.localdate()
    first, second = list(menu.areas.all())[:2]
    RichMenuTapCount.objects.create(area=first, day=today, count=5)
    RichMenuTapCount.objects.create(area=second, day=today - dt.timedelta(days=1), count=2)
    RichMenuTapCount.objects.create(area=second, day=today - dt.timedelta(days=40), count=99)

    response = admin_client.get(f"{CHANGELIST}{menu.pk}/stats/")
    assert response.context["totals"][:2] == [5, 2]
    assert response.context["total"] == 7
    assert "合計 7 回" in response.content.decode()


def test_department_staff_cannot_see_or_deploy_rich_menus(menu):
    department = Department.objects.create(name="子育て支援課")
    user = StaffUserFactory(username="kosodate-staff", is_superuser=False)
    StaffMembership.objects.create(user=user, role=Role.DEPARTMENT_STAFF, department=department)
    client = Client()
    client.force_login(user)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(f"{CHANGELIST}{menu.pk}/change/").status_code in (403, 404)
    assert client.post(f"{CHANGELIST}{menu.pk}/deploy/").status_code in (403, 404)
    assert client.get(f"{CHANGELIST}{menu.pk}/image/").status_code in (403, 404)
    assert client.post(f"{CHANGELIST}disaster/", {"confirm": "yes"}).status_code == 403


def test_disaster_mode_needs_a_confirmation_then_shows_its_progress(
    admin_client, monkeypatch, django_capture_on_commit_callbacks
):
    from broadcasts.richmenu import disaster

    queued = []
    monkeypatch.setattr(disaster, "async_task", lambda *args: queued.append(args))
    menu = RichMenu.objects.create(name="災害時メニュー", role=RichMenu.Role.DISASTER, line_rich_menu_id="richmenu-x")
    assert "災害モード" in admin_client.get(CHANGELIST).content.decode()

    refused = admin_client.post(f"{CHANGELIST}disaster/", {"menu": menu.pk})
    assert "確認のチェックを入れてください。" in refused.content.decode()
    assert not DisasterModeSwitch.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{CHANGELIST}disaster/", {"menu": menu.pk, "confirm": "yes"})
    switch = DisasterModeSwitch.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"?switch={switch.pk}")
    assert queued == [(disaster.SWITCH_TASK, switch.pk)]
    progress = admin_client.get(f"{CHANGELIST}disaster/{switch.pk}/progress/").json()
    assert progress["status"] == "running" and progress["direction"] == "on"
    assert "災害モード中" in admin_client.get(CHANGELIST).content.decode()


def test_a_disaster_menu_not_yet_on_line_cannot_be_switched_to(admin_client):
    menu = RichMenu.objects.create(name="災害時メニュー", role=RichMenu.Role.DISASTER)
    response = admin_client.post(f"{CHANGELIST}disaster/", {"menu": menu.pk, "confirm": "yes"})
    assert "先に LINE に反映してください" in response.content.decode()


def test_an_icon_that_is_not_an_image_is_refused_on_the_tile(admin_client, menu, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    menu.areas.update(text="粗大ごみ")
    not_an_icon = io.BytesIO(b"<svg/>")
    not_an_icon.name = "icon.png"
    response = admin_client.post(f"{CHANGELIST}{menu.pk}/change/", {**_form_data(menu), "areas-0-icon": not_an_icon})
    assert response.status_code == 200
    assert "アイコンには PNG か JPEG の画像を選んでください。" in response.content.decode()
    assert not menu.areas.exclude(icon="").exists()

    icon = _png(64, 64)
    icon.name = "icon.png"
    response = admin_client.post(f"{CHANGELIST}{menu.pk}/change/", {**_form_data(menu), "areas-0-icon": icon})
    assert response.status_code == 302
    assert menu.areas.exclude(icon="").count() == 1


def test_asking_again_for_a_running_switch_queues_it_again_and_a_stale_one_gives_way(admin_client, monkeypatch):
    from broadcasts.richmenu import disaster

    queued = []
    monkeypatch.setattr(disaster, "async_task", lambda *args: queued.append(args))
    menu = RichMenu.objects.create(name="災害時メニュー", role=RichMenu.Role.DISASTER, line_rich_menu_id="richmenu-x")
    now = timezone.now()
    with TestCase.captureOnCommitCallbacks(execute=True):
        first = disaster.disaster_mode_switch(direction="on", menu_id=menu.pk, actor=None, now=now)
        again = disaster.disaster_mode_switch(direction="on", menu_id=menu.pk, actor=None, now=now)
    assert again.pk == first.pk and queued == [(disaster.SWITCH_TASK, first.pk)] * 2

    with pytest.raises(disaster.DisasterModeProblem):
        disaster.disaster_mode_switch(direction="off", menu_id=menu.pk, actor=None, now=now)
    later = now + disaster.SWITCH_STALE_AFTER + dt.timedelta(minutes=1)
    back = disaster.disaster_mode_switch(direction="off", menu_id=menu.pk, actor=None, now=later)
    first.refresh_from_db()
    assert first.status == DisasterModeSwitch.Status.FAILED and "中断しました" in first.error
    assert back.direction == "off"


def test_a_failed_switch_can_be_retried_from_the_page(admin_client, monkeypatch):
    from broadcasts.richmenu import disaster

    monkeypatch.setattr(disaster, "async_task", lambda *args: None)
    menu = RichMenu.objects.create(name="災害時メニュー", role=RichMenu.Role.DISASTER, line_rich_menu_id="richmenu-x")
    DisasterModeSwitch.objects.create(
        direction="on",
        menu=menu,
        status=DisasterModeSwitch.Status.FAILED,
        error="LINE の応答 500",
        started_at=timezone.now(),
    )
    page = admin_client.get(f"{CHANGELIST}disaster/").content.decode()
    assert "前回の「災害時メニューに切り替え」は完了していません" in page

    response = admin_client.post(f"{CHANGELIST}disaster/", {"retry": "1", "menu": menu.pk, "confirm": "yes"})
    assert response.status_code == 302
    retried = DisasterModeSwitch.objects.order_by("-id").first()
    assert (retried.direction, retried.status) == ("on", DisasterModeSwitch.Status.RUNNING)
