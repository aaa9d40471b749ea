"""Mapping a step to the resident's profile (Step.profile_target): checks, the builder, templates, submission."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from procedures.correspondence import application_resubmit
from procedures.engine.types import Submit
from procedures.models import CorrectionRequest, Step
from procedures.services import (
    ProblemsError,
    application_submit,
    draft_get_or_create,
    procedure_export_data,
    procedure_import,
    version_problems,
    version_publish,
)
from procedures.spec import SpecError, parse_spec, spec_to_dict, validate_spec
from procedures.tests.admin_browser import form_data
from procedures.tests.factories import (
    CompletionStepFactory,
    ConfirmationStepFactory,
    DateStepFactory,
    MultipleChoiceStepFactory,
    NumberStepFactory,
    ProcedureFactory,
    ProcedureVersionFactory,
    ShortTextStepFactory,
    SingleChoiceStepFactory,
    YesNoStepFactory,
)
from procedures.tests.spec_data import simple_spec_data, template_bytes
from residents.models import Attribute, ProfileChange
from residents.tests.factories import AttributeFactory, CategoryFactory, ResidentFactory

JST = dt.timezone(dt.timedelta(hours=9))
NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=JST)
DISTRICTS = [("north", "北地区"), ("south", "南地区")]


@pytest.fixture
def profile_world(db):
    """Attributes and categories the mapped demo procedure below writes."""
    return {
        "district": AttributeFactory(
            key="district", label="地区", kind=Attribute.Kind.SINGLE_CHOICE, choices=DISTRICTS
        ),
        "children": AttributeFactory(
            key="children",
            label="子どもの有無",
            kind=Attribute.Kind.SINGLE_CHOICE,
            choices=[("yes", "いる"), ("no", "いない")],
        ),
        "household": AttributeFactory(key="household", label="世帯人数", kind=Attribute.Kind.NUMBER),
        "moved_in": AttributeFactory(key="moved_in", label="転入日", kind=Attribute.Kind.DATE),
        "school": AttributeFactory(key="school", label="学校", kind=Attribute.Kind.TEXT),
        "categories": [CategoryFactory(key="bousai", name="防災"), CategoryFactory(key="event", name="イベント")],
    }


def mapped_draft(**targets):
    """A publishable draft with one step per mappable kind; `targets` overrides a step's profile_target."""
    version = ProcedureVersionFactory(procedure=ProcedureFactory(keywords="転入"))
    wanted = {
        "district": "attribute:district",
        "children": "attribute:children",
        "household": "attribute:household",
        "moved_in": "attribute:moved_in",
        "school": "attribute:school",
        "topics": "categories",
        **targets,
    }
    SingleChoiceStepFactory(
        version=version, key="district", label="地区", choices=DISTRICTS, profile_target=wanted["district"]
    )
    YesNoStepFactory(version=version, key="children", label="お子さんはいますか", profile_target=wanted["children"])
    NumberStepFactory(version=version, key="household", label="世帯人数", profile_target=wanted["household"])
    DateStepFactory(
        version=version, key="moved_in", label="転入日", min_days=-3650, max_days=0, profile_target=wanted["moved_in"]
    )
    ShortTextStepFactory(version=version, key="school", label="学校", profile_target=wanted["school"])
    MultipleChoiceStepFactory(
        version=version,
        key="topics",
        label="受け取る分野",
        choices=[("bousai", "防災"), ("event", "イベント")],
        profile_target=wanted["topics"],
    )
    ShortTextStepFactory(version=version, key="name", label="お名前", sensitive=True)
    ConfirmationStepFactory(version=version, key="confirm")
    CompletionStepFactory(version=version, key="done")
    return version


ANSWERS = {
    "district": "south",
    "children": True,
    "household": 3,
    "moved_in": "2026-04-01",
    "school": "南小学校",
    "topics": ["bousai", "event"],
    "name": "小城 花子",
}


def submit(version, resident, *, key="s1", answers=None, now=NOW, **kwargs):
    effect = Submit(
        procedure_id=version.procedure_id,
        version_id=version.pk,
        submission_key=key,
        answers=answers or ANSWERS,
        computed={},
    )
    return application_submit(submit=effect, line_user_id=resident.line_user_id, resident=resident, now=now, **kwargs)


# --------------------------------------------------------------------------
# Checks: the spec alone, then against the attributes (publishing)
# --------------------------------------------------------------------------


def test_every_fitting_mapping_publishes(profile_world):
    version = mapped_draft()
    assert version_problems(version) == []
    published = version_publish(version=version)
    assert parse_spec(published.spec).get_step("topics").profile_target == "categories"


def test_a_malformed_target_is_refused_when_the_spec_is_read():
    data = simple_spec_data()
    data["steps"][0]["profile_target"] = "district"
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert [problem.code for problem in caught.value.problems] == ["bad_profile_target"]


def test_a_sensitive_step_cannot_be_mapped(profile_world):
    version = mapped_draft()
    Step.objects.filter(version=version, key="school").update(sensitive=True)

    with pytest.raises(ProblemsError) as caught:
        version_publish(version=version)

    assert caught.value.messages == [
        "5番目のステップ「学校」の住民の属性への保存先：機微情報のステップの回答は住民の属性に保存できません。"
        "保存先を外すか、機微情報の指定を外してください。"
    ]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (
            {"household": "attribute:district"},
            "3番目のステップ「世帯人数」の住民の属性への保存先：「数値」のステップの回答は「数値」の属性にだけ保存できます"
            "（「地区」は単一選択です）。",
        ),
        (
            {"school": "attribute:blood_type"},
            "5番目のステップ「学校」の住民の属性への保存先：住民の属性「blood_type」がありません。"
            "先に住民の属性を作成するか、保存先を外してください。",
        ),
        (
            {"topics": "attribute:district"},
            "6番目のステップ「受け取る分野」の住民の属性への保存先：「選択（複数）」のステップの回答は「複数選択」の属性にだけ"
            "保存できます（「地区」は単一選択です）。",
        ),
        (
            {"children": "attribute:household"},
            "2番目のステップ「お子さんはいますか」の住民の属性への保存先：「はい／いいえ」のステップの回答は「単一選択」の属性に"
            "だけ保存できます（「世帯人数」は数値です）。",
        ),
        (
            {"district": "categories"},
            "1番目のステップ「地区」の住民の属性への保存先：受信カテゴリに保存できるのは「選択（複数）」のステップだけです。",
        ),
    ],
)
def test_a_mapping_that_does_not_fit_the_attribute_blocks_publishing_with_a_clear_message(
    profile_world, targets, message
):
    version = mapped_draft(**targets)
    with pytest.raises(ProblemsError) as caught:
        version_publish(version=version)
    assert caught.value.messages == [message]
    assert draft_get_or_create(procedure=version.procedure) == version  # still the draft


def test_choice_values_must_be_the_attributes_or_the_categories_keys(profile_world):
    version = mapped_draft()
    Step.objects.get(version=version, key="district").choices.filter(value="south").update(value="east")
    Step.objects.get(version=version, key="topics").choices.filter(value="event").update(value="matsuri")

    assert version_problems(version) == [
        "1番目のステップ「地区」の住民の属性への保存先：選択肢の値「east」が属性「地区」の選択肢にありません。"
        "属性の選択肢の値：north、south",
        "6番目のステップ「受け取る分野」の住民の属性への保存先：選択肢の値「matsuri」は配信カテゴリのキーではありません。"
        "使えるキー：bousai、event",
    ]


def test_a_yes_no_step_needs_an_attribute_with_yes_and_no(profile_world):
    version = mapped_draft(children="attribute:district")
    assert version_problems(version) == [
        "2番目のステップ「お子さんはいますか」の住民の属性への保存先：はい／いいえの回答を保存するには、"
        "属性「地区」に値 yes と no の選択肢が必要です。"
    ]


# --------------------------------------------------------------------------
# Templates: export and import keep the mapping
# --------------------------------------------------------------------------


def test_export_and_import_round_trip_the_mapping(profile_world):
    version = version_publish(version=mapped_draft())
    envelope = procedure_export_data(procedure=version.procedure)
    targets = {step["key"]: step["profile_target"] for step in envelope["procedure"]["steps"]}
    assert targets["district"] == "attribute:district" and targets["topics"] == "categories" and targets["name"] == ""

    copy = procedure_import(
        raw=template_bytes({**envelope["procedure"], "receipt_prefix": "COPY"}), max_bytes=1_000_000
    )

    imported = dict(Step.objects.filter(version=copy.draft).values_list("key", "profile_target"))
    assert imported == targets
    spec = parse_spec(envelope["procedure"])
    assert parse_spec(spec_to_dict(spec)) == spec and validate_spec(spec) == []


def test_a_template_naming_an_attribute_the_city_lacks_imports_and_publishing_says_what_to_do(db):
    data = simple_spec_data()
    data["steps"][0]["profile_target"] = "attribute:district"
    procedure = procedure_import(raw=template_bytes(data), max_bytes=1_000_000)
    assert version_problems(procedure.draft) == [
        "1番目のステップ「種類を選んでください」の住民の属性への保存先：住民の属性「district」がありません。"
        "先に住民の属性を作成するか、保存先を外してください。"
    ]


# --------------------------------------------------------------------------
# The builder's step form
# --------------------------------------------------------------------------


def step_page(admin_client, step):
    from django.urls import reverse

    return reverse("admin:procedures_step_change", args=[step.pk])


def test_the_step_form_offers_only_fitting_targets_and_saves_the_choice(admin_client, profile_world):
    version = mapped_draft(household="")
    step = Step.objects.get(version=version, key="household")
    page = admin_client.get(step_page(admin_client, step))
    offered = [value for value, _label in page.context["adminform"].form.fields["profile_target"].choices]
    assert offered == ["", "attribute:household"]

    data = form_data(page)
    data["profile_target"] = "attribute:household"
    assert admin_client.post(step_page(admin_client, step), data).status_code == 302
    step.refresh_from_db()
    assert step.profile_target == "attribute:household"


def test_the_step_form_refuses_a_target_of_another_kind_and_a_sensitive_step(admin_client, profile_world):
    version = mapped_draft(school="")
    step = Step.objects.get(version=version, key="school")
    url = step_page(admin_client, step)
    data = form_data(admin_client.get(url))

    response = admin_client.post(url, {**data, "profile_target": "attribute:household"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["profile_target"] == [
        "「一行テキスト」のステップの回答は「テキスト」の属性にだけ保存できます（「世帯人数」は数値です）。"
    ]

    response = admin_client.post(url, {**data, "profile_target": "attribute:school", "sensitive": "on"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["profile_target"] == [
        "住民の属性への保存先：機微情報のステップの回答は住民の属性に保存できません。保存先を外すか、機微情報の指定を外してください。"
    ]
    step.refresh_from_db()
    assert step.profile_target == "" and not step.sensitive


# --------------------------------------------------------------------------
# Submission writes the profile
# --------------------------------------------------------------------------


def test_submitting_writes_the_mapped_answers_with_the_receipt_number_as_source(profile_world):
    version = version_publish(version=mapped_draft())
    resident = ResidentFactory()

    application = submit(version, resident)

    changes = {
        (change.attribute.key if change.attribute else "categories"): change
        for change in ProfileChange.objects.filter(resident=resident)
    }
    assert {key: change.value for key, change in changes.items()} == {
        "district": "south",
        "children": "yes",
        "household": 3,
        "moved_in": "2026-04-01",
        "school": "南小学校",
        "categories": ["bousai", "event"],
    }
    assert {(c.source, c.source_detail, c.changed_at) for c in changes.values()} == {
        ("procedure", application.receipt_number, NOW)
    }
    resident.refresh_from_db()
    assert resident.receive_settings_at == NOW
    assert sorted(resident.categories.values_list("key", flat=True)) == ["bousai", "event"]
    # The sensitive answer stays in the application only.
    assert "小城 花子" not in str(list(ProfileChange.objects.values_list("previous", "value", "source_detail")))


def test_a_second_application_with_the_same_answers_records_no_history(profile_world):
    version = version_publish(version=mapped_draft())
    resident = ResidentFactory()
    submit(version, resident, key="s1")
    submit(version, resident, key="s2", answers={**ANSWERS, "household": 4}, now=NOW + dt.timedelta(days=1))

    later = ProfileChange.objects.filter(changed_at=NOW + dt.timedelta(days=1))
    assert [(change.attribute.key, change.previous, change.value) for change in later] == [("household", 3, 4)]


def test_skipped_questions_leave_the_profile_as_it_is(profile_world):
    version = version_publish(version=mapped_draft())
    resident = ResidentFactory()
    submit(version, resident, key="s1")
    submit(version, resident, key="s2", answers={"district": "north"}, now=NOW + dt.timedelta(days=1))

    assert ProfileChange.objects.filter(changed_at=NOW + dt.timedelta(days=1)).count() == 1
    assert resident.categories.count() == 2


def test_a_correction_writes_the_answers_it_changed_and_leaves_the_rest_to_later_applications(profile_world):
    version = version_publish(version=mapped_draft())
    resident = ResidentFactory()
    first = submit(version, resident, key="s1")
    submit(version, resident, key="s2", answers={"district": "north"}, now=NOW + dt.timedelta(days=1))
    correction = CorrectionRequest.objects.create(
        application=first, keys=["household"], reason="世帯人数をご確認ください。", return_status=first.status,
        token="t" * 24, created_at=NOW + dt.timedelta(days=2),
    )
    corrected_at = NOW + dt.timedelta(days=3)

    application_resubmit(
        correction=correction, answers={**ANSWERS, "household": 5}, computed={}, token="t" * 24,
        line_user_id=resident.line_user_id, now=corrected_at,
    )

    changes = ProfileChange.objects.filter(changed_at=corrected_at)
    assert [(c.attribute.key, c.previous, c.value, c.source_detail) for c in changes] == [
        ("household", 3, 5, first.receipt_number)
    ]
    # The district the later application set is not put back by the unchanged answer of the first.
    assert resident.attribute_values.get(attribute__key="district").value_text == "north"


def test_test_applications_and_applications_without_a_resident_change_no_profile(profile_world, django_user_model):
    version = version_publish(version=mapped_draft())
    resident = ResidentFactory()
    submit(version, resident, is_test=True)
    effect = Submit(
        procedure_id=version.procedure_id, version_id=version.pk, submission_key="p1", answers=ANSWERS, computed={}
    )
    application_submit(submit=effect, line_user_id="", resident=None, now=NOW)
    assert not ProfileChange.objects.exists()


def test_a_mapping_gone_stale_is_skipped_and_logged_without_the_answer(profile_world, caplog):
    version = version_publish(version=mapped_draft())
    Attribute.objects.filter(key="district").update(choices=[{"value": "north", "label": "北地区"}])
    resident = ResidentFactory()

    with caplog.at_level(logging.WARNING, logger="residents.procedure_profile"):
        application = submit(version, resident)

    assert application.pk is not None
    assert not ProfileChange.objects.filter(attribute__key="district").exists()
    assert ProfileChange.objects.filter(attribute__key="household").exists()  # the others were written
    assert application.receipt_number in caplog.text and "district" in caplog.text
    assert "south" not in caplog.text
