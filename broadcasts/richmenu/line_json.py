"""A RichMenu and its areas as LINE's rich menu object (Messaging API reference, "Rich menu object").

Every tile is countable: web links open our tracking redirect (`taps.tracking_url`), every other tile
sends the signed postback `taps.tap_data`, and the tap routing looks the tile's action up when it is
tapped. What the resident sees in the chat (`displayText`) is the procedure's name or the keyword.
"""

from __future__ import annotations

from django.utils.translation import gettext as _

from broadcasts.richmenu import taps
from broadcasts.richmenu.layout import Bounds
from broadcasts.richmenu.models import RichMenu, RichMenuArea

LABEL_MAX = 20  # LINE: action label of a rich menu area
DISPLAY_TEXT_MAX = 300
NAME_MAX = 300


class RichMenuJsonError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems


def _label(area: RichMenuArea) -> str:
    # Staff may break a tile's label over lines for the image; the screen reader gets one line.
    return " ".join(area.label.split())[:LABEL_MAX]


def _postback(area: RichMenuArea, display_text: str = "") -> dict:
    action = {"type": "postback", "label": _label(area), "data": taps.tap_data(area.pk)}
    if display_text:
        action["displayText"] = display_text[:DISPLAY_TEXT_MAX]
    return action


def area_action(area: RichMenuArea) -> dict:
    """LINE's action object for one tile. Incomplete tiles are for `services.rich_menu_problems` to
    explain; only a tab switch that cannot be written at all raises RichMenuJsonError."""
    kind = RichMenuArea.ActionType
    if area.action_type == kind.PROCEDURE:
        return _postback(area, area.procedure.name if area.procedure else "")
    if area.action_type == kind.MESSAGE:
        return _postback(area, area.text)
    if area.action_type == kind.DATETIME_PICKER:
        return {
            "type": "datetimepicker",
            "label": _label(area),
            "data": taps.tap_data(area.pk),
            "mode": area.datetime_mode or "date",
        }
    if area.action_type == kind.SWITCH:
        if area.switch_to is None or not area.switch_to.alias_id:
            raise RichMenuJsonError(
                [_("「%(name)s」の切り替え先に、エイリアスIDのあるメニューを選んでください。") % {"name": area.label}]
            )
        return {
            "type": "richmenuswitch",
            "label": _label(area),
            "richMenuAliasId": area.switch_to.alias_id,
            "data": taps.tap_data(area.pk),
        }
    if area.action_type == kind.URI:
        return {"type": "uri", "label": _label(area), "uri": taps.tracking_url(area)}
    return _postback(area)  # a plain postback: the tap routing answers it


def menu_areas(menu: RichMenu) -> list[RichMenuArea]:
    return list(menu.areas.select_related("procedure", "switch_to").order_by("position", "id"))


def area_bounds(area: RichMenuArea) -> Bounds:
    return Bounds(area.x, area.y, area.width, area.height)


def rich_menu_object(menu: RichMenu, areas: list[RichMenuArea] | None = None) -> dict:
    """The JSON LINE's create/validate endpoints take; RichMenuJsonError lists every tile to fix."""
    areas = menu_areas(menu) if areas is None else areas
    problems, objects = [], []
    for area in areas:
        try:
            objects.append({"bounds": area_bounds(area).as_line(), "action": area_action(area)})
        except RichMenuJsonError as error:
            problems += error.problems
    if problems:
        raise RichMenuJsonError(problems)
    return {
        "size": {"width": menu.width, "height": menu.height},
        "selected": menu.opens_by_default,
        "name": menu.name[:NAME_MAX],
        "chatBarText": menu.chat_bar_text,
        "areas": objects,
    }
