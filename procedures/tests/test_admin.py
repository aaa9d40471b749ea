"""The procedure builder admin, driven the way a staff member uses it in the browser."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from procedures import admin as procedures_admin
from procedures.admin_forms import (
    RuleError,
    condition_to_rules,
    parse_number,
    rule_to_leaf,
    rules_to_condition,
    split_values,
)
from procedures.models import Application, ComputedValue, Procedure, ProcedureVersion, Step, StepChoice
from procedures.services import ProblemsError, draft_get_or_create, order_after_move, procedure_import, version_problems
from procedures.tests.admin_browser import form_data, messages_of
from procedures.tests.factories import (
    ApplicationFactory,
    DepartmentFactory,
    ProcedureVersionFactory,
    StaffUserFactory,
    published_version,
    valid_draft,
)
from procedures.tests.spec_data import simple_spec_data, template_bytes
from staff.models import Role, StaffMembership

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def version_url(version) -> str:
    return reverse("admin:procedures_procedureversion_change", args=[version.pk])


def step_url(step) -> str:
    return reverse("admin:procedures_step_change", args=[step.pk])


def steps_in_order(version) -> list[str]:
    return list(version.steps.order_by("position", "id").values_list("key", flat=True))


# --------------------------------------------------------------------------
# Procedures
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_creates_procedure_and_gets_a_draft(admin_client):
    department = DepartmentFactory(name="環境衛生課", code="kankyo")
    response = admin_client.post(
        reverse("admin:procedures_procedure_add"),
        {
            "name": "粗大ごみ収集申込",
            "description": "粗大ごみの戸別収集",
            "keywords": "粗大ごみ\nそだいごみ",
            "receipt_prefix": "sodai",
            "department": department.pk,
        },
    )
    procedure = Procedure.objects.get(name="粗大ごみ収集申込")
    draft = procedure.draft
    assert draft is not None and draft.number == 1
    assert procedure.receipt_prefix == "SODAI"
    assert procedure.keyword_list == ["粗大ごみ", "そだいごみ"]
    assert response.status_code == 302 and response.url == version_url(draft)
    page = admin_client.get(response.url)
    assert "ステップを追加" in page.content.decode()


@pytest.mark.django_db
def test_procedure_list_shows_state_version_and_links(admin_client):
    version = published_version(name="住民票の写しの郵送請求")
    procedure = version.procedure
    response = admin_client.get(reverse("admin:procedures_procedure_changelist"))
    html = response.content.decode()
    assert "住民票の写しの郵送請求" in html
    assert "第1版" in html
    assert "下書きを編集" in html and "試す" in html and "フロー図" in html
    assert reverse("procedures:simulator") + f"?procedure={procedure.pk}" in html
    assert reverse("admin:procedures_procedure_import") in html
    assert "テンプレートとして書き出す" in html and "受付を停止する" in html


@pytest.mark.django_db
def test_edit_draft_link_creates_a_draft_only_after_confirming(admin_client):
    version = published_version()
    procedure = version.procedure
    url = reverse("admin:procedures_procedure_draft", args=[procedure.pk])
    assert procedure.draft is None
    page = admin_client.get(url)
    assert page.status_code == 200 and procedure.versions.count() == 1
    response = admin_client.post(url)
    draft = procedure.draft
    assert draft is not None and draft.number == 2
    assert response.url == version_url(draft)
    assert admin_client.get(url).url == version_url(draft)


@pytest.mark.django_db
def test_procedure_page_lists_every_version(admin_client):
    first = published_version()
    procedure = first.procedure
    draft = draft_get_or_create(procedure=procedure)
    html = admin_client.get(reverse("admin:procedures_procedure_change", args=[procedure.pk])).content.decode()
    assert "バージョンの履歴" in html
    assert version_url(first) in html and version_url(draft) in html
    assert "公開中" in html and "下書き" in html


@pytest.mark.django_db
def test_close_action_stops_accepting(admin_client):
    version = published_version()
    procedure = version.procedure
    assert Procedure.objects.get(pk=procedure.pk).is_open
    response = admin_client.post(
        reverse("admin:procedures_procedure_changelist"),
        {"action": "close_procedures", "_selected_action": [procedure.pk]},
    )
    assert response.status_code == 302
    assert not Procedure.objects.get(pk=procedure.pk).is_open
    assert any("受付を停止しました" in message for message in messages_of(response))


@pytest.mark.django_db
def test_reopen_action_accepts_again_only_what_was_published(admin_client):
    closed = published_version().procedure
    Procedure.objects.filter(pk=closed.pk).update(is_open=False)
    never_published = ProcedureVersionFactory().procedure
    response = admin_client.post(
        reverse("admin:procedures_procedure_changelist"),
        {"action": "reopen_procedures", "_selected_action": [closed.pk, never_published.pk]},
    )
    assert Procedure.objects.get(pk=closed.pk).is_open
    assert not Procedure.objects.get(pk=never_published.pk).is_open
    notes = " ".join(messages_of(response))
    assert "受付を再開しました" in notes and "公開された版がないため" in notes


# --------------------------------------------------------------------------
# Publishing, read-only published versions, restoring
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_publish_shows_every_problem_in_words(admin_client):
    version = ProcedureVersionFactory()
    problems = version_problems(version)
    assert problems  # an empty draft cannot be published
    page = admin_client.get(version_url(version)).content.decode()
    for problem in problems:
        assert problem in page
    response = admin_client.post(reverse("admin:procedures_procedureversion_publish", args=[version.pk]))
    assert response.status_code == 302 and response.url == version_url(version)
    shown = messages_of(response)
    for problem in problems:
        assert problem in shown
    version.refresh_from_db()
    assert version.is_draft and version.spec is None


@pytest.mark.django_db
def test_publish_valid_draft_freezes_spec_and_opens_procedure(admin_client, admin_user):
    version = valid_draft()
    page = admin_client.get(version_url(version)).content.decode()
    assert "問題は見つかりませんでした" in page and "公開する" in page
    response = admin_client.post(reverse("admin:procedures_procedureversion_publish", args=[version.pk]))
    version.refresh_from_db()
    procedure = version.procedure
    procedure.refresh_from_db()
    assert response.url == reverse("admin:procedures_procedure_change", args=[procedure.pk])
    assert version.status == ProcedureVersion.Status.PUBLISHED and version.published_by == admin_user
    assert [step["key"] for step in version.spec["steps"]] == ["item", "reason", "count", "name", "confirm", "done"]
    assert procedure.is_open and procedure.current_version == version
    assert any("公開しました" in message for message in messages_of(response))


@pytest.mark.django_db
def test_publish_needs_post(admin_client):
    version = valid_draft()
    response = admin_client.get(reverse("admin:procedures_procedureversion_publish", args=[version.pk]))
    assert response.status_code == 405
    version.refresh_from_db()
    assert version.is_draft


@pytest.mark.django_db
def test_published_version_cannot_be_edited_via_admin(admin_client):
    version = published_version()
    step = version.steps.get(key="count")
    page = admin_client.get(version_url(version))
    html = page.content.decode()
    assert page.status_code == 200
    assert "この版を下書きに復元" in html
    assert 'name="_save"' not in html and "公開する</button>" not in html
    assert "ステップを追加" not in html
    assert admin_client.post(version_url(version), {}).status_code == 403
    assert admin_client.get(step_url(step)).status_code == 200
    assert 'name="_save"' not in admin_client.get(step_url(step)).content.decode()
    assert admin_client.post(step_url(step), {"label": "変えた"}).status_code == 403
    delete_url = reverse("admin:procedures_step_delete", args=[step.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    move = reverse("admin:procedures_procedureversion_move_step", args=[version.pk])
    assert admin_client.post(move, {"step": step.pk, "direction": "up"}).status_code == 403
    step.refresh_from_db()
    assert step.label == "個数" and Step.objects.filter(pk=step.pk).exists()


@pytest.mark.django_db
def test_restore_earlier_version_becomes_draft(admin_client):
    first = published_version()
    procedure = first.procedure
    second_draft = draft_get_or_create(procedure=procedure)
    second_draft.steps.get(key="reason").delete()
    admin_client.post(reverse("admin:procedures_procedureversion_publish", args=[second_draft.pk]))
    assert procedure.draft is None

    response = admin_client.post(reverse("admin:procedures_procedureversion_restore", args=[first.pk]))
    draft = procedure.draft
    assert draft is not None and draft.number == 3 and draft.restored_from == first
    assert response.url == version_url(draft)
    assert steps_in_order(draft) == ["item", "reason", "count", "name", "confirm", "done"]
    assert any("復元しました" in message for message in messages_of(response))


# --------------------------------------------------------------------------
# The draft's steps: order, adding, editing, the condition builder
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_draft_page_lists_steps_in_order_with_conditions_in_words(admin_client):
    version = valid_draft()
    html = admin_client.get(version_url(version)).content.decode()
    assert html.index("品目") < html.index("品目の説明") < html.index("個数")
    assert "品目 が その他 のとき" in html
    assert "機微" in html
    assert step_url(version.steps.get(key="count")) in html


@pytest.mark.django_db
def test_reorder_step_moves_it_up(admin_client):
    version = valid_draft()
    count = version.steps.get(key="count")
    response = admin_client.post(
        reverse("admin:procedures_procedureversion_move_step", args=[version.pk]), {"step": count.pk, "direction": "up"}
    )
    assert response.status_code == 302
    assert steps_in_order(version) == ["item", "count", "reason", "name", "confirm", "done"]
    assert list(version.steps.order_by("position").values_list("position", flat=True)) == [10, 20, 30, 40, 50, 60]


@pytest.mark.django_db
def test_reorder_at_the_top_changes_nothing(admin_client):
    version = valid_draft()
    first = version.steps.get(key="item")
    admin_client.post(
        reverse("admin:procedures_procedureversion_move_step", args=[version.pk]), {"step": first.pk, "direction": "up"}
    )
    assert steps_in_order(version)[0] == "item"


@pytest.mark.django_db
def test_reorder_is_csrf_protected():
    version = valid_draft()
    client = Client(enforce_csrf_checks=True)
    client.force_login(StaffUserFactory())
    count = version.steps.get(key="count")
    response = client.post(
        reverse("admin:procedures_procedureversion_move_step", args=[version.pk]), {"step": count.pk, "direction": "up"}
    )
    assert response.status_code == 403
    assert steps_in_order(version)[1] == "reason"


@pytest.mark.django_db
def test_add_step_form_preselects_the_version_and_returns_to_it(admin_client):
    version = valid_draft()
    page = admin_client.get(version_url(version)).content.decode()
    assert 'name="ct_id"' in page and "短い文章" in page
    from django.contrib.contenttypes.models import ContentType

    from procedures.models import ShortTextStep

    ct = ContentType.objects.get_for_model(ShortTextStep, for_concrete_model=False)
    add_url = reverse("admin:procedures_step_add") + f"?ct_id={ct.pk}&version={version.pk}"
    form_page = admin_client.get(add_url)
    assert form_page.status_code == 200
    form = form_page.context["adminform"].form
    assert str(form["version"].value()) == str(version.pk)
    assert int(form["position"].value()) == 70
    data = form_data(form_page)
    data.update(key="address", label="住所を入力してください", sensitive="on")
    response = admin_client.post(add_url, data)
    assert response.status_code == 302 and response.url.startswith(version_url(version))
    step = Step.objects.get(version=version, key="address")
    assert isinstance(step, ShortTextStep) and step.sensitive and step.position == 70


@pytest.mark.django_db
def test_no_step_can_be_added_to_a_published_version(admin_client):
    from django.contrib.contenttypes.models import ContentType

    from procedures.models import ShortTextStep

    version = published_version()
    ct = ContentType.objects.get_for_model(ShortTextStep, for_concrete_model=False)
    add_url = reverse("admin:procedures_step_add") + f"?ct_id={ct.pk}&version={version.pk}"
    form_page = admin_client.get(add_url)
    assert version.pk not in [choice.value for choice, _label in form_page.context["adminform"].form.fields["version"].choices if choice]
    data = form_data(form_page)
    data.update(version=version.pk, position=70, key="late", label="後から")
    response = admin_client.post(add_url, data)
    assert response.status_code == 200 and "version" in response.context["adminform"].form.errors
    assert not Step.objects.filter(key="late").exists()


@pytest.mark.django_db
def test_choice_step_edits_its_choices_inline(admin_client):
    version = valid_draft()
    item = version.steps.get(key="item")
    page = admin_client.get(step_url(item))
    data = form_data(page)
    prefix = next(inline.formset.prefix for inline in page.context["inline_admin_formsets"])
    extra = int(data[f"{prefix}-TOTAL_FORMS"]) - 1
    data.update({f"{prefix}-{extra}-value": "sofa", f"{prefix}-{extra}-label": "ソファ", f"{prefix}-{extra}-amount": "800",
                 f"{prefix}-{extra}-position": "4"})
    response = admin_client.post(step_url(item), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert list(StepChoice.objects.filter(step=item).values_list("value", flat=True)) == ["tansu", "bed", "other", "sofa"]


@pytest.mark.django_db
def test_condition_builder_saves_structured_condition(admin_client):
    version = valid_draft()
    name = version.steps.get(key="name")
    data = form_data(admin_client.get(step_url(name)))
    data.update(
        condition_combine="any",
        rule1_step="item",
        rule1_op="one_of",
        rule1_value="tansu, ベッド",
        rule2_step="count",
        rule2_op="compare",
        rule2_operator="ge",
        rule2_value="３",
    )
    response = admin_client.post(step_url(name), data)
    assert response.status_code == 302 and response.url.startswith(version_url(version))
    name.refresh_from_db()
    assert name.condition == {
        "any": [
            {"step": "item", "op": "one_of", "values": ["tansu", "bed"]},
            {"step": "count", "op": "compare", "operator": "ge", "value": 3},
        ]
    }
    # Shown again in the builder, and in words on the version page.
    form = admin_client.get(step_url(name)).context["adminform"].form
    assert form["rule1_value"].value() == "tansu, bed" and form["rule2_operator"].value() == "ge"
    assert "品目 が タンス・ベッド のいずれか または 個数 が 3点 以上" in admin_client.get(version_url(version)).content.decode()


@pytest.mark.django_db
def test_condition_builder_clears_the_condition_when_rules_are_empty(admin_client):
    version = valid_draft()
    reason = version.steps.get(key="reason")
    data = form_data(admin_client.get(step_url(reason)))
    data.update(rule1_step="", rule1_op="", rule1_value="")
    admin_client.post(step_url(reason), data)
    reason.refresh_from_db()
    assert reason.condition is None


@pytest.mark.django_db
def test_condition_builder_offers_only_earlier_questions(admin_client):
    version = valid_draft()
    form = admin_client.get(step_url(version.steps.get(key="count"))).context["adminform"].form
    offered = [key for key, _label in form.fields["rule1_step"].choices if key]
    assert offered == ["item", "reason"]


@pytest.mark.django_db
def test_condition_builder_rejects_later_step(admin_client):
    version = valid_draft()
    reason = version.steps.get(key="reason")
    data = form_data(admin_client.get(step_url(reason)))
    data.update(rule1_step="count", rule1_op="answered", rule1_value="")
    response = admin_client.post(step_url(reason), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["rule1_step"]
    assert "このステップより後にあります" in errors[0]
    reason.refresh_from_db()
    assert reason.condition == {"step": "item", "op": "equals", "value": "other"}


@pytest.mark.django_db
def test_condition_builder_rejects_number_rule_with_text_value(admin_client):
    version = valid_draft()
    name = version.steps.get(key="name")
    data = form_data(admin_client.get(step_url(name)))
    data.update(rule1_step="count", rule1_op="compare", rule1_operator="gt", rule1_value="たくさん")
    response = admin_client.post(step_url(name), data)
    assert response.status_code == 200
    assert "数値ではありません" in response.context["adminform"].form.errors["rule1_value"][0]


@pytest.mark.django_db
def test_condition_builder_rejects_unknown_choice_value(admin_client):
    version = valid_draft()
    name = version.steps.get(key="name")
    data = form_data(admin_client.get(step_url(name)))
    data.update(rule1_step="item", rule1_op="equals", rule1_value="piano")
    response = admin_client.post(step_url(name), data)
    assert "選択肢にありません" in response.context["adminform"].form.errors["rule1_value"][0]


@pytest.mark.django_db
def test_condition_builder_keeps_nested_condition_it_cannot_show(admin_client):
    version = valid_draft()
    nested = {"all": [{"step": "item", "op": "equals", "value": "tansu"}, {"any": [
        {"step": "count", "op": "compare", "operator": "gt", "value": 2},
        {"step": "count", "op": "not_answered"},
    ]}]}
    name = version.steps.get(key="name")
    name.condition = nested
    name.save()
    page = admin_client.get(step_url(name))
    html = page.content.decode()
    assert "そのまま保存されます" in html and "&quot;any&quot;" in html
    assert page.context["adminform"].form.fields["rule1_step"].disabled
    data = form_data(page)
    data.update(label="お名前（漢字）", rule1_step="item", rule1_op="answered")
    response = admin_client.post(step_url(name), data)
    assert response.status_code == 302
    name.refresh_from_db()
    assert name.condition == nested and name.label == "お名前（漢字）"


@pytest.mark.django_db
def test_step_key_must_be_valid_and_unique(admin_client):
    version = valid_draft()
    name = version.steps.get(key="name")
    data = form_data(admin_client.get(step_url(name)))
    data["key"] = "count"
    errors = admin_client.post(step_url(name), data).context["adminform"].form.errors
    assert "別のステップで使われています" in errors["key"][0]
    data["key"] = "お名前"
    errors = admin_client.post(step_url(name), data).context["adminform"].form.errors
    assert "半角英小文字" in errors["key"][0]


@pytest.mark.django_db
def test_date_step_weekdays_and_excluded_dates_without_json(admin_client):
    from procedures.tests.factories import DateStepFactory

    version = valid_draft()
    date = DateStepFactory(version=version, key="pickup_date", label="収集日")
    data = form_data(admin_client.get(step_url(date)))
    data.update(weekdays=["1", "4"], excluded_dates="2026-12-31\n2026-12-29\n")
    response = admin_client.post(step_url(date), data)
    assert response.status_code == 302
    date.refresh_from_db()
    assert date.weekdays == [1, 4] and date.excluded_dates == ["2026-12-29", "2026-12-31"]
    data.update(excluded_dates="12/31")
    errors = admin_client.post(step_url(date), data).context["adminform"].form.errors
    assert "日付として読めません" in errors["excluded_dates"][0]


@pytest.mark.django_db
def test_computed_value_terms_are_edited_as_rows(admin_client):
    version = valid_draft()
    page = admin_client.get(version_url(version))
    data = form_data(page)
    prefix = next(inline.formset.prefix for inline in page.context["inline_admin_formsets"])
    assert data[f"{prefix}-0-terms_0_step"] == "item"
    data.update({f"{prefix}-0-terms_1_step": "count", f"{prefix}-0-terms_1_factor": "200"})
    response = admin_client.post(version_url(version), data)
    assert response.status_code == 302, response.context and response.context["inline_admin_formsets"][0].formset.errors
    fee = ComputedValue.objects.get(version=version, key="fee")
    assert fee.terms == [{"step": "item", "factor": 1}, {"step": "count", "factor": 200}]


# --------------------------------------------------------------------------
# Templates: import and export
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_creates_a_draft_and_opens_it(admin_client):
    department = DepartmentFactory()
    upload = SimpleUploadedFile("template.json", template_bytes(simple_spec_data("ORIG")), "application/json")
    response = admin_client.post(
        reverse("admin:procedures_procedure_import"),
        {"file": upload, "department": department.pk, "receipt_prefix": "copy1"},
    )
    procedure = Procedure.objects.get(receipt_prefix="COPY1")
    assert procedure.department == department
    assert response.status_code == 302 and response.url == version_url(procedure.draft)


@pytest.mark.django_db
def test_department_staff_import_only_into_their_own_department_and_see_no_other(client):
    own, other = DepartmentFactory(name="環境課"), DepartmentFactory(name="福祉課")
    user = StaffUserFactory(username="builder", is_superuser=False)
    StaffMembership.objects.create(user=user, role=Role.DEPARTMENT_STAFF, department=own)
    client.force_login(user)
    page = client.get(reverse("admin:procedures_procedure_import")).content.decode()
    assert "環境課" in page and "福祉課" not in page
    upload = SimpleUploadedFile("template.json", template_bytes(simple_spec_data("ELSE")), "application/json")
    response = client.post(
        reverse("admin:procedures_procedure_import"), {"file": upload, "department": other.pk, "receipt_prefix": "else1"}
    )
    assert response.status_code == 403  # a department the page never offered (the scope guard)
    assert not Procedure.objects.filter(receipt_prefix="ELSE1").exists()


@pytest.mark.django_db
def test_import_reports_problems_and_creates_nothing(admin_client):
    data = simple_spec_data("BROKEN")
    data["steps"][1]["key"] = "kind"  # duplicate key
    data["steps"].append({"key": "late", "kind": "teleport", "label": "?"})  # unknown kind
    raw = template_bytes(data)
    with pytest.raises(ProblemsError) as expected:
        procedure_import(raw=raw, max_bytes=1_000_000)
    assert expected.value.messages
    before = Procedure.objects.count()
    response = admin_client.post(
        reverse("admin:procedures_procedure_import"),
        {"file": SimpleUploadedFile("broken.json", raw, "application/json")},
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "読み込めませんでした" in html
    assert response.context["problems"] == expected.value.messages
    for message in expected.value.messages:
        assert f"<li>{escape(message)}</li>" in html
    assert Procedure.objects.count() == before


@pytest.mark.django_db
def test_import_refuses_oversized_file(admin_client, settings, monkeypatch):
    settings.PROCEDURE_IMPORT_MAX_BYTES = 1024
    monkeypatch.setattr(procedures_admin, "procedure_import", pytest.fail)  # never read nor imported
    raw = template_bytes({**simple_spec_data("HUGE"), "description": "あ" * 2000})
    response = admin_client.post(
        reverse("admin:procedures_procedure_import"), {"file": SimpleUploadedFile("huge.json", raw, "application/json")}
    )
    assert response.status_code == 200
    assert "ファイルが大きすぎます" in response.content.decode()
    assert not Procedure.objects.filter(receipt_prefix="HUGE").exists()


@pytest.mark.django_db
def test_export_downloads_json_that_imports_again(admin_client):
    version = published_version(name="住民票の写しの郵送請求", receipt_prefix="JUMIN")
    response = admin_client.post(
        reverse("admin:procedures_procedure_changelist"),
        {"action": "export_templates", "_selected_action": [version.procedure_id]},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert 'filename="procedure-JUMIN.json"' in response["Content-Disposition"]
    envelope = json.loads(response.content)
    assert envelope["procedure"]["name"] == "住民票の写しの郵送請求"

    upload = SimpleUploadedFile("procedure-JUMIN.json", response.content, "application/json")
    admin_client.post(reverse("admin:procedures_procedure_import"), {"file": upload, "receipt_prefix": "JUMIN2"})
    copy = Procedure.objects.get(receipt_prefix="JUMIN2")
    assert copy.name == "住民票の写しの郵送請求"
    assert steps_in_order(copy.draft) == ["item", "reason", "count", "name", "confirm", "done"]
    assert version_problems(copy.draft) == []


@pytest.mark.django_db
def test_export_of_several_procedures_downloads_a_zip(admin_client):
    first = published_version(receipt_prefix="AAA")
    second = valid_draft(receipt_prefix="BBB")
    response = admin_client.post(
        reverse("admin:procedures_procedure_changelist"),
        {"action": "export_templates", "_selected_action": [first.procedure_id, second.procedure_id]},
    )
    assert response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert sorted(archive.namelist()) == ["procedure-AAA.json", "procedure-BBB.json"]
        assert json.loads(archive.read("procedure-BBB.json"))["format"] == "govtech.procedure"


# --------------------------------------------------------------------------
# Applications
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_test_applications_are_hidden_from_application_list(admin_client):
    version = published_version()
    ApplicationFactory(version=version, receipt_number="T0001-2026-000001")
    ApplicationFactory(version=version, receipt_number="TEST-T0001-2026-000001", is_test=True)
    url = reverse("admin:procedures_application_changelist")
    html = admin_client.get(url).content.decode()
    assert "T0001-2026-000001" in html and "TEST-T0001-2026-000001" not in html
    assert "テスト申請を表示" in html
    shown = admin_client.get(url + "?tests=show").content.decode()
    assert "TEST-T0001-2026-000001" in shown and ">T0001-2026-000001<" in shown
    only = admin_client.get(url + "?tests=only").content.decode()
    assert "TEST-T0001-2026-000001" in only and ">T0001-2026-000001<" not in only


@pytest.mark.django_db
def test_application_list_searches_by_receipt_number(admin_client):
    version = published_version()
    ApplicationFactory(version=version, receipt_number="SODAI-2026-000007")
    ApplicationFactory(version=version, receipt_number="SODAI-2026-000008")
    html = admin_client.get(reverse("admin:procedures_application_changelist") + "?q=000007").content.decode()
    assert "SODAI-2026-000007" in html and "SODAI-2026-000008" not in html


@pytest.mark.django_db
def test_sensitive_answers_are_masked_on_application_page(admin_client):
    version = published_version()
    application = ApplicationFactory(
        version=version,
        answers={"item": "tansu", "count": 2, "name": "山田太郎"},
        computed={"fee": 1200},
    )
    html = admin_client.get(reverse("admin:procedures_application_change", args=[application.pk])).content.decode()
    assert "山田太郎" not in html
    assert "●●●●" in html
    assert "品目" in html and "タンス" in html and "2点" in html and "1200円" in html


@pytest.mark.django_db
def test_applications_are_read_only(admin_client):
    application = ApplicationFactory(answers={"name": "山田太郎"})
    url = reverse("admin:procedures_application_change", args=[application.pk])
    assert admin_client.post(url, {"receipt_number": "X"}).status_code == 403
    assert admin_client.get(reverse("admin:procedures_application_add")).status_code == 403
    assert admin_client.post(reverse("admin:procedures_application_delete", args=[application.pk])).status_code == 403
    assert Application.objects.get(pk=application.pk).answers == {"name": "山田太郎"}


# --------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------


def test_condition_rules_round_trip():
    leaf = {"step": "item", "op": "equals", "value": "tansu"}
    assert condition_to_rules(None) == ("all", [])
    assert condition_to_rules(leaf) == ("all", [leaf])
    assert condition_to_rules({"any": [leaf, leaf]}) == ("any", [leaf, leaf])
    assert condition_to_rules({"all": [leaf, {"any": [leaf]}]}) is None
    assert condition_to_rules({"all": [leaf] * 4}) is None
    assert condition_to_rules({**leaf, "note": "x"}) is None
    assert rules_to_condition("any", []) is None
    assert rules_to_condition("any", [leaf]) == leaf
    assert rules_to_condition("any", [leaf, leaf]) == {"any": [leaf, leaf]}


def test_rule_values_follow_the_referenced_question():
    yes_no = {"key": "in_city", "kind": "yes_no", "label": "市内ですか"}
    assert rule_to_leaf("equals", "", "いいえ", yes_no) == {"step": "in_city", "op": "equals", "value": False}
    number = {"key": "count", "kind": "number", "label": "個数"}
    assert rule_to_leaf("one_of", "", "1、２", number) == {"step": "count", "op": "one_of", "values": [1, 2]}
    text = {"key": "memo", "kind": "short_text", "label": "メモ"}
    assert rule_to_leaf("not_answered", "", "ignored", text) == {"step": "memo", "op": "not_answered"}
    with pytest.raises(RuleError, match="ステップにだけ使えます"):
        rule_to_leaf("compare", "gt", "3", text)
    assert parse_number("1,200") == 1200 and parse_number("2.5") == 2.5 and parse_number("abc") is None
    assert split_values("a, b，c、") == ["a", "b", "c"]


def test_order_after_move():
    assert order_after_move([1, 2, 3], 3, "up") == [1, 3, 2]
    assert order_after_move([1, 2, 3], 1, "down") == [2, 1, 3]
    assert order_after_move([1, 2, 3], 1, "up") == [1, 2, 3]
    assert order_after_move([1, 2, 3], 9, "up") == [1, 2, 3]
