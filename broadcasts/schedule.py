"""When a broadcast is sent: its occurrences, in Tokyo time (pure Python, no database).

A rule starts at `start` (the first send, also the time of day of every repetition):

* none: once, at `start`;
* daily: every day;
* weekly: on the given weekdays (0 = Monday … 6 = Sunday);
* monthly: on the day of the month of `start`; a month without that day (the 31st in April,
  the 30th in February) sends on its last day, so "monthly on the 31st" means every month end.

Dates listed in `excluded` (年末年始 …) are skipped; nothing is sent after the day `until`.
Tokyo has no daylight saving time, so a wall-clock time always exists exactly once.
"""

from __future__ import annotations

import calendar
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

TOKYO = ZoneInfo("Asia/Tokyo")
NONE, DAILY, WEEKLY, MONTHLY = "none", "daily", "weekly", "monthly"
# Enough for ten years of daily sends with every other day excluded; a rule that finds nothing
# further ahead has effectively ended.
_MAX_CANDIDATES = 4000


@dataclass(frozen=True)
class Rule:
    start: datetime
    recurrence: str = NONE
    weekdays: Collection[int] = ()
    until: date | None = None
    excluded: Collection[date] = field(default_factory=frozenset)

    def __post_init__(self):
        if self.start.tzinfo is None:
            raise ValueError("start must be an aware datetime")
        if self.recurrence not in (NONE, DAILY, WEEKLY, MONTHLY):
            raise ValueError(f"unknown recurrence {self.recurrence!r}")


def _monthly_day(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _candidate_dates(rule: Rule, first: date):
    """Dates on which the rule may send, from `first` on (exclusions and `until` not applied)."""
    if rule.recurrence == MONTHLY:
        day = rule.start.astimezone(TOKYO).day
        year, month = first.year, first.month
        while True:
            candidate = _monthly_day(year, month, day)
            if candidate >= first:
                yield candidate
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    else:
        weekdays = set(rule.weekdays) if rule.recurrence == WEEKLY else set(range(7))
        if not weekdays:
            return
        current = first
        while True:
            if current.weekday() in weekdays:
                yield current
            current += timedelta(days=1)


def occurrences_from(rule: Rule, moment: datetime):
    """The rule's occurrences at or after `moment` (aware), in order."""
    local_start = rule.start.astimezone(TOKYO)
    at = time(local_start.hour, local_start.minute, local_start.second)
    excluded = set(rule.excluded)
    if rule.recurrence == NONE:
        if rule.start >= moment and local_start.date() not in excluded:
            yield rule.start
        return
    earliest = max(moment, rule.start)
    first = earliest.astimezone(TOKYO).date()
    for count, day in enumerate(_candidate_dates(rule, first)):
        if count >= _MAX_CANDIDATES or (rule.until is not None and day > rule.until):
            return
        if day in excluded:
            continue
        occurrence = datetime.combine(day, at, tzinfo=TOKYO)
        if occurrence >= earliest:
            yield occurrence


def first_occurrence(rule: Rule, *, not_before: datetime) -> datetime | None:
    """The first send at or after `not_before`; None when the rule sends nothing more."""
    return next(occurrences_from(rule, not_before), None)


def next_occurrence(rule: Rule, *, after: datetime) -> datetime | None:
    """The first send strictly after `after`; None when the rule sends nothing more."""
    return next((each for each in occurrences_from(rule, after) if each > after), None)
