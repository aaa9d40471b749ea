"""Writes for building rich menus in the admin: layouts, images. Deploying is in deploy.py."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils.translation import gettext as _

from broadcasts.richmenu import image, layout
from broadcasts.richmenu.models import RichMenu, RichMenuArea

DEFAULT_TILE_COLOURS = ("#E8F5E9", "#FFF3E0", "#E3F2FD", "#FCE4EC", "#F3E5F5", "#FFFDE7")


class RichMenuProblem(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems


def _changed(menu: RichMenu, *fields: str) -> None:
    menu.changed_since_deploy = True
    menu.save(update_fields=[*fields, "changed_since_deploy", "updated_at"])


@transaction.atomic
def rich_menu_layout_apply(*, menu: RichMenu, preset_key: str) -> list[RichMenuArea]:
    """Lay the menu's tiles out as a preset: existing tiles keep their labels and actions in order,
    missing ones are added as keyword tiles to fill in, extra ones are removed."""
    preset = layout.PRESETS_BY_KEY.get(preset_key)
    if preset is None or preset not in layout.presets_for(menu.width, menu.height):
        raise RichMenuProblem([_("このメニューの大きさに使えないレイアウトです。")])
    areas = list(menu.areas.all())
    bounds = layout.preset_bounds(preset, menu.width, menu.height)
    for extra in areas[len(bounds) :]:
        extra.delete()
    result = []
    for index, box in enumerate(bounds):
        area = (
            areas[index]
            if index < len(areas)
            else RichMenuArea(
                menu=menu,
                label=_("タイル%(number)s") % {"number": index + 1},
                action_type=RichMenuArea.ActionType.MESSAGE,
                background=DEFAULT_TILE_COLOURS[index % len(DEFAULT_TILE_COLOURS)],
            )
        )
        area.position, area.x, area.y, area.width, area.height = index, box.x, box.y, box.width, box.height
        area.save()
        result.append(area)
    menu.layout = preset.key
    _changed(menu, "layout")
    return result


def _area_bounds(areas) -> list[tuple[str, layout.Bounds]]:
    return [(area.label, layout.Bounds(area.x, area.y, area.width, area.height)) for area in areas]


def rich_menu_problems(menu: RichMenu) -> list[str]:
    """Everything that keeps the menu from being deployed, in words for staff."""
    areas = list(menu.areas.select_related("switch_to"))
    problems = layout.size_problems(menu.width, menu.height)
    problems += layout.chat_bar_text_problems(menu.chat_bar_text)
    problems += layout.areas_problems(menu.width, menu.height, _area_bounds(areas))
    for area in areas:
        problems += area_action_problems(area)
    if not menu.image:
        problems.append(_("画像がありません。画像をアップロードするか、タイルから作成してください。"))
    return problems


def area_action_problems(area: RichMenuArea) -> list[str]:
    kind = RichMenuArea.ActionType
    name = area.label or _("（ラベルなし）")
    if area.action_type == kind.PROCEDURE and not area.procedure_id:
        return [_("「%(name)s」：始める手続きを選んでください。") % {"name": name}]
    if area.action_type == kind.URI and not area.uri.startswith(("https://", "http://")):
        return [_("「%(name)s」：開く URL（https:// で始まるもの）を入力してください。") % {"name": name}]
    if area.action_type in (kind.MESSAGE, kind.POSTBACK, kind.DATETIME_PICKER) and not area.text.strip():
        return [_("「%(name)s」：送るキーワードを入力してください。") % {"name": name}]
    if area.action_type == kind.DATETIME_PICKER and not area.datetime_mode:
        return [_("「%(name)s」：日付の種類を選んでください。") % {"name": name}]
    if area.action_type == kind.SWITCH:
        target = area.switch_to
        if target is None:
            return [_("「%(name)s」：切り替え先のメニューを選んでください。") % {"name": name}]
        if not target.alias_id:
            return [
                _("「%(name)s」：切り替え先「%(target)s」にエイリアスIDを付けてください。")
                % {"name": name, "target": target.name}
            ]
    return []


@transaction.atomic
def rich_menu_image_upload(*, menu: RichMenu, data: bytes, filename: str) -> None:
    checked = image.image_check(data, width=menu.width, height=menu.height)
    _store_image(menu, data, checked.content_type, generated=False, filename=filename)


@transaction.atomic
def rich_menu_image_generate(*, menu: RichMenu) -> None:
    """Draw the image from the tiles' labels, colours and icons."""
    areas = list(menu.areas.all())
    problems = layout.size_problems(menu.width, menu.height) + layout.areas_problems(
        menu.width, menu.height, _area_bounds(areas)
    )
    if problems:
        raise RichMenuProblem(problems)
    tiles = []
    for area in areas:
        icon = None
        if area.icon:
            with area.icon.open("rb") as handle:
                icon = handle.read()
        tiles.append(
            image.Tile(
                layout.Bounds(area.x, area.y, area.width, area.height),
                area.label,
                area.background,
                area.foreground,
                icon,
            )
        )
    data, content_type = image.tiles_image(menu.width, menu.height, tiles)
    _store_image(menu, data, content_type, generated=True, filename="generated")


def _store_image(menu: RichMenu, data: bytes, content_type: str, *, generated: bool, filename: str) -> None:
    extension = ".png" if content_type == "image/png" else ".jpg"
    old = menu.image.name if menu.image else ""
    menu.image.save(f"menu-{menu.pk}{extension}", ContentFile(data), save=False)
    menu.image_content_type = content_type
    menu.image_generated = generated
    _changed(menu, "image", "image_content_type", "image_generated")
    if old and old != menu.image.name:
        storage = menu.image.storage
        transaction.on_commit(lambda: storage.delete(old), robust=True)
