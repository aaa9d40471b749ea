"""Writes for residents: profile attributes and receive categories (受信設定), each change kept in history;
segments, each change audit-logged."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from audit import actions as audit_actions
from audit.services import audit_record
from residents.models import (
    Attribute,
    Category,
    ProfileChange,
    Resident,
    ResidentAttributeValue,
    ResidentCategory,
    Segment,
)
from residents.selectors import (
    TEXT_VALUE_MAX,
    ProfileValue,
    choices_in_order,
    number_to_json,
    resident_attribute_values,
    resident_category_keys,
)

NUMBER_DECIMAL_PLACES = ResidentAttributeValue._meta.get_field("value_number").decimal_places
NUMBER_LIMIT = Decimal(10) ** (
    ResidentAttributeValue._meta.get_field("value_number").max_digits - NUMBER_DECIMAL_PLACES
)


def _check_source(source: str) -> None:
    if source not in ProfileChange.Source.values:
        raise ValueError(f"unknown profile change source {source!r}; known: {', '.join(ProfileChange.Source.values)}")


def _choice_values(attribute: Attribute) -> list[str]:
    return [choice.get("value") for choice in attribute.choices or []]


def attribute_value_parse(attribute: Attribute, raw) -> ProfileValue:
    """The profile value for `raw` (None, "" and [] clear it); ValidationError saying what is wrong."""
    if raw is None or raw == "" or raw == [] or raw == ():
        return None
    kind = attribute.kind
    if kind == Attribute.Kind.SINGLE_CHOICE:
        if not isinstance(raw, str):
            raise ValidationError(_("選択肢の値を1つ指定してください。"))
        if raw not in _choice_values(attribute):
            raise ValidationError(_("「%(value)s」は選択肢にありません。") % {"value": raw[:40]})
        return raw
    if kind == Attribute.Kind.MULTIPLE_CHOICE:
        if not isinstance(raw, (list, tuple)) or not all(isinstance(item, str) for item in raw):
            raise ValidationError(_("選択肢の値の一覧で指定してください。"))
        unknown = [item[:40] for item in raw if item not in _choice_values(attribute)]
        if unknown:
            raise ValidationError(_("「%(values)s」は選択肢にありません。") % {"values": "、".join(unknown)})
        return choices_in_order(attribute, raw)
    if kind == Attribute.Kind.NUMBER:
        return _number_parse(raw)
    if kind == Attribute.Kind.DATE:
        return _date_parse(raw)
    if not isinstance(raw, str):
        raise ValidationError(_("文字で指定してください。"))
    text = raw.strip()
    if len(text) > TEXT_VALUE_MAX:
        raise ValidationError(_("%(max)s文字以内にしてください。") % {"max": TEXT_VALUE_MAX})
    return text or None


def _number_parse(raw) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, Decimal, str)):
        raise ValidationError(_("数値で指定してください。"))
    try:
        number = Decimal(str(raw).strip().replace(",", ""))
    except InvalidOperation:
        raise ValidationError(_("数値で指定してください。")) from None
    if not number.is_finite() or abs(number) >= NUMBER_LIMIT:
        raise ValidationError(_("数値は絶対値が %(limit)s 未満にしてください。") % {"limit": f"{NUMBER_LIMIT:,}"})
    if number != number.quantize(Decimal(1).scaleb(-NUMBER_DECIMAL_PLACES)):
        raise ValidationError(_("小数点以下は%(places)s桁までにしてください。") % {"places": NUMBER_DECIMAL_PLACES})
    return number_to_json(number)


def _date_parse(raw) -> str:
    if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
        return raw.isoformat()
    if isinstance(raw, str):
        try:
            return dt.date.fromisoformat(raw.strip()).isoformat()
        except ValueError:
            pass
    raise ValidationError(_("日付（YYYY-MM-DD）で指定してください。"))


def _rows_replace(resident: Resident, attribute: Attribute, value: ProfileValue) -> None:
    ResidentAttributeValue.objects.filter(resident=resident, attribute=attribute).delete()
    if value is None:
        return
    if attribute.kind == Attribute.Kind.MULTIPLE_CHOICE:
        rows = [ResidentAttributeValue(resident=resident, attribute=attribute, value_text=item) for item in value]
    elif attribute.kind == Attribute.Kind.NUMBER:
        rows = [ResidentAttributeValue(resident=resident, attribute=attribute, value_number=Decimal(str(value)))]
    elif attribute.kind == Attribute.Kind.DATE:
        rows = [ResidentAttributeValue(resident=resident, attribute=attribute, value_date=dt.date.fromisoformat(value))]
    else:
        rows = [ResidentAttributeValue(resident=resident, attribute=attribute, value_text=value)]
    ResidentAttributeValue.objects.bulk_create(rows)


@transaction.atomic
def resident_attributes_set(
    *, resident: Resident, values: dict, source: str, source_detail: str = "", now: dt.datetime
) -> list[str]:
    """Set the resident's attributes {attribute key: value}; the keys whose value changed.

    A value of None, "" or [] removes the attribute's value. Every value is checked first: with
    any problem nothing is written and the ValidationError lists them all. Each change is recorded
    in ProfileChange (`source_detail`: e.g. a receipt number, never an answer).
    """
    _check_source(source)
    attributes = {attribute.key: attribute for attribute in Attribute.objects.filter(key__in=list(values))}
    problems = []
    unknown = [str(key)[:40] for key in values if key not in attributes]
    if unknown:
        problems.append(_("住民の属性にないキーです：%(keys)s") % {"keys": "、".join(unknown)})
    parsed = {}
    for key, raw in values.items():
        attribute = attributes.get(key)
        if attribute is None:
            continue
        try:
            parsed[key] = attribute_value_parse(attribute, raw)
        except ValidationError as error:
            problems.append(
                _("住民の属性「%(label)s」：%(problem)s")
                % {"label": attribute.label, "problem": " ".join(error.messages)}
            )
    if problems:
        raise ValidationError(problems)
    # One writer per resident at a time, so the history's "previous" values are exact.
    Resident.objects.select_for_update().filter(pk=resident.pk).exists()
    current = resident_attribute_values(resident, attributes.values())
    changed = []
    for key, value in parsed.items():
        previous = current.get(key)
        if previous == value:
            continue
        attribute = attributes[key]
        _rows_replace(resident, attribute, value)
        _change_record(resident, attribute, previous, value, source, source_detail, now)
        changed.append(key)
    return changed


@transaction.atomic
def resident_categories_set(
    *, resident: Resident, category_keys, source: str, source_detail: str = "", now: dt.datetime
) -> bool:
    """Make `category_keys` the categories the resident receives (受信設定); whether anything changed.

    Choosing (even choosing none) ends "receives every category": receive_settings_at is set. The
    history's previous value is None while the resident had never chosen.
    """
    _check_source(source)
    if isinstance(category_keys, str) or not all(isinstance(key, str) for key in category_keys):
        raise ValidationError(_("受信カテゴリはキーの一覧で指定してください。"))
    wanted = list(dict.fromkeys(category_keys))
    categories = list(Category.objects.filter(key__in=wanted).order_by("position", "id"))
    unknown = sorted(set(wanted) - {category.key for category in categories})
    if unknown:
        raise ValidationError(
            _("配信カテゴリにないキーです：%(keys)s") % {"keys": "、".join(key[:40] for key in unknown)}
        )
    locked = Resident.objects.select_for_update().get(pk=resident.pk)
    current = resident_category_keys(locked)
    previous = current if locked.receive_settings_at is not None else None
    value = [category.key for category in categories]
    if previous == value:
        return False
    ResidentCategory.objects.filter(resident=locked).exclude(category__in=categories).delete()
    ResidentCategory.objects.bulk_create(
        ResidentCategory(resident=locked, category=category) for category in categories if category.key not in current
    )
    Resident.objects.filter(pk=locked.pk).update(receive_settings_at=now)
    resident.receive_settings_at = now
    _change_record(locked, None, previous, value, source, source_detail, now)
    return True


def _change_record(resident, attribute, previous, value, source: str, source_detail: str, now) -> None:
    """One line of the profile's history (attribute None: the receive categories)."""
    ProfileChange.objects.create(
        resident=resident,
        attribute=attribute,
        previous=previous,
        value=value,
        source=source,
        source_detail=source_detail[:200],
        changed_at=now,
    )


# --------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------


@transaction.atomic
def segment_save(*, segment: Segment, actor, changed_fields: list[str], request=None) -> Segment:
    """Save a segment a staff member created or changed, and audit-log it.

    A segment decides who receives a broadcast, so the log keeps who changed it, when, and which
    fields (the rules themselves stay on the segment: a rule tree is no short code). Saving
    without a change records nothing.
    """
    created = segment.pk is None
    if created:
        segment.created_by = actor
        previous_department_id = None
    else:
        previous_department_id = Segment.objects.filter(pk=segment.pk).values_list("department_id", flat=True).first()
    segment.save()
    if not (created or changed_fields):
        return segment
    action = audit_actions.SEGMENT_CREATE if created else audit_actions.SEGMENT_CHANGE
    details = {"name": segment.name, "fields": sorted(changed_fields)}
    departments = [segment.department_id]
    if not created and previous_department_id != segment.department_id:
        # Moved: the department it left sees the change in its log too (city-wide entries are
        # seen by city-wide auditors, who see every department's anyway).
        details["previous_department_id"] = previous_department_id
        if previous_department_id is not None:
            departments.append(previous_department_id)
    for department_id in departments:
        audit_record(actor=actor, action=action, obj=segment, department=department_id, details=details, request=request)
    return segment


@transaction.atomic
def segment_delete(*, segment: Segment, actor, request=None) -> None:
    """Delete a segment and audit-log it (both or neither: a segment a broadcast uses is protected)."""
    audit_record(
        actor=actor,
        action=audit_actions.SEGMENT_DELETE,
        obj=segment,
        details={"name": segment.name},
        request=request,
    )
    segment.delete()
