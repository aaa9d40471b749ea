"""The demo's rich menus: a 6-tile city menu with a parents' tab, and a disaster menu (idempotent).

Tiles start the demo procedures by reference, open 受信設定 and 申請状況, a city web page, and
switch to the parents' tab and back. Images are drawn from the tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from broadcasts.richmenu import services
from broadcasts.richmenu.models import RichMenu, RichMenuArea
from procedures.models import Procedure

CITY_PAGE = "https://www.city.ogi.lg.jp/"
MAIN_ALIAS, PARENTS_ALIAS = "city-main", "city-parents"
Kind = RichMenuArea.ActionType


@dataclass(frozen=True)
class Tile:
    label: str
    background: str
    action_type: str
    procedure_prefix: str = ""  # the demo procedure's receipt prefix
    text: str = ""
    uri: str = ""
    switch_to: str = ""  # the alias of the menu to switch to


@dataclass(frozen=True)
class DemoMenu:
    name: str
    role: str
    preset: str
    chat_bar_text: str
    alias: str
    tiles: tuple[Tile, ...]


DEMO_MENUS = (
    # The parents' tab first: the city menu's last tile switches to it.
    DemoMenu(
        "子育てタブ（デモ）",
        RichMenu.Role.TAB,
        "large_1_3",
        "子育てメニュー",
        PARENTS_ALIAS,
        (
            Tile("市のメニューに戻る", "#ECEFF1", Kind.SWITCH, switch_to=MAIN_ALIAS),
            Tile("子育て情報", "#FFF8E1", Kind.URI, uri=CITY_PAGE),
            Tile("受信設定", "#E3F2FD", Kind.PROCEDURE, procedure_prefix="JUSHIN"),
            Tile("申請状況", "#FCE4EC", Kind.MESSAGE, text="申請状況"),
        ),
    ),
    DemoMenu(
        "市のメニュー（デモ）",
        RichMenu.Role.DEFAULT,
        "large_6",
        "市役所メニュー",
        MAIN_ALIAS,
        (
            Tile("住民票の写し", "#E8F5E9", Kind.PROCEDURE, procedure_prefix="JUMIN"),
            Tile("粗大ごみ", "#FFF3E0", Kind.PROCEDURE, procedure_prefix="SODAI"),
            Tile("受信設定", "#E3F2FD", Kind.PROCEDURE, procedure_prefix="JUSHIN"),
            Tile("申請状況", "#FCE4EC", Kind.MESSAGE, text="申請状況"),
            Tile("市のホームページ", "#F3E5F5", Kind.URI, uri=CITY_PAGE),
            Tile("子育て", "#FFFDE7", Kind.SWITCH, switch_to=PARENTS_ALIAS),
        ),
    ),
    DemoMenu(
        "災害時メニュー（デモ）",
        RichMenu.Role.DISASTER,
        "large_4",
        "災害情報",
        "",
        (
            Tile("避難所", "#FFEBEE", Kind.URI, uri=CITY_PAGE),
            Tile("安否確認", "#FFF3E0", Kind.MESSAGE, text="安否確認"),
            Tile("緊急のお知らせ", "#FFEBEE", Kind.URI, uri=CITY_PAGE),
            Tile("申請状況", "#ECEFF1", Kind.MESSAGE, text="申請状況"),
        ),
    ),
)


@transaction.atomic
def demo_rich_menus_load() -> list[RichMenu]:
    """Create the demo menus that are not there yet (by name); existing ones are left as staff edited them.

    Menus first, tiles second: a tab's tiles switch to menus created after it."""
    created = {spec: _create(spec) for spec in DEMO_MENUS if not RichMenu.objects.filter(name=spec.name).exists()}
    for spec, menu in created.items():
        _fill(menu, spec)
    return list(RichMenu.objects.filter(name__in=[spec.name for spec in DEMO_MENUS]))


def _create(spec: DemoMenu) -> RichMenu:
    role = spec.role
    if role == RichMenu.Role.DEFAULT and RichMenu.objects.filter(role=RichMenu.Role.DEFAULT).exists():
        role = RichMenu.Role.TAB  # the city already has its own default menu: keep it
    alias = spec.alias if not RichMenu.objects.filter(alias_id=spec.alias).exists() else ""
    menu = RichMenu.objects.create(name=spec.name, role=role, chat_bar_text=spec.chat_bar_text, alias_id=alias)
    services.rich_menu_layout_apply(menu=menu, preset_key=spec.preset)
    return menu


def _fill(menu: RichMenu, spec: DemoMenu) -> None:
    for area, tile in zip(menu.areas.all(), spec.tiles, strict=True):
        area.label, area.background, area.action_type = tile.label, tile.background, tile.action_type
        area.text, area.uri = tile.text, tile.uri
        if tile.procedure_prefix:
            area.procedure = Procedure.objects.filter(receipt_prefix=tile.procedure_prefix).first()
        if tile.switch_to:
            area.switch_to = RichMenu.objects.filter(alias_id=tile.switch_to).first()
        area.save()
    services.rich_menu_image_generate(menu=menu)
