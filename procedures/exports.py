"""Applications of one procedure as CSV, for auditors (issue 5, requirement 6).

The columns are defined by a django-import-export `Resource` built per export (the steps differ per
procedure): the fixed columns, one column per input step (in step order, header = the step's
Japanese label), then the computed values, then the procedure's 管理項目 (staff-only fields).
Rows are produced one at a time from `QuerySet.iterator(chunk_size=2000)` and written with the
csv module, so an export of 100k applications never holds more than one chunk in memory
(import-export's own `export()` builds a whole tablib Dataset, which is exactly what must not
happen here: only `export_resource()`, one row, is used).

100k applications must be written in under 10 s (requirement 11, `bench/export.py`), so a row is a
plain tuple from `values_list()` (no model instances), everything that is the same for every row
is worked out once per export when the columns are built (which step each version has, units,
version numbers, the reveal permission), the cell of each distinct choice, number or date answer
is formatted once, and the stream goes out in blocks of lines rather than a piece per row.

- Answers are shown with `procedures.texts.answer_text` (the shared words for an answer; multiple
  choices come out joined with 「、」).
- Sensitive steps are shown only to users who may reveal sensitive answers of the application
  (staff.policy), otherwise as ●●●●.
- Images are links to the access-checked image view (procedures/attachments.py): whoever opens
  one must be allowed to see that application, so the link itself reveals nothing.
- Every cell goes through audit.exports.neutralise against CSV injection (= + - @ tab CR).
- Test applications (the simulator's) are never exported.
- Encodings: UTF-8 with a BOM (Excel opens it correctly) or CP932 (Shift_JIS as Windows has it),
  where a character that cannot be encoded becomes 〓; `unencodable_cells()` reports them beforehand.
"""

from __future__ import annotations

import codecs
import csv
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from import_export import resources
from import_export.fields import Field

from audit import actions
from audit.exports import neutralise
from audit.services import audit_record
from procedures.attachments import attachment_url
from procedures.models import Application, ApplicationStatus, Procedure, ProcedureVersion, StaffField
from procedures.selectors import version_spec_data
from procedures.spec import ProcedureSpec, SpecError, Step, parse_spec
from procedures.texts import answer_text, format_number
from staff import policy

JST = ZoneInfo("Asia/Tokyo")
CHUNK_SIZE = 2000
BLOCK_CHARS = 64 * 1024  # characters per piece of the streamed response
BOM = "\ufeff"
MASK = "●●●●"
GETA = "〓"  # what a character CP932 cannot hold becomes
UTF8 = "utf-8"
CP932 = "cp932"
ENCODINGS = (UTF8, CP932)
# How many problem cells the check lists (their total is always counted).
CHECK_LIST_LIMIT = 500

RECEIPT_NUMBER = "受付番号"
SUBMITTED_AT = "申請日時"
STATUS = "状態"
ASSIGNEE = "担当"
VERSION = "手続きの版"
LINE_USER_ID = "LINE ユーザーID"
CHANNEL = "受付方法"
FIXED_COLUMNS = (RECEIPT_NUMBER, SUBMITTED_AT, STATUS, ASSIGNEE, VERSION, LINE_USER_ID, CHANNEL)


def _geta(error: UnicodeEncodeError):
    return GETA * (error.end - error.start), error.end


codecs.register_error("procedures_export_geta", _geta)


# --------------------------------------------------------------------------
# What to export
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportFilters:
    procedure: Procedure
    status: ApplicationStatus | None = None
    date_from: date | None = None  # JST dates, both inclusive
    date_to: date | None = None
    encoding: str = UTF8

    def as_details(self) -> dict:
        """For the audit log: ids, dates and codes only."""
        return {
            "procedure": self.procedure.pk,
            "status": self.status.pk if self.status is not None else None,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "encoding": self.encoding,
        }


def export_queryset(user, filters: ExportFilters) -> QuerySet[Application]:
    """The applications `user` may export that match `filters` (never test applications), oldest first."""
    applications = policy.applications_visible_to(user, action=policy.EXPORT).filter(
        procedure=filters.procedure, is_test=False
    )
    if filters.status is not None:
        applications = applications.filter(status=filters.status)
    if filters.date_from is not None:
        applications = applications.filter(submitted_at__gte=datetime.combine(filters.date_from, time.min, tzinfo=JST))
    if filters.date_to is not None:
        end = datetime.combine(filters.date_to + timedelta(days=1), time.min, tzinfo=JST)
        applications = applications.filter(submitted_at__lt=end)
    return applications.order_by("submitted_at", "pk")


# --------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------

# What is read per application, as plain tuples from `values_list()`: building the application and
# its status as model instances cost more than formatting the whole row (bench/export.py).
PK, RECEIPT, SUBMITTED, STATUS_LABEL, ASSIGNEE_NAME, VERSION_ID, LINE_USER, CHANNEL_CODE, ANSWERS, COMPUTED, STAFF = (
    range(11)
)


def _read_fields(*, staff_values: bool) -> tuple[str, ...]:
    username = f"assignee__{get_user_model().USERNAME_FIELD}"
    fields = (
        "pk",
        "receipt_number",
        "submitted_at",
        "status__label",
        username,
        "version_id",
        "line_user_id",
        "channel",
        "answers",
        "computed",
    )
    return (*fields, "staff_values") if staff_values else fields


# Answers of these kinds repeat (a few choices, small numbers, dates): each distinct value is turned
# into text once per export. Free text is not remembered (nearly every value is new).
REPEATING_KINDS = frozenset({"single_choice", "multiple_choice", "yes_no", "number", "date"})
# Distinct values remembered per step; past it, values are formatted each time (memory stays flat).
REMEMBERED_VALUES = 1000


def _memo_key(value):
    """The key a value's cell is remembered under (may be unhashable).

    A str is its own key and a list its tuple; other values go with their type, because answer_text
    writes 1, 1.0 and True differently while they are equal as keys.
    """
    kind = type(value)
    if kind is str:
        return value
    if kind is list:
        return tuple(value)
    return kind, value


def _rememberable(value) -> bool:
    # A list is remembered only when it holds strs: in any other list, 1 and True would share a key.
    # So a list found in the memo is a list of strs (a str equals nothing but a str).
    kind = type(value)
    return kind in (str, int, float, bool) or (kind is list and all(type(item) is str for item in value))


def _answer_formatter(step: Step, *, reveal: bool, link_base: str) -> Callable[[object, int], str]:
    """(stored answer, application id) -> the cell of one step: words, a mask or an image link, neutralised."""
    if step.sensitive and not reveal:
        return lambda value, pk: MASK
    if step.kind == "image":
        return lambda value, pk: neutralise(link_base + attachment_url(pk, step.key))
    if step.kind not in REPEATING_KINDS:
        return lambda value, pk: neutralise(answer_text(step, value))
    remembered: dict = {}

    def text(value, pk) -> str:
        key = _memo_key(value)
        try:
            return remembered[key]
        except (KeyError, TypeError):  # TypeError: unhashable (a list holding a dict)
            cell = neutralise(answer_text(step, value))
        if len(remembered) < REMEMBERED_VALUES and _rememberable(value):
            remembered[key] = cell
        return cell

    return text


@dataclass
class _VersionInfo:
    number: int
    spec: ProcedureSpec


def _version_infos(procedure: Procedure, applications: QuerySet[Application]) -> dict[int, _VersionInfo]:
    """The current version and every version the rows use, by id, newest first (unparseable specs left out)."""
    wanted = set(applications.order_by().values_list("version_id", flat=True).distinct())
    if procedure.current_version_id:
        wanted.add(procedure.current_version_id)
    found = {}
    for version in ProcedureVersion.objects.filter(pk__in=wanted).select_related("procedure").order_by("-number"):
        try:
            found[version.pk] = _VersionInfo(number=version.number, spec=parse_spec(version_spec_data(version)))
        except SpecError:
            continue
    return found


def _unique(header: str, key: str, used: set[str]) -> str:
    if header in used:
        header = f"{header}（{key}）"
    while header in used:
        header += "_"
    used.add(header)
    return header


class ApplicationExportResource(resources.Resource):
    """The columns of one procedure's export; `export_resource(row)` turns one row of `read_fields` into cells.

    Everything that is the same for every row (headers, which step each version has for a column,
    units, version numbers, the reveal permission, the texts of choices) is worked out here, once
    per export; a cell then costs a few lookups.
    """

    def __init__(self, *, user, procedure: Procedure, versions: dict[int, _VersionInfo], link_base=""):
        super().__init__()
        used = set(FIXED_COLUMNS)
        self._add_fixed_fields(versions)
        self._add_answer_fields(versions, used, reveal=_may_reveal(user, procedure, versions), link_base=link_base)
        staff_fields = list(StaffField.objects.filter(procedure_id=procedure.pk).order_by("order", "id"))
        for staff_field in staff_fields:
            header = _unique(staff_field.label.strip() or staff_field.key, staff_field.key, used)
            self.fields[f"staff:{staff_field.key}"] = Field(
                column_name=header, dehydrate_method=_staff_cell(staff_field)
            )
        self.read_fields = _read_fields(staff_values=bool(staff_fields))
        self._cells = [field.dehydrate_method for field in self.fields.values()]

    def _add_fixed_fields(self, versions: dict[int, _VersionInfo]) -> None:
        channels = {value: neutralise(label) for value, label in Application.Channel.choices}
        version_numbers = {version_id: neutralise(f"第{info.number}版") for version_id, info in versions.items()}

        def submitted_at(row) -> str:
            # The same text as strftime("%Y-%m-%d %H:%M"), for less: this runs 100k times.
            return neutralise(row[SUBMITTED].astimezone(JST).isoformat(" ", "minutes")[:16])

        def channel(row) -> str:
            code = row[CHANNEL_CODE]
            return channels[code] if code in channels else neutralise(code)

        fixed = {
            "receipt_number": (RECEIPT_NUMBER, lambda row: neutralise(row[RECEIPT])),
            "submitted_at": (SUBMITTED_AT, submitted_at),
            "status": (STATUS, lambda row: neutralise(row[STATUS_LABEL])),
            "assignee": (ASSIGNEE, lambda row: neutralise(row[ASSIGNEE_NAME])),
            "version": (VERSION, lambda row: version_numbers.get(row[VERSION_ID], "")),
            "line_user_id": (LINE_USER_ID, lambda row: neutralise(row[LINE_USER])),
            "channel": (CHANNEL, channel),
        }
        for name, (header, cell) in fixed.items():
            self.fields[name] = Field(column_name=header, dehydrate_method=cell)

    def _add_answer_fields(
        self, versions: dict[int, _VersionInfo], used: set[str], *, reveal: bool, link_base: str
    ) -> None:
        """One column per input step, then per computed value, of every version (newest first: its order wins)."""
        formatters: dict[str, dict[int, Callable]] = {}  # step key -> version id -> its formatter
        units: dict[str, dict[int, str]] = {}  # computed key -> version id -> unit
        labels: dict[str, str] = {}
        computed_labels: dict[str, str] = {}
        for version_id, info in versions.items():
            for step in info.spec.steps:
                if step.is_input:
                    labels.setdefault(step.key, step.label.strip() or step.key)
                    formatter = _answer_formatter(step, reveal=reveal, link_base=link_base)
                    formatters.setdefault(step.key, {})[version_id] = formatter
            for item in info.spec.computed:
                computed_labels.setdefault(item.key, item.label.strip() or item.key)
                units.setdefault(item.key, {})[version_id] = item.unit or ""
        counts = Counter((*labels.values(), *computed_labels.values()))
        for key, label in labels.items():
            header = _unique(label if counts[label] == 1 else f"{label}（{key}）", key, used)
            self.fields[f"step:{key}"] = Field(column_name=header, dehydrate_method=_answer_cell(key, formatters[key]))
        for key, label in computed_labels.items():
            header = _unique(label if counts[label] == 1 else f"{label}（{key}）", key, used)
            self.fields[f"computed:{key}"] = Field(column_name=header, dehydrate_method=_computed_cell(key, units[key]))

    def get_export_fields(self, selected_fields=None):
        return list(self.fields.values())

    def export_resource(self, instance, selected_fields=None, **kwargs):
        """The cells of one row (a tuple of `read_fields`), every one neutralised against CSV injection."""
        return [cell(instance) for cell in self._cells]

    def get_export_headers(self, selected_fields=None):
        return [neutralise(field.column_name) for field in self.fields.values()]


def _may_reveal(user, procedure: Procedure, versions: dict[int, _VersionInfo]) -> bool:
    # Every row is of `procedure`, and its department decides: one answer for the whole export.
    if not any(step.sensitive for info in versions.values() for step in info.spec.steps):
        return False
    return policy.can(user, policy.REVEAL_SENSITIVE, Application(procedure=procedure))


def _answer_cell(key: str, formatters: dict[int, Callable]):
    def answer(row) -> str:
        formatter = formatters.get(row[VERSION_ID])
        answers = row[ANSWERS]
        if formatter is None or not isinstance(answers, dict) or key not in answers:
            return ""
        return formatter(answers[key], row[PK])

    return answer


def _computed_cell(key: str, units: dict[int, str]):
    def computed(row) -> str:
        values = row[COMPUTED]
        if not isinstance(values, dict) or values.get(key) is None:
            return ""
        return neutralise(format_number(values[key]) + units.get(row[VERSION_ID], ""))

    return computed


def _staff_cell(staff_field: StaffField):
    def staff_value(row) -> str:
        values = row[STAFF] if isinstance(row[STAFF], dict) else {}
        return neutralise(staff_field.display(values.get(staff_field.key)))

    return staff_value


# --------------------------------------------------------------------------
# Rows, lines, bytes
# --------------------------------------------------------------------------


class _Echo:
    """A file-like target for csv.writer that hands back each line."""

    def write(self, value: str) -> str:
        return value


@dataclass
class Export:
    resource: ApplicationExportResource
    applications: QuerySet[Application]
    filters: ExportFilters

    def rows(self) -> Iterator[list[str]]:
        """The header, then one row per application, streamed from the database in chunks."""
        yield self.resource.get_export_headers()
        for row in self.applications.values_list(*self.resource.read_fields).iterator(chunk_size=CHUNK_SIZE):
            yield self.resource.export_resource(row)

    def lines(self) -> Iterator[str]:
        writer = csv.writer(_Echo())
        for row in self.rows():
            yield writer.writerow(row)

    def encoded(self) -> Iterator[bytes]:
        return encode_lines(self.lines(), self.filters.encoding)


def build_export(*, user, filters: ExportFilters, request=None) -> Export:
    applications = export_queryset(user, filters)
    versions = _version_infos(filters.procedure, applications)
    link_base = request.build_absolute_uri("/").rstrip("/") if request is not None else ""
    resource = ApplicationExportResource(user=user, procedure=filters.procedure, versions=versions, link_base=link_base)
    return Export(resource, applications, filters)


def encode_lines(lines: Iterable[str], encoding: str) -> Iterator[bytes]:
    """UTF-8 starts with a BOM; CP932 starts with nothing and writes 〓 for what it cannot hold.

    Lines go out in blocks of about BLOCK_CHARS characters: a server writes each piece of a
    streamed response to the socket on its own, and one piece per application is 100k writes.
    """
    if encoding == CP932:
        block, encode = [], partial(str.encode, encoding=CP932, errors="procedures_export_geta")
    else:
        block, encode = [BOM], partial(str.encode, encoding=UTF8)
    size = 0
    for line in lines:
        block.append(line)
        size += len(line)
        if size >= BLOCK_CHARS:
            yield encode("".join(block))
            block, size = [], 0
    if size:
        yield encode("".join(block))


def application_export(*, user, filters: ExportFilters, request=None) -> Iterator[bytes]:
    """The export as bytes to stream. Recorded in the audit log first, with the row count from `.count()`.

    Recording before the stream starts means an export is logged even when the download is cut
    off; the count is what the filters matched at that moment (rows arriving during a long
    stream may make the file differ by those rows).
    """
    export = build_export(user=user, filters=filters, request=request)
    count = export.applications.count()
    audit_record(
        actor=user,
        action=actions.APPLICATION_EXPORT,
        obj=filters.procedure,
        details={"filters": filters.as_details(), "count": count},
        request=request,
    )
    return export.encoded()


@dataclass
class EncodingReport:
    rows: int = 0  # applications read
    total: int = 0  # cells with characters the encoding cannot hold
    # {"receipt_number", "column", "characters"}, at most CHECK_LIST_LIMIT
    cells: list[dict] = field(default_factory=list)


def unencodable_cells(*, user, filters: ExportFilters, encoding: str = CP932, request=None) -> EncodingReport:
    """Which cells of the export (same rows, same masking) hold characters `encoding` cannot encode.

    The check reads every row as the export would (and shows receipt numbers), so it is recorded in
    the audit log too, after it finished, marked "check" and with the row count it read.
    """
    export = build_export(user=user, filters=filters)
    report = EncodingReport()
    rows = export.rows()
    headers = next(rows)
    for row in rows:
        report.rows += 1
        for column, cell in zip(headers, row, strict=False):
            try:
                cell.encode(encoding)
            except UnicodeEncodeError:
                bad = []
                for char in cell:
                    try:
                        char.encode(encoding)
                    except UnicodeEncodeError:
                        if char not in bad:
                            bad.append(char)
                report.total += 1
                if len(report.cells) < CHECK_LIST_LIMIT:
                    report.cells.append({"receipt_number": row[0], "column": column, "characters": "".join(bad)})
    audit_record(
        actor=user,
        action=actions.APPLICATION_EXPORT,
        obj=filters.procedure,
        details={"filters": filters.as_details(), "count": report.rows, "check": encoding, "unencodable": report.total},
        request=request,
    )
    return report
