"""Reads for residents: their profile (attribute values, receive categories) and its history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.utils.translation import gettext as _

from residents.models import Attribute, Category, ProfileChange, Resident, ResidentAttributeValue

# A profile value as stored in ProfileChange and compared for changes: str (single choice, text),
# list[str] in the attribute's choice order (multiple choice), int or float (number),
# "YYYY-MM-DD" (date); None when the resident has no value.
ProfileValue = str | list | int | float | None
TEXT_VALUE_MAX = ResidentAttributeValue._meta.get_field("value_text").max_length


def number_to_json(number: Decimal) -> int | float:
    return int(number) if number == number.to_integral_value() else float(number)


def resident_attribute_values(resident: Resident, attributes=None) -> dict[str, ProfileValue]:
    """The resident's current value of each attribute that has one, by attribute key."""
    rows = ResidentAttributeValue.objects.filter(resident=resident).select_related("attribute")
    if attributes is not None:
        rows = rows.filter(attribute__in=list(attributes))
    values: dict[str, ProfileValue] = {}
    multiple: dict[str, Attribute] = {}
    for row in rows:
        attribute = row.attribute
        if attribute.kind == Attribute.Kind.MULTIPLE_CHOICE:
            values.setdefault(attribute.key, []).append(row.value_text)
            multiple[attribute.key] = attribute
        elif attribute.kind == Attribute.Kind.NUMBER:
            values[attribute.key] = number_to_json(row.value_number) if row.value_number is not None else None
        elif attribute.kind == Attribute.Kind.DATE:
            values[attribute.key] = row.value_date.isoformat() if row.value_date is not None else None
        else:
            values[attribute.key] = row.value_text
    for key, attribute in multiple.items():
        values[key] = choices_in_order(attribute, values[key])
    return values


def choices_in_order(attribute: Attribute, chosen) -> list[str]:
    """The chosen values, once each, in the order of the attribute's choices."""
    order = {choice.get("value"): index for index, choice in enumerate(attribute.choices or [])}
    return sorted(set(chosen), key=lambda value: (order.get(value, len(order)), value))


def resident_category_keys(resident: Resident) -> list[str]:
    """The keys of the categories the resident chose, in the categories' order."""
    return list(
        Category.objects.filter(resident_links__resident=resident)
        .order_by("position", "id")
        .values_list("key", flat=True)
    )


def attribute_value_text(attribute: Attribute, value: ProfileValue) -> str:
    """A profile value in words: choice labels instead of their values."""
    if value is None or value == [] or value == "":
        return ""
    labels = {choice.get("value"): choice.get("label") or choice.get("value") for choice in attribute.choices or []}
    if attribute.kind == Attribute.Kind.MULTIPLE_CHOICE and isinstance(value, list):
        return "、".join(str(labels.get(item, item)) for item in value)
    if attribute.kind == Attribute.Kind.SINGLE_CHOICE:
        return str(labels.get(value, value))
    if attribute.kind == Attribute.Kind.DATE and isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class ProfileAttribute:
    attribute: Attribute
    value: ProfileValue
    text: str


@dataclass(frozen=True)
class ResidentProfile:
    attributes: tuple[ProfileAttribute, ...]
    categories: tuple[Category, ...]
    # The resident never chose (受信設定): they receive every category.
    receives_all_categories: bool
    receive_settings_at: dt.datetime | None

    @property
    def categories_text(self) -> str:
        if self.receives_all_categories:
            return _("すべて（未設定）")
        return "、".join(category.name for category in self.categories) or _("なし")


def resident_profile(resident: Resident) -> ResidentProfile:
    """What staff see of a resident's profile: every attribute with a value, and the receive categories."""
    values = resident_attribute_values(resident)
    attributes = tuple(
        ProfileAttribute(attribute, values[attribute.key], attribute_value_text(attribute, values[attribute.key]))
        for attribute in Attribute.objects.filter(key__in=list(values))
    )
    categories = tuple(Category.objects.filter(resident_links__resident=resident).order_by("position", "id"))
    return ResidentProfile(
        attributes=attributes,
        categories=categories,
        receives_all_categories=resident.receive_settings_at is None,
        receive_settings_at=resident.receive_settings_at,
    )


def resident_profile_changes(resident: Resident, *, limit: int = 50) -> list[ProfileChange]:
    """The latest changes of the resident's profile, newest first."""
    return list(ProfileChange.objects.filter(resident=resident).select_related("attribute")[:limit])
