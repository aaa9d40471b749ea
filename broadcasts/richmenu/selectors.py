"""Reads for the rich-menu admin."""

from __future__ import annotations

import datetime as dt

from django.db.models import Sum

from broadcasts.richmenu.models import RichMenu, RichMenuTapCount


def rich_menu_tap_table(*, menu: RichMenu, first_day: dt.date, last_day: dt.date) -> dict:
    """Taps per tile and day (newest day first), with per-tile totals, for the stats page."""
    areas = list(menu.areas.order_by("position", "id"))
    counts = {
        (row["area_id"], row["day"]): row["count"]
        for row in RichMenuTapCount.objects.filter(area__menu=menu, day__range=(first_day, last_day))
        .values("area_id", "day")
        .annotate(count=Sum("count"))
    }
    days = [last_day - dt.timedelta(days=offset) for offset in range((last_day - first_day).days + 1)]
    rows = [(day, [counts.get((area.pk, day), 0) for area in areas]) for day in days]
    totals = [sum(counts.get((area.pk, day), 0) for day in days) for area in areas]
    return {"areas": areas, "rows": rows, "totals": totals, "total": sum(totals)}
