"""The auditors' CSV export of applications (procedures/exports.py, procedures/export_views.py)."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEntry
from procedures import exports
from procedures.models import ApplicationStatus
from procedures.selectors import version_spec_data
from procedures.spec import parse_spec
from procedures.tests.factories import (
    ApplicationFactory,
    CompletionStepFactory,
    ComputedValueFactory,
    ConfirmationStepFactory,
    DateStepFactory,
    DepartmentFactory,
    ImageStepFactory,
    LocationStepFactory,
    MultipleChoiceStepFactory,
    NumberStepFactory,
    ProcedureFactory,
    ProcedureVersionFactory,
    ShortTextStepFactory,
    SingleChoiceStepFactory,
    YesNoStepFactory,
    published_version,
    valid_draft,
)
from procedures.texts import answer_text
from staff.models import ProcedureGrant, Role, StaffMembership

JST = ZoneInfo("Asia/Tokyo")
URL = reverse("procedures:application_export")


def _jst(*args) -> datetime:
    return datetime(*args, tzinfo=JST)


@pytest.fixture
def department(db):
    return DepartmentFactory(name="環境課", code="env")


@pytest.fixture
def version(department):
    """valid_draft (item, reason, count, name[sensitive]; fee) plus a multiple choice, an image and a duplicate label."""
    draft = valid_draft(ProcedureVersionFactory(procedure=ProcedureFactory(department=department, receipt_prefix="SODAI")))
    MultipleChoiceStepFactory(
        version=draft, key="days", label="希望曜日", position=41, choices=[("mon", "月曜"), ("tue", "火曜"), ("wed", "水曜")]
    )
    ImageStepFactory(version=draft, key="photo", label="写真", position=42, required=False)
    ShortTextStepFactory(version=draft, key="memo", label="品目", position=43, required=False)  # the same label as "item"
    ComputedValueFactory(version=draft, key="total", label="合計", unit="円", terms=[{"step": "count", "factor": 100}])
    return published_version(draft)


@pytest.fixture
def procedure(version):
    procedure = version.procedure
    procedure.refresh_from_db()
    return procedure


def _application(version, **fields):
    fields.setdefault("answers", {"item": "tansu", "count": 2, "name": "市役所 太郎", "days": ["mon", "wed"]})
    fields.setdefault("computed", {"fee": 1200, "total": 200})
    return ApplicationFactory(version=version, procedure=version.procedure, **fields)


def _user(username, role, department=None):
    from procedures.tests.factories import StaffUserFactory

    user = StaffUserFactory(username=username, is_superuser=False)
    StaffMembership.objects.create(user=user, role=role, department=department)
    return user


@pytest.fixture
def staff_user(department):
    return _user("env-staff", Role.DEPARTMENT_STAFF, department)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _download(client, procedure, **params):
    response = client.get(URL, {"procedure": procedure.pk, "download": "1", **params})
    assert response.status_code == 200, response.status_code
    assert response.streaming
    return response


def _rows(response, encoding="utf-8-sig") -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode(encoding))))


def test_export_has_fixed_japanese_columns_then_one_per_step(procedure, version, staff_user):
    application = _application(version, submitted_at=_jst(2026, 12, 1, 9, 5), line_user_id="Uabc")
    header, row = _rows(_download(_client(staff_user), procedure))
    assert header == [
        "受付番号", "申請日時", "状態", "担当", "手続きの版", "LINE ユーザーID", "受付方法",
        "品目（item）", "品目の説明", "個数", "お名前", "希望曜日", "写真", "品目（memo）",
        "手数料", "合計",
    ]
    assert row[:7] == [
        application.receipt_number, "2026-12-01 09:05", "受付", "", f"第{version.number}版", "Uabc", "LINE"
    ]
    assert row[7] == "タンス"
    assert row[9] == "2点"
    assert row[10] == "市役所 太郎"  # department staff may reveal sensitive answers
    assert row[14:] == ["1200円", "200円"]


def test_multiple_choices_are_joined(procedure, version, staff_user):
    _application(version)
    header, row = _rows(_download(_client(staff_user), procedure))
    assert row[header.index("希望曜日")] == "月曜、水曜"


def test_images_are_links_to_the_access_checked_image_view(procedure, version, staff_user):
    application = _application(version, answers={"photo": {"ref": "line/images/x.jpg", "images": 1}})
    header, row = _rows(_download(_client(staff_user), procedure))
    link = row[header.index("写真")]
    assert link == f"http://testserver/procedures/applications/{application.pk}/attachments/photo/"
    # The link is only as good as the viewer's access: an anonymous visitor is sent to the login.
    anonymous = Client().get(link.removeprefix("http://testserver"))
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous.url


def test_sensitive_answers_are_masked_without_reveal_permission(procedure, version, staff_user):
    _application(version)
    # The policy has no role that may export but not reveal, so the refusal is simulated here.
    real_can = exports.policy.can

    def can(user, action, target):
        return False if action == exports.policy.REVEAL_SENSITIVE else real_can(user, action, target)

    with mock.patch.object(exports.policy, "can", side_effect=can):
        header, row = _rows(_download(_client(staff_user), procedure))
    assert row[header.index("お名前")] == "●●●●"
    assert row[header.index("品目（item）")] == "タンス"
    _header, row = _rows(_download(_client(staff_user), procedure))
    assert row[header.index("お名前")] == "市役所 太郎"


def test_test_applications_are_never_exported(procedure, version, staff_user):
    real = _application(version)
    _application(version, is_test=True, receipt_number="TEST-SODAI-2026-000001")
    rows = _rows(_download(_client(staff_user), procedure))
    assert [row[0] for row in rows[1:]] == [real.receipt_number]


def test_formula_like_cells_are_neutralised(procedure, version, staff_user):
    answers = {"item": "other", "reason": "=HYPERLINK(\"http://evil\")", "memo": "@SUM(A1)", "name": "+81 90"}
    _application(version, answers=answers, line_user_id="-U1")
    header, row = _rows(_download(_client(staff_user), procedure))
    assert row[header.index("品目の説明")] == "'=HYPERLINK(\"http://evil\")"
    assert row[header.index("品目（memo）")] == "'@SUM(A1)"
    assert row[header.index("お名前")] == "'+81 90"
    assert row[header.index("LINE ユーザーID")] == "'-U1"
    assert exports.neutralise("\tx") == "'\tx" and exports.neutralise("\rx") == "'\rx"


def test_utf8_export_starts_with_bom(procedure, version, staff_user):
    _application(version)
    response = _download(_client(staff_user), procedure)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment;" in response["Content-Disposition"]
    content = b"".join(response.streaming_content)
    assert content.startswith("\ufeff受付番号".encode())


def test_cp932_export_replaces_unencodable_characters_and_reports_them(procedure, version, staff_user):
    application = _application(version, answers={"item": "tansu", "memo": "髙橋🙂さん"})
    client = _client(staff_user)
    response = _download(client, procedure, encoding="cp932")
    content = b"".join(response.streaming_content)
    assert content.startswith("受付番号".encode("cp932"))  # no BOM
    header, row = list(csv.reader(io.StringIO(content.decode("cp932"))))
    assert row[header.index("品目（memo）")] == "髙橋〓さん"  # 髙 exists in CP932 (an IBM extension), 🙂 does not

    page = client.get(URL, {"procedure": procedure.pk, "encoding": "cp932", "check": "1"})
    assert page.status_code == 200
    report = page.context["report"]
    assert report.total == 1
    assert report.cells == [{"receipt_number": application.receipt_number, "column": "品目（memo）", "characters": "🙂"}]
    assert "🙂" in page.content.decode()
    check = AuditEntry.objects.filter(action="application.export", details__check="cp932").get()
    assert check.details["count"] == 1 and check.details["unencodable"] == 1


def test_status_and_date_filters(procedure, version, staff_user):
    reviewing = ApplicationStatus.objects.get(procedure=procedure, code="reviewing")
    first = _application(version, submitted_at=_jst(2026, 12, 1, 0, 0))
    last = _application(version, submitted_at=_jst(2026, 12, 3, 23, 59))
    _application(version, submitted_at=_jst(2026, 11, 30, 23, 59))
    _application(version, submitted_at=_jst(2026, 12, 4, 0, 0))
    reviewed = _application(version, submitted_at=_jst(2026, 12, 2, 12, 0), status=reviewing)
    client = _client(staff_user)

    rows = _rows(_download(client, procedure, date_from="2026-12-01", date_to="2026-12-03"))
    assert [row[0] for row in rows[1:]] == [first.receipt_number, reviewed.receipt_number, last.receipt_number]
    rows = _rows(_download(client, procedure, date_from="2026-12-01", date_to="2026-12-03", status=reviewing.pk))
    assert [row[0] for row in rows[1:]] == [reviewed.receipt_number]
    assert rows[1][2] == "確認中"


def test_export_streams_from_an_iterator_in_chunks(procedure, version, staff_user):
    for _ in range(3):
        _application(version)
    with mock.patch.object(QuerySet, "iterator", autospec=True, side_effect=QuerySet.iterator) as iterator:
        response = _download(_client(staff_user), procedure)
        content = response.streaming_content
        assert iter(content) is content  # an iterator producing lines on demand, not a list built up front
        assert len(_rows(response)) == 4
    assert iterator.call_args.kwargs == {"chunk_size": 2000}


def test_export_is_audit_logged_with_filters_and_count(procedure, version, staff_user):
    _application(version, submitted_at=_jst(2026, 12, 1, 10, 0))
    _application(version, submitted_at=_jst(2026, 12, 2, 10, 0))
    _application(version, submitted_at=_jst(2026, 12, 9, 10, 0))
    _download(_client(staff_user), procedure, date_from="2026-12-01", date_to="2026-12-02", encoding="cp932")
    entry = AuditEntry.objects.get(action="application.export")
    assert entry.actor == staff_user
    assert entry.department_id == procedure.department_id
    assert entry.object_id == str(procedure.pk)
    assert entry.details == {
        "filters": {
            "procedure": procedure.pk, "status": None, "date_from": "2026-12-01", "date_to": "2026-12-02",
            "encoding": "cp932",
        },
        "count": 2,
    }
    assert "市役所" not in str(entry.details)


def test_outsourced_operator_and_viewer_cannot_export(procedure, version, department):
    _application(version)
    operator = _user("operator", Role.OUTSOURCED_OPERATOR)
    ProcedureGrant.objects.create(user=operator, procedure=procedure)
    viewer = _user("viewer", Role.DEPARTMENT_VIEWER, department)
    for user in (operator, viewer):
        client = _client(user)
        assert client.get(URL).status_code == 403
        assert client.get(URL, {"procedure": procedure.pk, "download": "1"}).status_code == 403
    assert not AuditEntry.objects.filter(action="application.export").exists()


def test_other_departments_procedure_cannot_be_exported(procedure, version, department):
    _application(version)
    tax = DepartmentFactory(name="税務課", code="tax")
    ProcedureFactory(department=tax, name="税の証明書")
    other_staff = _user("other-staff", Role.DEPARTMENT_STAFF, tax)
    other_auditor = _user("other-auditor", Role.AUDITOR, tax)
    for user in (other_staff, other_auditor):
        response = _client(user).get(URL, {"procedure": procedure.pk, "download": "1"})
        assert response.status_code == 404  # the same as an id that does not exist
    assert not AuditEntry.objects.filter(action="application.export").exists()
    # The page lists only the procedures the user may export.
    page = _client(other_staff).get(URL)
    assert page.status_code == 200
    assert "税の証明書" in page.content.decode()
    assert procedure.name not in page.content.decode()
    # Auditors of the procedure's department may.
    auditor = _user("env-auditor", Role.AUDITOR, department)
    assert len(_rows(_download(_client(auditor), procedure))) == 2


def test_anonymous_is_sent_to_login(procedure):
    response = Client().get(URL, {"procedure": procedure.pk, "download": "1"})
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


# --------------------------------------------------------------------------
# Cells worked out once per export (issue 5, requirement 11: 100k rows in < 10 s)
# --------------------------------------------------------------------------


@pytest.fixture
def every_kind(department):
    """A published version with one input step of every kind whose answers repeat, and a free text."""
    draft = ProcedureVersionFactory(procedure=ProcedureFactory(department=department, receipt_prefix="KINDS"))
    SingleChoiceStepFactory(version=draft, key="item", label="品目", choices=[("tansu", "タンス"), ("bed", "ベッド")])
    MultipleChoiceStepFactory(version=draft, key="days", label="希望曜日", choices=[("mon", "月曜"), ("1", "火曜")])
    NumberStepFactory(version=draft, key="count", label="個数", unit="点")
    YesNoStepFactory(version=draft, key="agree", label="同意")
    DateStepFactory(version=draft, key="day", label="希望日")
    LocationStepFactory(version=draft, key="place", label="場所", required=False)
    ShortTextStepFactory(version=draft, key="memo", label="メモ", required=False)
    ConfirmationStepFactory(version=draft, key="confirm")
    CompletionStepFactory(version=draft, key="done")
    return published_version(draft)


# Values equal as dict keys but written differently (1 / True / 1.0), unknown choices, an
# unhashable list, a repeated value: a remembered cell must never stand in for another value.
EVERY_KIND_ANSWERS = [
    {"item": "tansu", "days": ["mon"], "count": 1, "agree": True, "day": "2026-12-01", "memo": "=1+1"},
    {
        "item": "ghost",
        "days": ["mon", {"x": 1}],
        "count": True,
        "agree": 1,
        "day": "not a date",
        "place": {"latitude": 35.6, "longitude": 139.7},
    },
    {"item": "tansu", "days": [], "count": 1.0, "agree": False, "day": "2026-12-01", "memo": "東京都"},
    {
        "item": "bed",
        "days": ["mon", "1"],
        "count": -2,
        "agree": "yes",
        "day": "2026-12-02",
        "place": {"address": "市役所"},
    },
    {"item": "tansu", "days": ["mon", 1], "count": 1, "agree": True, "day": "2026-12-01", "memo": None},
]


@pytest.mark.parametrize("remembered", [exports.REMEMBERED_VALUES, 1])
def test_every_answer_cell_is_the_staff_pages_text_of_that_very_value(every_kind, staff_user, remembered):
    version = every_kind
    applications = [_application(version, answers=answers, computed={}) for answers in EVERY_KIND_ANSWERS]
    with mock.patch.object(exports, "REMEMBERED_VALUES", remembered):
        export = exports.build_export(user=staff_user, filters=exports.ExportFilters(procedure=version.procedure))
        rows = list(export.rows())
    header, body = rows[0], {row[0]: row for row in rows[1:]}
    steps = {step.key: step for step in parse_spec(version_spec_data(version)).steps if step.is_input}
    assert header[7:] == [step.label for step in steps.values()]
    for application in applications:
        row = body[application.receipt_number]
        expected = [
            exports.neutralise(answer_text(step, application.answers[key])) if key in application.answers else ""
            for key, step in steps.items()
        ]
        assert row[7:] == expected
    first, second, third, fourth, fifth = (body[application.receipt_number][7:] for application in applications)
    assert first[:5] == ["タンス", "月曜", "1点", "はい", "2026年12月1日（火）"]
    assert second[:5] == ["ghost", "月曜、{'x': 1}", "True点", "1", "not a date"]
    assert third[:5] == ["タンス", "（選択なし）", "1点", "いいえ", "2026年12月1日（火）"]
    assert fourth[:3] == ["ベッド", "月曜、火曜", "'-2点"]
    assert fifth[1] == "月曜、1"  # the int 1, not the choice "1" (火曜)
    assert first[6] == "'=1+1" and fifth[6] == "（未回答）"


def test_an_export_sends_the_same_queries_for_one_application_or_many(procedure, version, staff_user):
    def queries_of_export() -> int:
        with CaptureQueriesContext(connection) as captured:
            b"".join(exports.application_export(user=staff_user, filters=exports.ExportFilters(procedure=procedure)))
        return len(captured)

    _application(version, answers={"item": "tansu", "name": "市役所 太郎", "photo": {"ref": "line/images/x.jpg"}})
    queries_of_export()  # the user's roles are read once and kept on the user
    one = queries_of_export()
    for _ in range(4):
        _application(version, answers={"item": "bed", "name": "市役所 花子", "photo": {"ref": "line/images/y.jpg"}})
    assert queries_of_export() == one


def test_whether_sensitive_answers_are_shown_is_asked_once_per_export(procedure, version, staff_user):
    for _ in range(3):
        _application(version)
    with mock.patch.object(exports.policy, "can", wraps=exports.policy.can) as can:
        header, *rows = _rows(_download(_client(staff_user), procedure))
    assert [row[header.index("お名前")] for row in rows] == ["市役所 太郎"] * 3
    assert [call.args[1] for call in can.call_args_list].count(exports.policy.REVEAL_SENSITIVE) == 1


@pytest.mark.parametrize("encoding", ["utf-8", "cp932"])
def test_the_stream_comes_in_blocks_of_whole_lines(procedure, version, staff_user, encoding):
    for number in range(8):
        _application(version, answers={"item": "tansu", "memo": f"髙橋🙂さん{number}"})
    client = _client(staff_user)
    whole = b"".join(_download(client, procedure, encoding=encoding).streaming_content)
    with mock.patch.object(exports, "BLOCK_CHARS", 300):
        blocks = list(_download(client, procedure, encoding=encoding).streaming_content)
    assert b"".join(blocks) == whole
    assert 1 < len(blocks) < 9  # several lines a block, not one piece per application
    texts = [block.decode(encoding) for block in blocks]  # no character is cut between two blocks
    assert all(text.endswith("\r\n") for text in texts)
    assert all(len(text) >= 300 for text in texts[:-1])
    assert [text.startswith("\ufeff") for text in texts] == [encoding == "utf-8"] + [False] * (len(texts) - 1)
    assert whole.decode(encoding).count("髙橋〓さん" if encoding == "cp932" else "髙橋🙂さん") == 8
