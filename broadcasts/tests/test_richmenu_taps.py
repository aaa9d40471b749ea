"""Rich-menu tiles tapped by a resident, the real way: signed webhook, inbox, worker, engine, outbox, fake LINE."""

from __future__ import annotations

import datetime as dt

import pytest

from broadcasts.richmenu import taps
from broadcasts.richmenu.models import RichMenu, RichMenuArea, RichMenuTapCount
from messaging.tests.test_webhook import (  # noqa: F401 (autouse fixtures)
    LinePhone,
    line_channel,
    postback_event,
    user_id,
    wakeups,
)
from procedures.demo import load_demo
from procedures.models import Procedure

pytestmark = pytest.mark.django_db

TOKYO = dt.timezone(dt.timedelta(hours=9))


def _menu_with(**area) -> RichMenuArea:
    menu = RichMenu.objects.create(name="市のメニュー", role=RichMenu.Role.TAB)
    return RichMenuArea.objects.create(menu=menu, label="タイル", x=0, y=0, width=2500, height=1686, **area)


def _tap(phone: LinePhone, area_id: int, params: dict | None = None) -> list[dict]:
    return phone.send(postback_event(phone.user, taps.tap_data(area_id), params, reply_token=phone.token()))


def _taps_of(area: RichMenuArea) -> int:
    return sum(RichMenuTapCount.objects.filter(area=area).values_list("count", flat=True))


def test_a_procedure_tile_starts_the_procedure_it_refers_to_and_is_counted(client, fake_line):
    load_demo()
    procedure = Procedure.objects.get(name="粗大ごみ収集申込")
    area = _menu_with(action_type=RichMenuArea.ActionType.PROCEDURE, procedure=procedure)
    phone = LinePhone(client, fake_line, user_id(1))

    _tap(phone, area.pk)

    assert "「粗大ごみ収集申込」の手続きを始めます。" in phone.texts()
    assert _taps_of(area) == 1


def test_a_keyword_tile_works_like_typing_the_keyword(client, fake_line):
    load_demo()
    area = _menu_with(action_type=RichMenuArea.ActionType.MESSAGE, text="粗大ごみ")
    phone = LinePhone(client, fake_line, user_id(2))

    _tap(phone, area.pk)

    assert "「粗大ごみ収集申込」の手続きを始めます。" in phone.texts()


def test_taps_are_counted_per_tile_and_per_day_in_tokyo_time():
    area = _menu_with(action_type=RichMenuArea.ActionType.MESSAGE, text="申請状況")
    taps.tap_count(area_id=area.pk, now=dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC))  # 08:30 on the 2nd in Tokyo
    taps.tap_count(area_id=area.pk, now=dt.datetime(2026, 12, 2, 9, 0, tzinfo=TOKYO))
    taps.tap_count(area_id=area.pk, now=dt.datetime(2026, 12, 3, 9, 0, tzinfo=TOKYO))

    assert dict(RichMenuTapCount.objects.filter(area=area).values_list("day", "count")) == {
        dt.date(2026, 12, 2): 2,
        dt.date(2026, 12, 3): 1,
    }


def test_a_forged_or_stale_tile_is_answered_and_counts_nothing(client, fake_line):
    area = _menu_with(action_type=RichMenuArea.ActionType.MESSAGE, text="粗大ごみ")
    phone = LinePhone(client, fake_line, user_id(4))
    forged = taps.tap_data(area.pk).rsplit(".", 1)[0] + f".{area.pk + 1}"

    phone.send(postback_event(phone.user, forged, reply_token=phone.token()))
    assert "このメニューは現在使えません。" in phone.texts()

    deleted = _menu_with(action_type=RichMenuArea.ActionType.MESSAGE, text="x")
    data = taps.tap_data(deleted.pk)
    deleted.menu.delete()
    phone.send(postback_event(phone.user, data, reply_token=phone.token()))

    assert "このメニューは現在使えません。" in phone.texts()
    assert not RichMenuTapCount.objects.exists()


def test_a_tab_switch_is_counted_and_not_answered(client, fake_line):
    target = RichMenu.objects.create(name="子育てタブ", role=RichMenu.Role.TAB, alias_id="kosodate")
    area = _menu_with(action_type=RichMenuArea.ActionType.SWITCH, switch_to=target)
    phone = LinePhone(client, fake_line, user_id(5))

    assert _tap(phone, area.pk) == []
    assert _taps_of(area) == 1


def test_a_date_picker_tile_sends_its_keyword_with_the_picked_date(client, fake_line):
    load_demo()
    area = _menu_with(action_type=RichMenuArea.ActionType.DATETIME_PICKER, text="粗大ごみ", datetime_mode="date")
    phone = LinePhone(client, fake_line, user_id(6))

    _tap(phone, area.pk, {"date": "2026-12-24"})

    assert _taps_of(area) == 1
    assert phone.texts()  # the engine answered the keyword and date like typed text


def test_the_web_link_redirect_counts_and_opens_only_the_tiles_own_page(client):
    area = _menu_with(action_type=RichMenuArea.ActionType.URI, uri="https://www.city.example.jp/")
    keyword = _menu_with(action_type=RichMenuArea.ActionType.MESSAGE, text="x")
    draft = _menu_with(action_type=RichMenuArea.ActionType.URI, uri="https://www.city.example.jp/")
    RichMenu.objects.filter(pk__in=[area.menu_id, keyword.menu_id]).update(line_rich_menu_id="richmenu-live")

    response = client.get(f"/m/{area.pk}/?next=https://evil.example/")
    assert response.status_code == 302 and response["Location"] == "https://www.city.example.jp/"
    assert _taps_of(area) == 1
    assert client.get(f"/m/{keyword.pk}/").status_code == 404
    assert client.get(f"/m/{draft.pk}/").status_code == 404  # not on LINE: nothing to count
    assert client.post(f"/m/{area.pk}/").status_code == 405
    assert taps.tracking_url(area).endswith(f"/m/{area.pk}/")


def test_tap_data_fits_lines_postback_limit_and_rejects_tampering():
    data = taps.tap_data(10**12)
    assert len(data) <= 300
    assert taps.area_id_from(data) == 10**12
    assert taps.area_id_from(data.replace("rm.", "rn.")) is None
    assert taps.area_id_from(data[:-1] + "3") is None
    assert taps.area_id_from("rm..1") is None
