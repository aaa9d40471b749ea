"""Applications of one procedure as CSV, for auditors (issue 5, requirement 6).

The columns are defined by a django-import-export `Resource` built per export (the steps differ per
procedure): the fixed columns, one column per input step (in step order, header = the step's
Japanese label), then the computed values, then the procedure's 管理項目 (staff-only fields).
Rows are produced one at a time from `QuerySet.iterator(chunk_size=2000)` and written with the
csv module, so an export of 100k applications never holds more than one chunk in memory
(import-export's own `export()` builds a whole tablib Dataset, which is exactly what must not
happen here: only `export_resource()`, one row, is used).

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import QuerySet
from django.utils import timezone
from import_export import resources
from import_export.fields import Field

from audit import actions
from audit.exports import neutralise
from audit.services import audit_record
from procedures.attachments import attachment_url
from procedures.models import Application, ApplicationStatus, Procedure, ProcedureVersion, StaffField
from procedures.selectors import version_spec_data
from procedures.spec import SpecError, Step, parse_spec
from procedures.texts import answer_text, format_number
from staff import policy

JST = ZoneInfo("Asia/Tokyo")
CHUNK_SIZE = 2000
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
    return applications.select_related("status", "assignee").order_by("submitted_at", "pk")


# --------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------


@dataclass
class _VersionInfo:
    number: int
    steps: dict[str, Step] = field(default_factory=dict)
    computed_units: dict[str, str] = field(default_factory=dict)


def _version_infos(procedure: Procedure, applications: QuerySet[Application]) -> list[tuple[int, _VersionInfo, tuple]]:
    """(version id, info, parsed spec) for the current version and every version the rows use, newest first."""
    wanted = set(applications.order_by().values_list("version_id", flat=True).distinct())
    if procedure.current_version_id:
        wanted.add(procedure.current_version_id)
    found = []
    for version in ProcedureVersion.objects.filter(pk__in=wanted).select_related("procedure").order_by("-number"):
        try:
            spec = parse_spec(version_spec_data(version))
        except SpecError:
            continue
        info = _VersionInfo(
            number=version.number,
            steps={step.key: step for step in spec.steps if step.is_input},
            computed_units={item.key: item.unit for item in spec.computed},
        )
        found.append((version.pk, info, spec))
    return found


def _unique(header: str, key: str, used: set[str]) -> str:
    if header in used:
        header = f"{header}（{key}）"
    while header in used:
        header += "_"
    used.add(header)
    return header


class ApplicationExportResource(resources.Resource):
    """The columns of one procedure's export; `export_resource(application)` gives one row of text."""

    def __init__(self, *, user, procedure: Procedure, versions: list[tuple[int, _VersionInfo, tuple]], link_base=""):
        super().__init__()
        self.user = user
        self.link_base = link_base  # scheme and host for absolute image links ("" gives site-relative ones)
        self.procedure = procedure
        self.versions = {version_id: info for version_id, info, _spec in versions}
        used = set(FIXED_COLUMNS)
        channel_labels = {value: str(label) for value, label in Application.Channel.choices}
        fixed = {
            "receipt_number": (RECEIPT_NUMBER, lambda a: a.receipt_number),
            "submitted_at": (SUBMITTED_AT, lambda a: timezone.localtime(a.submitted_at, JST).strftime("%Y-%m-%d %H:%M")),
            "status": (STATUS, lambda a: a.status.label if a.status_id else ""),
            "assignee": (ASSIGNEE, lambda a: a.assignee.get_username() if a.assignee_id else ""),
            "version": (VERSION, self._version_number),
            "line_user_id": (LINE_USER_ID, lambda a: a.line_user_id),
            # Labels translated once: get_channel_display() per row costs a gettext and a dict build.
            "channel": (CHANNEL, lambda a, labels=channel_labels: labels.get(a.channel, a.channel)),
        }
        for name, (header, method) in fixed.items():
            self.fields[name] = Field(column_name=header, dehydrate_method=method)
        step_keys: list[str] = []
        computed_keys: list[str] = []
        labels: dict[str, str] = {}
        computed_labels: dict[str, str] = {}
        for _version_id, _info, spec in versions:  # newest first: its order wins, older keys follow
            for step in spec.steps:
                if step.is_input and step.key not in labels:
                    step_keys.append(step.key)
                    labels[step.key] = step.label.strip() or step.key
            for item in spec.computed:
                if item.key not in computed_labels:
                    computed_keys.append(item.key)
                    computed_labels[item.key] = item.label.strip() or item.key
        counts: dict[str, int] = {}
        for label in (*labels.values(), *computed_labels.values()):
            counts[label] = counts.get(label, 0) + 1
        for key in step_keys:
            label = labels[key]
            header = _unique(label if counts[label] == 1 else f"{label}（{key}）", key, used)
            self.fields[f"step:{key}"] = Field(column_name=header, dehydrate_method=self._answer_method(key))
        for key in computed_keys:
            label = computed_labels[key]
            header = _unique(label if counts[label] == 1 else f"{label}（{key}）", key, used)
            self.fields[f"computed:{key}"] = Field(column_name=header, dehydrate_method=self._computed_method(key))
        for staff_field in StaffField.objects.filter(procedure_id=procedure.pk).order_by("order", "id"):
            header = _unique(staff_field.label.strip() or staff_field.key, staff_field.key, used)
            self.fields[f"staff:{staff_field.key}"] = Field(
                column_name=header, dehydrate_method=self._staff_value_method(staff_field)
            )
        self._export_fields = list(self.fields.values())
        self._reveal: dict[int, bool] = {}

    # One pass over the fields per row (import-export's export_field looks each field's name up again).
    def get_export_fields(self, selected_fields=None):
        return list(self._export_fields)

    def export_resource(self, instance, selected_fields=None, **kwargs):
        return [neutralise(field.dehydrate_method(instance)) for field in self._export_fields]

    def get_export_headers(self, selected_fields=None):
        return [neutralise(field.column_name) for field in self._export_fields]

    # -- cells

    def _version_number(self, application) -> str:
        info = self.versions.get(application.version_id)
        return f"第{info.number}版" if info is not None else ""

    def _may_reveal(self, application) -> bool:
        # Every row is of self.procedure: its department decides, so the answer is kept per procedure.
        if application.procedure_id not in self._reveal:
            self._reveal[application.procedure_id] = policy.can(self.user, policy.REVEAL_SENSITIVE, application)
        return self._reveal[application.procedure_id]

    def _answer_method(self, key: str):
        def answer(application) -> str:
            info = self.versions.get(application.version_id)
            step = info.steps.get(key) if info is not None else None
            answers = application.answers if isinstance(application.answers, dict) else {}
            if step is None or key not in answers:
                return ""
            if step.sensitive and not self._may_reveal(application):
                return MASK
            if step.kind == "image":
                return self.link_base + attachment_url(application.pk, key)
            return answer_text(step, answers[key])

        return answer

    @staticmethod
    def _staff_value_method(staff_field: StaffField):
        def staff_value(application) -> str:
            values = application.staff_values if isinstance(application.staff_values, dict) else {}
            return staff_field.display(values.get(staff_field.key))

        return staff_value

    def _computed_method(self, key: str):
        def computed(application) -> str:
            values = application.computed if isinstance(application.computed, dict) else {}
            if key not in values or values[key] is None:
                return ""
            info = self.versions.get(application.version_id)
            unit = info.computed_units.get(key, "") if info is not None else ""
            return format_number(values[key]) + (unit or "")

        return computed


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
        procedure = self.filters.procedure
        for application in self.applications.iterator(chunk_size=CHUNK_SIZE):
            application.procedure = procedure  # every row is of this procedure: no query per row
            yield self.resource.export_resource(application)

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
    """UTF-8 starts with a BOM; CP932 starts with nothing and writes 〓 for what it cannot hold."""
    if encoding == CP932:
        for line in lines:
            yield line.encode(CP932, errors="procedures_export_geta")
        return
    first = True
    for line in lines:
        yield ((BOM if first else "") + line).encode(UTF8)
        first = False


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
    cells: list[dict] = field(default_factory=list)  # {"receipt_number", "column", "characters"}, at most CHECK_LIST_LIMIT


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
