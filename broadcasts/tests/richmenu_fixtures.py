"""Builders shared by the rich-menu LINE tests: menus with images, followers, segments, replaying the fake."""

from __future__ import annotations

import io
import itertools

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from broadcasts.richmenu.models import RichMenu, RichMenuArea
from messaging.models import LineUser
from residents.models import Category, Resident, ResidentCategory, Segment

_numbers = itertools.count(1)


@pytest.fixture
def richmenu_settings(settings, tmp_path):
    """Menu images under tmp_path, a channel access token for the fake, a public base URL for tiles."""
    settings.MEDIA_ROOT = tmp_path
    settings.LINE_CHANNEL_ACCESS_TOKEN = "test-channel-access-token"  # noqa: S105 (the fake accepts any)
    settings.GOVTECH_BASE_URL = "https://city.example.jp"
    return settings


def png(width: int = 2500, height: int = 843, colour: str = "white") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def menu_create(*, role=RichMenu.Role.DEFAULT, tiles: int = 2, with_image: bool = True, **fields) -> RichMenu:
    """A compact menu with `tiles` keyword tiles side by side and a PNG image of its size."""
    fields.setdefault("name", f"メニュー{next(_numbers)}")
    menu = RichMenu.objects.create(role=role, width=2500, height=843, **fields)
    width = menu.width // tiles
    for index in range(tiles):
        RichMenuArea.objects.create(
            menu=menu,
            position=index,
            label=f"タイル{index + 1}",
            x=index * width,
            y=0,
            width=width,
            height=menu.height,
            action_type=RichMenuArea.ActionType.MESSAGE,
            text=f"キーワード{index + 1}",
        )
    if with_image:
        menu.image.save(f"menu-{menu.pk}.png", ContentFile(png(menu.width, menu.height)), save=False)
        menu.image_content_type = "image/png"
        menu.save()
    return menu


def line_user_id(n: int) -> str:
    return "U" + f"{n:032x}"


def followers_create(count: int, *, start: int = 1, following: bool = True) -> list[LineUser]:
    ids = [line_user_id(n) for n in range(start, start + count)]
    residents = Resident.objects.bulk_create([Resident(line_user_id=uid) for uid in ids])
    LineUser.objects.bulk_create(
        [
            LineUser(line_user_id=uid, resident=resident, is_following=following)
            for uid, resident in zip(ids, residents, strict=True)
        ]
    )
    return list(LineUser.objects.filter(line_user_id__in=ids).order_by("pk"))


def segment_of(users: list[LineUser], key: str) -> Segment:
    """A segment of the residents who chose category `key` (those of `users` do)."""
    category, _created = Category.objects.get_or_create(key=key, defaults={"name": key})
    ResidentCategory.objects.bulk_create(
        [ResidentCategory(resident_id=u.resident_id, category=category) for u in users]
    )
    return Segment.objects.create(
        name=f"{key}の人", rules={"match": "all", "rules": [{"type": "category", "op": "chose", "category": key}]}
    )


def category_join(user: LineUser, key: str) -> None:
    ResidentCategory.objects.create(resident_id=user.resident_id, category=Category.objects.get(key=key))


def category_leave(user: LineUser, key: str) -> None:
    ResidentCategory.objects.filter(resident_id=user.resident_id, category__key=key).delete()


def menus_shown(fake_line, user_ids: list[str]) -> list[tuple[int, str, dict[str, str | None]]]:
    """Replays the rich-menu calls LINE accepted: after each, the menu every user sees (None: no menu).

    A user sees their linked menu, else the default one, if that menu exists and has its image.
    Entries are (index of the call among all recorded calls, operation, {user id: LINE menu id}).
    """
    ready: set[str] = set()
    default: str | None = None
    links: dict[str, str] = {}
    history = []
    for index, call in enumerate(fake_line.calls()):
        if not call.accepted:
            continue
        op, params, body = call.operation_id, call.path_params, call.body
        if op == "setRichMenuImage":
            ready.add(params["richMenuId"])
        elif op == "setDefaultRichMenu":
            default = params["richMenuId"]
        elif op == "cancelDefaultRichMenu":
            default = None
        elif op == "linkRichMenuIdToUsers":
            links.update(dict.fromkeys(body["userIds"], body["richMenuId"]))
        elif op == "unlinkRichMenuIdFromUsers":
            for user in body["userIds"]:
                links.pop(user, None)
        elif op == "deleteRichMenu":
            gone = params["richMenuId"]
            ready.discard(gone)
            default = None if default == gone else default
            links = {user: menu for user, menu in links.items() if menu != gone}
        else:
            continue
        shown = {}
        for user in user_ids:
            menu = links.get(user, default)
            shown[user] = menu if menu in ready else None
        history.append((index, op, shown))
    return history


AREA_FORM_FIELDS = ("position", "label", "x", "y", "width", "height", "background", "foreground", "action_type", "text", "uri", "datetime_mode")


def admin_form_data(menu: RichMenu, **tiles: dict) -> dict:
    """The rich-menu admin's change form as a browser posts it; `tiles` overrides fields of tile N
    (`tile0={"label": ...}`), e.g. to choose each tile's action."""
    areas = list(menu.areas.all())
    data = {
        "name": menu.name,
        "role": menu.role,
        "segment": menu.segment_id or "",
        "priority": menu.priority,
        "size": f"{menu.width}x{menu.height}",
        "width": menu.width,
        "height": menu.height,
        "chat_bar_text": menu.chat_bar_text,
        "opens_by_default": "on" if menu.opens_by_default else "",
        "alias_id": menu.alias_id,
        "areas-TOTAL_FORMS": len(areas),
        "areas-INITIAL_FORMS": len(areas),
        "areas-MIN_NUM_FORMS": 0,
        "areas-MAX_NUM_FORMS": 1000,
    }
    for index, area in enumerate(areas):
        data[f"areas-{index}-id"] = area.pk
        data[f"areas-{index}-menu"] = menu.pk
        for field in AREA_FORM_FIELDS:
            data[f"areas-{index}-{field}"] = getattr(area, field)
        for field in ("procedure", "switch_to"):
            data[f"areas-{index}-{field}"] = getattr(area, f"{field}_id") or ""
        for field, value in tiles.get(f"tile{index}", {}).items():
            data[f"areas-{index}-{field}"] = value
    return {key: value for key, value in data.items() if value is not None}
