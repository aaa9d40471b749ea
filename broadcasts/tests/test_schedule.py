"""Occurrences of repeating broadcasts in Tokyo time (broadcasts/schedule.py, no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from broadcasts.schedule import TOKYO, Rule, first_occurrence, next_occurrence, occurrences_from


def jst(*args) -> datetime:
    return datetime(*args, tzinfo=TOKYO)


def take(rule: Rule, moment: datetime, count: int) -> list[datetime]:
    found = []
    for occurrence in occurrences_from(rule, moment):
        found.append(occurrence)
        if len(found) == count:
            break
    return found


def test_weekly_tuesday_evening_skips_the_new_year_holidays():
    new_year = [date(2026, 12, 29), date(2026, 12, 30), date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 2)]
    rule = Rule(start=jst(2026, 12, 1, 18, 0), recurrence="weekly", weekdays=[1], excluded=new_year)

    assert take(rule, jst(2026, 12, 20), 3) == [jst(2026, 12, 22, 18), jst(2027, 1, 5, 18), jst(2027, 1, 12, 18)]


def test_next_occurrence_is_strictly_after_and_keeps_the_wall_clock_time_in_utc():
    rule = Rule(start=jst(2026, 4, 7, 18, 0), recurrence="weekly", weekdays=[1, 4])
    after = next_occurrence(rule, after=jst(2026, 4, 7, 18, 0))

    assert after == jst(2026, 4, 10, 18, 0)
    assert after.astimezone(UTC) == datetime(2026, 4, 10, 9, 0, tzinfo=UTC)


def test_monthly_on_the_31st_sends_on_each_month_end():
    rule = Rule(start=jst(2026, 1, 31, 9, 0), recurrence="monthly")

    assert take(rule, jst(2026, 1, 1), 5) == [
        jst(2026, 1, 31, 9),
        jst(2026, 2, 28, 9),
        jst(2026, 3, 31, 9),
        jst(2026, 4, 30, 9),
        jst(2026, 5, 31, 9),
    ]
    assert next_occurrence(Rule(start=jst(2028, 1, 31, 9), recurrence="monthly"), after=jst(2028, 2, 1)) == jst(
        2028, 2, 29, 9
    )


def test_nothing_is_sent_after_the_until_date():
    rule = Rule(start=jst(2026, 6, 1, 7, 30), recurrence="daily", until=date(2026, 6, 3))

    assert list(occurrences_from(rule, jst(2026, 5, 1))) == [
        jst(2026, 6, 1, 7, 30),
        jst(2026, 6, 2, 7, 30),
        jst(2026, 6, 3, 7, 30),
    ]
    assert next_occurrence(rule, after=jst(2026, 6, 3, 7, 30)) is None


def test_a_one_time_broadcast_occurs_once_and_not_in_the_past():
    rule = Rule(start=jst(2026, 5, 5, 10))

    assert first_occurrence(rule, not_before=jst(2026, 5, 1)) == jst(2026, 5, 5, 10)
    assert first_occurrence(rule, not_before=jst(2026, 5, 6)) is None
    assert next_occurrence(rule, after=jst(2026, 5, 5, 10)) is None


def test_first_occurrence_starts_at_the_start_even_when_asked_earlier():
    rule = Rule(start=jst(2026, 3, 4, 12), recurrence="daily", excluded=[date(2026, 3, 4)])

    assert first_occurrence(rule, not_before=jst(2026, 1, 1)) == jst(2026, 3, 5, 12)


def test_a_rule_whose_every_day_is_excluded_ends():
    rule = Rule(
        start=jst(2026, 3, 2, 12),
        recurrence="weekly",
        weekdays=[0],
        until=date(2026, 3, 10),
        excluded=[date(2026, 3, 2), date(2026, 3, 9)],
    )

    assert first_occurrence(rule, not_before=jst(2026, 3, 1)) is None


def test_naive_start_is_refused():
    with pytest.raises(ValueError):
        Rule(start=datetime(2026, 1, 1, 9))  # noqa: DTZ001 - the point of the test
