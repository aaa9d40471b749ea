"""The demo procedures, the template library, and the import/export commands."""

from __future__ import annotations

import builtins
import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from procedures.demo import DEMO_TEMPLATES, TEMPLATES_DIR, load_demo
from procedures.engine import Event, Submit
from procedures.engine.computed import compute
from procedures.engine.conditions import evaluate
from procedures.models import (
    ComputedValue,
    Procedure,
    ProcedureVersion,
    Step,
    StepChoice,
)
from procedures.spec import SPEC_FORMAT, SPEC_FORMAT_VERSION, STEP_KINDS, parse_spec, validate_spec
from procedures.tests.engine_fixtures import Conversation, catalog_of
from residents.models import Attribute, Category
from staff.models import Department

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "templates"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "procedure-format.md"
LIBRARY_FILES = sorted(TEMPLATES_DIR.glob("*.json"))


def row_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Procedure, ProcedureVersion, Step, StepChoice, ComputedValue, Department, Category, Attribute)
    }


def run(command: str, *args, **options) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def import_error(path, *args) -> str:
    with pytest.raises(CommandError) as caught:
        run("import_procedure", str(path), *args)
    return str(caught.value)


def export(reference: str, *args) -> dict:
    return json.loads(run("export_procedure", reference, *args))


def without_prefix(envelope: dict) -> dict:
    data = json.loads(json.dumps(envelope))
    data["procedure"].pop("receipt_prefix")
    return data


# --------------------------------------------------------------------------
# The template library and the demo
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda path: path.name)
def test_library_templates_are_valid_envelopes_without_ids(path):
    envelope = json.loads(path.read_text(encoding="utf-8"))
    assert set(envelope) == {"format", "format_version", "procedure"}
    assert envelope["format"] == SPEC_FORMAT and envelope["format_version"] == SPEC_FORMAT_VERSION
    assert "procedure_id" not in envelope["procedure"] and "version_id" not in envelope["procedure"]
    spec = parse_spec(envelope["procedure"])
    assert validate_spec(spec) == []


def test_library_holds_the_two_demo_templates():
    assert {path.name for path in LIBRARY_FILES} == {template.file_name for template in DEMO_TEMPLATES}


@pytest.mark.django_db
def test_load_demo_creates_the_published_demo_procedures():
    results = load_demo()
    assert [result.receipt_prefix for result in results] == ["JUMIN", "SODAI", "JUSHIN"]
    assert all(result.created for result in results)
    assert Procedure.objects.count() == 3
    departments = dict(Department.objects.values_list("code", "name"))
    assert departments == {"shimin": "市民課", "kankyo": "環境衛生課"}

    jumin = Procedure.objects.get(receipt_prefix="JUMIN")
    sodai = Procedure.objects.get(receipt_prefix="SODAI")
    assert jumin.name == "住民票の写し等の郵送請求" and jumin.department.code == "shimin"
    assert sodai.name == "粗大ごみ収集申込" and sodai.department.code == "kankyo"
    for procedure in (jumin, sodai):
        assert procedure.is_open
        assert procedure.current_version.status == ProcedureVersion.Status.PUBLISHED
        assert procedure.draft is None
    assert {"住民票", "証明書", "郵送請求"} <= set(jumin.keyword_list)
    assert {"粗大ごみ", "粗大ゴミ", "そだいごみ"} <= set(sodai.keyword_list)

    jumin_spec = parse_spec(jumin.current_version.spec)
    sodai_spec = parse_spec(sodai.current_version.spec)
    assert validate_spec(jumin_spec) == [] and validate_spec(sodai_spec) == []
    # Every step kind the engine knows is exercised by the demo.
    assert {step.kind for step in jumin_spec.steps + sodai_spec.steps} == set(STEP_KINDS)
    # 14+ bulky items, so the LINE quick replies have to page.
    assert len(sodai_spec.get_step("items").choices) >= 14
    for key in ("name", "name_kana", "birth_date", "postal_code", "address", "phone"):
        assert jumin_spec.get_step(key).sensitive, key
    for key in ("address", "phone"):
        assert sodai_spec.get_step(key).sensitive, key
    assert jumin_spec.get_step("name_kana").options["format"] == "katakana"
    assert sodai_spec.get_step("pickup_date").options["weekdays"] == [1, 4]
    assert sodai_spec.get_step("pickup_date").options["allow_holidays"] is False
    assert {"2026-12-29", "2027-01-03", "2027-12-31", "2028-01-01"} <= set(
        sodai_spec.get_step("pickup_date").options["excluded_dates"]
    )
    assert not sodai_spec.get_step("photo").required and not sodai_spec.get_step("spot").required


@pytest.mark.django_db
def test_demo_conditions_and_fees_follow_the_documented_model():
    load_demo()
    jumin = parse_spec(Procedure.objects.get(receipt_prefix="JUMIN").current_version.spec)
    sodai = parse_spec(Procedure.objects.get(receipt_prefix="SODAI").current_version.spec)

    # 印鑑登録証明書 ends at the counter notice; 本籍 is asked only for 住民票の写し.
    assert evaluate(jumin.get_step("inkan_counter").condition, {"cert_type": "inkan"})
    assert not evaluate(jumin.get_step("inkan_counter").condition, {"cert_type": "juminhyo"})
    assert evaluate(jumin.get_step("honseki").condition, {"cert_type": "juminhyo"})
    assert not evaluate(jumin.get_step("honseki").condition, {"cert_type": "fuhyo"})
    assert evaluate(jumin.get_step("purpose_other").condition, {"purpose": "other"})
    assert compute(jumin, {"cert_type": "juminhyo", "copies": 3}) == {"fee": 900}

    assert evaluate(sodai.get_step("outside_city").condition, {"in_city": False})
    assert not evaluate(sodai.get_step("outside_city").condition, {"in_city": True})
    assert evaluate(sodai.get_step("futon_extra").condition, {"items": ["tansu", "futon"]})
    assert not evaluate(sodai.get_step("futon_extra").condition, {"items": ["tansu"]})
    # Fee per piece × pieces for every item: タンス 1 × 1200 + 布団 3 × 400 + 椅子 1 × 400.
    answers = {"items": ["tansu", "futon", "chair"], "futon_extra": 2, "chair_extra": 0}
    assert compute(sodai, answers) == {"fee_total": 1200 + 3 * 400 + 400}
    fees = {choice.value: choice.amount for choice in sodai.get_step("items").choices}
    for term in next(item for item in sodai.computed if item.key == "fee_total").terms:
        if term.step != "items":
            assert term.factor == fees[term.step.removesuffix("_extra")]


@pytest.mark.django_db
def test_load_demo_twice_changes_nothing():
    run("load_demo")
    before = row_counts()
    stamps = {p.receipt_prefix: (p.updated_at, p.current_version_id) for p in Procedure.objects.all()}
    specs = {v.pk: v.spec for v in ProcedureVersion.objects.all()}

    results = load_demo()
    output = run("load_demo")

    assert not any(result.created for result in results)
    assert row_counts() == before
    assert {p.receipt_prefix: (p.updated_at, p.current_version_id) for p in Procedure.objects.all()} == stamps
    assert {v.pk: v.spec for v in ProcedureVersion.objects.all()} == specs
    assert "JUMIN" in output and "SODAI" in output


@pytest.mark.django_db
def test_load_demo_keeps_an_existing_procedure_with_a_demo_prefix():
    Department.objects.create(code="shimin", name="市民課")
    own = Procedure.objects.create(name="自前の住民票請求", receipt_prefix="JUMIN")
    results = load_demo()
    assert [r.created for r in results] == [False, True, True]
    own.refresh_from_db()
    assert own.name == "自前の住民票請求" and own.current_version is None
    assert Department.objects.count() == 2


def library_spec(file_name: str, procedure_id: int):
    data = json.loads((TEMPLATES_DIR / file_name).read_text(encoding="utf-8"))["procedure"]
    return parse_spec({**data, "procedure_id": procedure_id, "version_id": procedure_id * 10})


def demo_conversation() -> Conversation:
    """Both demo procedures open in the engine (no database), on Tuesday 2026-06-02 in Tokyo."""
    return Conversation(
        catalog_of(library_spec("residence_certificate_mail.json", 1), library_spec("bulky_garbage.json", 2))
    )


def test_bulky_garbage_conversation_pages_items_and_totals_the_fee():
    conversation = demo_conversation()
    conversation.say("粗大ごみ")
    conversation.tap("action.yes")  # 市内にお住まい
    conversation.tap("action.toggle", label="タンス（1,200円）")
    conversation.tap("action.toggle", label="布団（400円）")
    conversation.tap("action.page_next")  # 16 items: 11 on the first page
    conversation.tap("action.toggle", label="扇風機（400円）")
    conversation.tap("action.done")
    assert conversation.answers["items"] == ["tansu", "futon", "fan"]
    conversation.say("2")  # 布団: 2 more besides the first; 椅子 and 自転車 are not asked
    conversation.say("2026-06-10")  # a Wednesday
    assert conversation.codes[0] == "error.date_not_allowed"
    conversation.say("2026-06-09")  # a Tuesday, a week ahead
    for answer in ("玄関前", "小城 太郎", "小城市三日月町長神田2312番地2", "090-1234-5678"):
        conversation.say(answer)
    conversation.tap("action.skip")  # no photo
    conversation.tap("action.skip")  # no location
    summary = conversation.last
    assert summary.code == "summary"
    assert summary.params["computed"] == [{"key": "fee_total", "label": "手数料合計", "value": 2800, "unit": "円"}]
    assert {row.key for row in summary.rows if row.masked} >= {"name", "address", "phone"}
    [submit] = conversation.tap("action.submit").effects
    assert isinstance(submit, Submit)
    assert submit.answers["pickup_date"] == "2026-06-09" and "chair_extra" not in submit.answers
    assert submit.computed == {"fee_total": 1200 + 3 * 400 + 400}


def test_bulky_garbage_ends_for_people_outside_the_city():
    conversation = demo_conversation()
    conversation.say("粗大ゴミ")
    conversation.tap("action.no")
    assert "procedure.exited" in conversation.codes
    assert conversation.session is None and not conversation.submits()


def test_residence_certificate_conversation_and_the_counter_only_certificate():
    conversation = demo_conversation()
    conversation.say("住民票")
    conversation.tap("action.choice", label="印鑑登録証明書")
    assert "procedure.exited" in conversation.codes and conversation.session is None

    conversation.say("郵送請求")
    conversation.tap("action.choice", label="住民票の写し（1通300円）")
    conversation.tap("action.yes")  # 本籍・筆頭者の記載
    conversation.say("3通")
    conversation.tap("action.choice", label="その他")
    conversation.say("公営住宅の入居申込に提出するため")
    conversation.say("小城 花子")
    conversation.say("おぎ はなこ")
    conversation.send(Event(type="date", step="birth_date", value="1990-04-01"))
    for answer in ("8458511", "小城市三日月町長神田2312番地2", "0952-37-6116"):
        conversation.say(answer)
    summary = conversation.last
    assert summary.code == "summary", conversation.codes
    assert summary.params["computed"] == [{"key": "fee", "label": "手数料", "value": 900, "unit": "円"}]
    [submit] = conversation.tap("action.submit").effects
    assert submit.answers["name_kana"] == "オギ\u3000ハナコ"
    assert submit.answers["postal_code"] == "845-8511" and submit.answers["honseki"] is True
    assert submit.computed == {"fee": 900}


# --------------------------------------------------------------------------
# Export and import round trip
# --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("prefix", ["JUMIN", "SODAI"])
def test_export_then_import_round_trips(prefix, tmp_path):
    load_demo()
    exported_file = tmp_path / f"{prefix.lower()}.json"
    run("export_procedure", prefix, "-o", str(exported_file))
    text = exported_file.read_text(encoding="utf-8")
    assert "\\u" not in text and "手数料" in text  # UTF-8, not ASCII escapes
    original = json.loads(text)
    assert original["format"] == SPEC_FORMAT and original["format_version"] == SPEC_FORMAT_VERSION
    assert "procedure_id" not in original["procedure"] and "version_id" not in original["procedure"]

    output = run("import_procedure", str(exported_file), "--prefix", f"{prefix}2", "--department", "kankyo")
    assert f"{prefix}2" in output
    copy = Procedure.objects.get(receipt_prefix=f"{prefix}2")
    assert copy.department.code == "kankyo" and copy.current_version is None and copy.draft is not None

    # The draft made from the rows exports to the same spec ...
    assert without_prefix(export(f"{prefix}2")) == without_prefix(original)
    assert export(f"{prefix}2")["procedure"]["receipt_prefix"] == f"{prefix}2"
    # ... and so does the published version.
    run("import_procedure", str(exported_file), "--prefix", f"{prefix}3", "--publish")
    published = Procedure.objects.get(receipt_prefix=f"{prefix}3")
    assert published.is_open and published.current_version.status == ProcedureVersion.Status.PUBLISHED
    assert without_prefix(export(str(published.pk))) == without_prefix(original)


@pytest.mark.django_db
def test_library_file_imports_as_is(tmp_path):
    Department.objects.create(code="kankyo", name="環境衛生課")
    run("import_procedure", str(TEMPLATES_DIR / "bulky_garbage.json"), "--department", "kankyo", "--publish")
    procedure = Procedure.objects.get(receipt_prefix="SODAI")
    assert procedure.is_open
    assert export("sodai")["procedure"]["steps"][3]["key"] == "items"


@pytest.mark.django_db
def test_export_selects_a_version_and_reports_unknown_ones():
    load_demo()
    procedure = Procedure.objects.get(receipt_prefix="JUMIN")
    assert export("JUMIN", "--version", "1")["procedure"]["name"] == procedure.name
    with pytest.raises(CommandError, match="第7版"):
        run("export_procedure", "JUMIN", "--version", "7")
    with pytest.raises(CommandError, match="NOPE"):
        run("export_procedure", "NOPE")


@pytest.mark.django_db
def test_import_refuses_a_prefix_in_use_and_an_unknown_department():
    load_demo()
    before = row_counts()
    message = import_error(TEMPLATES_DIR / "bulky_garbage.json")
    assert "SODAI" in message
    message = import_error(TEMPLATES_DIR / "bulky_garbage.json", "--prefix", "SODAI9", "--department", "doboku")
    assert "doboku" in message and "kankyo" in message
    assert row_counts() == before


# --------------------------------------------------------------------------
# Broken and hostile files
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_reports_unknown_step_kind_with_location():
    message = import_error(FIXTURES / "unknown_step_kind.json")
    assert "signature_pad" in message
    assert_located(message, step_number=3)


@pytest.mark.django_db
def test_import_reports_condition_pointing_nowhere():
    message = import_error(FIXTURES / "condition_pointing_nowhere.json")
    assert "has_dog" in message
    assert_located(message, step_number=3)


@pytest.mark.django_db
def test_import_reports_wrong_types():
    message = import_error(FIXTURES / "wrong_types.json")
    problems = [line for line in message.splitlines() if line.startswith("- ")]
    # keywords, label of step 1, required and min of step 2, amount of step 3, weekdays of step 4.
    assert len(problems) == 6, message
    expected = {
        "キーワード": "手続き全体の keywords",
        "1番目のステップの項目名": "steps[0].label",
        "2番目のステップ「通数」の必須": "steps[1].required",
        "2番目のステップ「通数」の設定「最小値」": "steps[1].options.min",
        "3番目のステップ「種類」の1番目の選択肢の金額": "steps[2].choices[0].amount",
        "4番目のステップ「日付」の設定「受付曜日」": "steps[3].options.weekdays",
    }
    for where, path in expected.items():
        assert any(line.startswith(f"- {where}") for line in problems), (path, message)


@pytest.mark.django_db
def test_import_refuses_50_mb_file_without_reading_it_all(tmp_path, monkeypatch, settings):
    big = tmp_path / "huge.json"
    with open(big, "wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: costs no disk space
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if str(file) == str(big):
            raise AssertionError("the 50 MB file was opened")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    message = import_error(big)
    assert "50.0 MB" in message
    assert str(settings.PROCEDURE_IMPORT_MAX_BYTES) in message and "PROCEDURE_IMPORT_MAX_BYTES" in message
    assert Procedure.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("not_json.json", "JSON"),
        ("binary.json", "バイナリ"),
        ("shift_jis.json", "UTF-8"),
        ("not_a_template.json", "govtech.procedure"),
        ("unsupported_format_version.json", "99"),
    ],
)
def test_import_of_non_json_or_binary_file_is_refused(name, expected):
    message = import_error(FIXTURES / name)
    assert expected in message
    assert Procedure.objects.count() == 0


@pytest.mark.django_db
def test_import_refuses_missing_files_and_directories(tmp_path):
    assert "見つかりません" in import_error(tmp_path / "missing.json")
    assert "通常のファイル" in import_error(tmp_path)


@pytest.mark.django_db
def test_import_with_problems_writes_no_rows():
    load_demo()
    before = row_counts()
    broken = sorted(FIXTURES.iterdir())
    assert len(broken) >= 10
    for path in broken:
        with pytest.raises(CommandError):
            run("import_procedure", str(path), "--publish")
        assert row_counts() == before, path.name


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hostile_deep_condition.json", r"表示条件：条件の入れ子が深すぎます"),
        ("hostile_deep_json.json", r"入れ子"),
        ("hostile_10k_steps.json", r"ステップ一覧は200個まで"),
        ("hostile_long_strings.json", r"2000文字以内"),
    ],
)
def test_hostile_template_with_huge_nesting_or_strings_is_refused(name, expected):
    message = import_error(FIXTURES / name)
    assert re.search(expected, message), message
    # The refusal stays readable: no echo of the huge input.
    assert len(message) < 20_000
    assert Procedure.objects.count() == 0


# --------------------------------------------------------------------------
# The documentation
# --------------------------------------------------------------------------


def doc_json_blocks() -> list:
    text = DOCS.read_text(encoding="utf-8")
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, flags=re.S)]


def test_templates_in_library_are_documented():
    text = DOCS.read_text(encoding="utf-8")
    blocks = doc_json_blocks()  # every JSON example in the docs is valid JSON
    envelopes = [block for block in blocks if isinstance(block, dict) and block.get("format") == SPEC_FORMAT]
    example = max(envelopes, key=lambda block: len(block["procedure"].get("steps", [])))
    spec = parse_spec(example["procedure"])
    assert validate_spec(spec) == []
    assert {step.kind for step in spec.steps} == set(STEP_KINDS)

    # Every single-step example parses as a step of its kind.
    for block in blocks:
        if isinstance(block, dict) and "kind" in block:
            parse_spec({"name": "例", "steps": [block]})

    for path in LIBRARY_FILES:
        procedure = json.loads(path.read_text(encoding="utf-8"))["procedure"]
        assert path.name in text
        for field in procedure:
            assert f"`{field}`" in text, field
        for step in procedure["steps"]:
            assert f"### `{step['kind']}`" in text, step["kind"]
            for field in step:
                assert f"`{field}`" in text, field
            for option in step.get("options", {}):
                assert f"`{option}`" in text, option
            ops = re.findall(r'"op": "(\w+)"', json.dumps(step.get("condition")))
            for op in ops:
                assert f"`{op}`" in text, op
        for item in procedure["computed"]:
            for field in item:
                assert f"`{field}`" in text, field


def assert_located(message: str, *, step_number: int) -> None:
    """The problem says which step it is about (1-based, as staff count)."""
    assert re.search(rf"(?<!\d){step_number}(?!\d)", message), message
