"""Checks and normalisation of what residents type. Pure functions, no I/O.

Each check returns `(value, None)` when the input is acceptable (value is the
normalised form that gets stored) or `(None, (code, params))` with an error
message code. Error params never contain the raw input.

Normalisation is idempotent: a stored value passes its own check unchanged,
which is what lets the engine re-validate answers before submitting.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, timedelta

import jpholiday

Error = tuple[str, dict]

# Dashes residents type instead of "-" (full-width, Japanese long vowel mark, minus signs).
_DASHES = str.maketrans(dict.fromkeys("‐‑‒–—―−－ーｰ", "-"))
_SPACES = re.compile(r"\s+")


def nfkc(text: str) -> str:
    """Full-width digits, letters and symbols to half-width; half-width katakana to full-width."""
    return unicodedata.normalize("NFKC", text)


def normalize_typed(text: str) -> str:
    """Loose form for comparing typed words with labels and keywords."""
    return _SPACES.sub(" ", nfkc(text)).strip().lower()


# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------


def check_text(text: str, max_length: int) -> tuple[str | None, Error | None]:
    value = text.strip()
    if not value:
        return None, ("error.empty", {})
    if len(value) > max_length:
        return None, ("error.too_long", {"max": max_length})
    return value, None


_PHONE_DIGITS = re.compile(r"0\d{9,10}")


def check_phone(text: str) -> tuple[str | None, Error | None]:
    """Japanese phone numbers: 10 digits (landline, 0120) or 11 (mobile, 050, 0800).

    Hyphens are optional and kept where the resident put them; +81 is turned into 0.
    """
    value = nfkc(text).translate(_DASHES).strip()
    value = re.sub(r"[\s()]", "", value)
    if value.startswith("+81"):
        value = "0" + value[3:].lstrip("-")
    value = re.sub(r"-{2,}", "-", value).strip("-")
    digits = value.replace("-", "")
    if not _PHONE_DIGITS.fullmatch(digits) or not re.fullmatch(r"[0-9-]+", value):
        return None, ("error.bad_format", {"format": "phone"})
    if len(digits) == 11 and not digits.startswith(("070", "080", "090", "050", "060", "020", "0800")):
        return None, ("error.bad_format", {"format": "phone"})
    return value, None


def check_postal_code(text: str) -> tuple[str | None, Error | None]:
    value = nfkc(text).translate(_DASHES).strip().lstrip("〒").strip()
    match = re.fullmatch(r"(\d{3})-?(\d{4})", value)
    if not match:
        return None, ("error.bad_format", {"format": "postal_code"})
    return f"{match.group(1)}-{match.group(2)}", None


_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+")


def check_email(text: str) -> tuple[str | None, Error | None]:
    value = nfkc(text).strip()
    if len(value) > 254 or not _EMAIL.fullmatch(value) or ".." in value:
        return None, ("error.bad_format", {"format": "email"})
    return value, None


def to_katakana(text: str) -> str:
    """Hiragana and half-width katakana to full-width katakana; spaces to one full-width space."""
    # NFKC only for half-width katakana and spaces: it would also turn other symbols into ASCII.
    text = "".join(unicodedata.normalize("NFKC", ch) if "\uff61" <= ch <= "\uff9f" else ch for ch in text)
    text = unicodedata.normalize("NFC", text)  # join voiced marks left over from half-width kana
    converted = "".join(chr(ord(ch) + 0x60) if "ぁ" <= ch <= "ゖ" else ch for ch in text)
    converted = converted.replace("ゝ", "ヽ").replace("ゞ", "ヾ")
    return _SPACES.sub("\u3000", converted).strip()


_KATAKANA = re.compile(r"[\u30a1-\u30fa\u30fc\u30fd\u30fe・\u3000]+")


def check_katakana(text: str) -> tuple[str | None, Error | None]:
    value = to_katakana(text)
    if not value or not _KATAKANA.fullmatch(value):
        return None, ("error.bad_format", {"format": "katakana"})
    return value, None


def check_regex(text: str, pattern: str, hint: str) -> tuple[str | None, Error | None]:
    value = text.strip()
    try:
        ok = re.fullmatch(pattern, value) is not None
    except re.error:
        ok = False
    if not ok:
        return None, ("error.bad_format", {"format": "regex", "hint": hint})
    return value, None


FORMAT_CHECKS = {
    "phone": check_phone,
    "postal_code": check_postal_code,
    "email": check_email,
    "katakana": check_katakana,
}


def check_short_text(text: str, options: dict) -> tuple[str | None, Error | None]:
    max_length = options.get("max_length") or 100
    value, error = check_text(text, max_length)
    if error:
        return None, error
    text_format = options.get("format") or "none"
    if text_format == "regex":
        return check_regex(value, options.get("pattern") or "", options.get("pattern_hint") or "")
    check = FORMAT_CHECKS.get(text_format)
    if check is None:
        return value, None
    value, error = check(value)
    if error is None and len(value) > max_length:
        return None, ("error.too_long", {"max": max_length})
    return value, error


# --------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------


def parse_number(text: str, *, integer: bool, unit: str = "") -> tuple[int | float | None, Error | None]:
    value = nfkc(text).strip().replace(",", "").replace("，", "")
    value = value.translate(_DASHES).replace(" ", "")
    if unit and value.endswith(nfkc(unit)):
        value = value[: -len(nfkc(unit))]
    if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", value):
        return None, ("error.not_a_number", {})
    number = float(value)
    if not math.isfinite(number) or abs(number) > 1e15:
        return None, ("error.not_a_number", {})
    if number.is_integer() and ("." not in value or integer):
        return int(number), None
    if integer:
        return None, ("error.not_an_integer", {})
    return number, None


def check_number(number, options: dict) -> Error | None:
    """Range and integer checks on an already parsed (or stored) number."""
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        return "error.not_a_number", {}
    if options.get("integer", True) and not isinstance(number, int):
        return "error.not_an_integer", {}
    minimum, maximum = options.get("min"), options.get("max")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        return "error.out_of_range", {"min": minimum, "max": maximum, "unit": options.get("unit") or ""}
    return None


# --------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------

_DATE_FULL = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_DATE_SHORT = re.compile(r"(\d{1,2})\s*[/月]\s*(\d{1,2})\s*日?")


def parse_date(text: str, today: date, *, future: bool = True) -> date | None:
    """Typed dates: 2026-12-01, 2026/12/1, 2026年12月1日, 12/1, 12月1日 (full-width digits too).

    Without a year the date is taken in the current year, or the next one when it
    has already passed and only future dates make sense (`future`).
    """
    value = nfkc(str(text)).strip()
    value = re.sub(r"[（(][^）)]*[）)]$", "", value).strip()  # a trailing weekday like （火）
    match = _DATE_FULL.fullmatch(value)
    try:
        if match:
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        match = _DATE_SHORT.fullmatch(value)
        if match:
            candidate = date(today.year, int(match.group(1)), int(match.group(2)))
            if future and candidate < today:
                candidate = date(today.year + 1, candidate.month, candidate.day)
            return candidate
    except ValueError:
        return None
    return None


def date_bounds(options: dict, today: date) -> tuple[date | None, date | None]:
    min_days, max_days = options.get("min_days"), options.get("max_days")
    earliest = today + timedelta(days=min_days) if min_days is not None else None
    latest = today + timedelta(days=max_days) if max_days is not None else None
    return earliest, latest


def check_date(day: date, options: dict, today: date) -> Error | None:
    earliest, latest = date_bounds(options, today)
    weekdays = options.get("weekdays")
    weekdays = list(range(7)) if weekdays is None else list(weekdays)
    params = {
        "min": earliest.isoformat() if earliest else None,
        "max": latest.isoformat() if latest else None,
        "weekdays": weekdays,
    }
    if earliest and day < earliest:
        return "error.date_not_allowed", {**params, "reason": "too_early"}
    if latest and day > latest:
        return "error.date_not_allowed", {**params, "reason": "too_late"}
    if day.isoformat() in (options.get("excluded_dates") or []):
        return "error.date_not_allowed", {**params, "reason": "excluded"}
    if day.weekday() not in weekdays:
        return "error.date_not_allowed", {**params, "reason": "weekday"}
    if not options.get("allow_holidays", True) and jpholiday.is_holiday(day):
        return "error.date_not_allowed", {**params, "reason": "holiday"}
    return None


def first_allowed_date(options: dict, today: date) -> date | None:
    """The earliest acceptable date from today (or the lower bound), looking a year ahead."""
    earliest, latest = date_bounds(options, today)
    day = earliest or today
    for _ in range(400):
        if latest and day > latest:
            return None
        if check_date(day, options, today) is None:
            return day
        day += timedelta(days=1)
    return None
