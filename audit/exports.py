"""The audit log as CSV: UTF-8 with a BOM (Excel opens it correctly), streamed row by row."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator

from django.utils import timezone

from audit.actions import label

BOM = "\ufeff"
HEADER = ["日時", "職員", "操作", "操作コード", "対象の種類", "対象ID", "部署", "詳細", "IPアドレス", "ブラウザ"]
# A cell starting with one of these is a formula to Excel and friends (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


class _Line:
    """A file-like target for csv.writer that hands back each line."""

    def write(self, value: str) -> str:
        return value


def entry_row(entry) -> list[str]:
    created = timezone.localtime(entry.created_at).strftime("%Y-%m-%d %H:%M:%S")
    return [
        neutralise(value)
        for value in (
            created,
            entry.actor_display,
            label(entry.action),
            entry.action,
            entry.object_type,
            entry.object_id,
            entry.department.name if entry.department_id else "",
            json.dumps(entry.details, ensure_ascii=False, sort_keys=True) if entry.details else "",
            entry.ip or "",
            entry.user_agent,
        )
    ]


def entries_csv(entries: Iterable) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield BOM + writer.writerow(HEADER)
    if hasattr(entries, "select_related"):
        entries = entries.select_related("department").iterator(chunk_size=2000)
    for entry in entries:
        yield writer.writerow(entry_row(entry))
