import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from procedures.engine.types import Submit
from procedures.models import Application, Procedure, ProcedureVersion, ShortTextStep, Step
from procedures.selectors import application_list, version_spec_data
from procedures.services import (
    ProblemsError,
    application_submit,
    draft_get_or_create,
    procedure_export_data,
    procedure_import,
    version_problems,
    version_publish,
    version_restore,
)
from procedures.tests.spec_data import simple_spec_data, template_bytes

pytestmark = pytest.mark.django_db
JST = dt.timezone(dt.timedelta(hours=9))


def make_procedure(prefix="TEST", data=None) -> Procedure:
    data = data or simple_spec_data(prefix)
    return procedure_import(raw=template_bytes(data), max_bytes=1_000_000)


def publish(procedure) -> ProcedureVersion:
    return version_publish(version=draft_get_or_create(procedure=procedure))


def submit_for(version, key="s1", answers=None) -> Submit:
    return Submit(
        procedure_id=version.procedure_id,
        version_id=version.pk,
        submission_key=key,
        answers=answers or {"kind": "a", "copies": 2},
        computed={"fee": 600},
    )


def test_import_creates_a_draft_with_the_steps_in_order():
    procedure = make_procedure()
    draft = procedure.draft
    assert draft is not None and draft.number == 1
    assert [step.key for step in draft.steps.order_by("position")] == ["kind", "copies", "reason", "phone", "confirm", "done"]
    assert isinstance(Step.objects.get(version=draft, key="phone"), ShortTextStep)
    assert version_spec_data(draft)["steps"][0]["choices"][1] == {"value": "b", "label": "B", "amount": 200}


def test_publish_freezes_spec_and_opens_procedure():
    procedure = make_procedure()
    version = publish(procedure)
    procedure.refresh_from_db()
    assert procedure.is_open and procedure.current_version == version
    assert version.status == "published" and version.spec["steps"][3]["sensitive"] is True
    assert version.spec["version_id"] == version.pk


def test_published_version_steps_cannot_be_changed():
    version = publish(make_procedure())
    step = version.steps.get(key="copies")
    step.label = "changed"
    with pytest.raises(Exception, match="公開済み"):
        step.save()


def test_publish_refuses_with_every_problem_in_words():
    data = simple_spec_data()
    data["steps"] = [
        {"key": "a", "kind": "single_choice", "label": "選択", "choices": [{"value": "x", "label": "X"}]},
        {"key": "b", "kind": "short_text", "label": "文章", "condition": {"step": "zzz", "op": "answered"}},
        {"key": "done", "kind": "completion", "label": "完了"},
    ]
    with pytest.raises(ProblemsError) as error:
        procedure_import(raw=template_bytes(data), max_bytes=1_000_000)
    text = "\n".join(error.value.messages)
    assert "zzz" in text
    assert Procedure.objects.count() == 0


def test_draft_problems_are_listed_before_publishing():
    procedure = make_procedure()
    draft = procedure.draft
    draft.steps.get(key="confirm").delete()
    problems = version_problems(draft)
    assert problems and all(isinstance(p, str) and p for p in problems)
    with pytest.raises(ProblemsError):
        version_publish(version=draft)
    draft.refresh_from_db()
    assert draft.is_draft


def test_new_draft_copies_the_published_version_and_restore_brings_old_one_back():
    procedure = make_procedure()
    first = publish(procedure)
    draft = draft_get_or_create(procedure=procedure)
    assert draft.number == 2 and draft.steps.count() == first.steps.count()
    draft.steps.get(key="reason").delete()
    second = version_publish(version=draft)
    assert "reason" not in [s["key"] for s in second.spec["steps"]]
    restored = version_restore(version=first)
    assert restored.is_draft and restored.number == 3 and restored.restored_from == first
    assert [s["key"] for s in version_spec_data(restored)["steps"]] == [s["key"] for s in first.spec["steps"]]


def test_export_then_import_round_trips():
    procedure = make_procedure()
    version = publish(procedure)
    data = procedure_export_data(procedure=procedure)
    data["procedure"]["receipt_prefix"] = "COPY"
    import json

    copy = procedure_import(raw=json.dumps(data).encode(), max_bytes=1_000_000)
    copied = version_spec_data(copy.draft)
    original = dict(version.spec)
    for spec in (copied, original):
        spec.pop("procedure_id"), spec.pop("version_id"), spec.pop("receipt_prefix")
    assert copied == original


def test_receipt_numbers_count_per_procedure_and_year():
    version = publish(make_procedure())
    other = publish(make_procedure(prefix="OTHER"))
    with time_machine.travel(dt.datetime(2026, 12, 31, 23, 0, tzinfo=JST), tick=False):
        first = application_submit(submit=submit_for(version, "k1"), line_user_id="U1")
        second = application_submit(submit=submit_for(version, "k2"), line_user_id="U1")
        elsewhere = application_submit(submit=submit_for(other, "k3"), line_user_id="U1")
    with time_machine.travel(dt.datetime(2027, 1, 1, 0, 30, tzinfo=JST), tick=False):
        next_year = application_submit(submit=submit_for(version, "k4"), line_user_id="U1")
    assert [first.receipt_number, second.receipt_number] == ["TEST-2026-000001", "TEST-2026-000002"]
    assert elsewhere.receipt_number == "OTHER-2026-000001"
    assert next_year.receipt_number == "TEST-2027-000001"


def test_repeated_submission_returns_the_first_application():
    version = publish(make_procedure())
    first = application_submit(submit=submit_for(version, "same"), line_user_id="U1")
    again = application_submit(submit=submit_for(version, "same"), line_user_id="U1")
    assert first.pk == again.pk
    assert Application.objects.count() == 1


def test_test_applications_use_their_own_numbers_and_stay_out_of_lists():
    version = publish(make_procedure())
    test = application_submit(submit=submit_for(version, "t"), line_user_id="sim-1", is_test=True)
    real = application_submit(submit=submit_for(version, "r"), line_user_id="U1")
    assert test.receipt_number.startswith("TEST-TEST-") and test.receipt_number.endswith("000001")
    assert real.receipt_number.endswith("000001")
    assert list(application_list()) == [real]


def test_submission_takes_a_bounded_number_of_queries():
    version = publish(make_procedure())
    with CaptureQueriesContext(connection) as queries:
        application_submit(submit=submit_for(version, "q"), line_user_id="U1")
    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    # lookup of a previous submission, version, counter (get, create on first use, update), insert,
    # and the procedure's active outgoing webhook endpoints (integrations/)
    assert len(statements) <= 7


def test_import_of_hostile_condition_values_and_deep_nesting_is_refused_in_words():
    data = simple_spec_data()
    data["steps"][2]["condition"] = {"step": "kind", "op": "one_of", "values": [["a"]]}
    with pytest.raises(ProblemsError):
        procedure_import(raw=template_bytes(data), max_bytes=1_000_000)
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ProblemsError, match="入れ子"):
        procedure_import(raw=deep, max_bytes=1_000_000)
    data = simple_spec_data()
    data["keywords"] = ["あ" * 51]
    with pytest.raises(ProblemsError):
        procedure_import(raw=template_bytes(data), max_bytes=1_000_000)
    assert Procedure.objects.count() == 0


# --------------------------------------------------------------------------
# Conversations through the service (engine + database)
# --------------------------------------------------------------------------


def say(text, user="U1", now=None):
    from procedures.engine.types import Event
    from procedures.services import conversation_handle

    return conversation_handle(line_user_id=user, event=Event(type="text", text=text), now=now)


def test_keyword_starts_published_procedure_and_state_is_saved():
    from procedures.models import ConversationSession

    version = publish(make_procedure())
    reply = say("テスト")
    assert reply.messages and reply.messages[-1].code == "question"
    state = ConversationSession.objects.get(line_user_id="U1").state
    assert state["session"]["version_id"] == version.pk and state["schema_version"] == 1


def test_procedure_closed_mid_conversation_ends_politely_and_submits_nothing():
    from procedures.models import ConversationSession
    from procedures.services import procedure_close

    procedure = make_procedure()
    publish(procedure)
    say("テスト")
    procedure_close(procedure=procedure)
    reply = say("A")
    assert [m.code for m in reply.messages][0] == "procedure.closed"
    assert ConversationSession.objects.get(line_user_id="U1").state["session"] is None
    assert Application.objects.count() == 0


def test_resident_finishes_on_the_version_they_started_after_a_new_publish():
    from procedures.models import ConversationSession

    procedure = make_procedure()
    first = publish(procedure)
    say("テスト")
    draft = draft_get_or_create(procedure=procedure)
    draft.steps.get(key="reason").delete()
    version_publish(version=draft)
    say("B")
    state = ConversationSession.objects.get(line_user_id="U1").state
    assert state["session"]["version_id"] == first.pk
    assert state["session"]["current"] == "copies"


def test_idle_session_expires_with_a_clear_message():
    start = dt.datetime(2026, 11, 23, 9, 0, tzinfo=JST)
    publish(make_procedure())
    say("テスト", now=start)
    reply = say("A", now=start + dt.timedelta(hours=25))
    assert reply.messages[0].code == "session.expired"


def test_catalog_never_serves_a_cached_spec_for_a_reused_version_id():
    from procedures.selectors import catalog_build

    version = publish(make_procedure())
    assert catalog_build().versions[version.pk].name == "テスト手続き"
    # Same id, published again with other content (as after a database restore).
    changed = {**version.spec, "name": "別の手続き"}
    ProcedureVersion.objects.filter(pk=version.pk).update(
        spec=changed, published_at=version.published_at + dt.timedelta(seconds=1)
    )
    assert catalog_build().versions[version.pk].name == "別の手続き"


def test_catalog_reads_spec_json_only_for_versions_not_parsed_yet():
    from procedures.selectors import catalog_build

    publish(make_procedure())
    catalog_build()
    with CaptureQueriesContext(connection) as queries:
        catalog_build()
    assert len(queries) == 1 and '"spec"' not in queries[0]["sql"]


def test_receipt_prefix_cannot_change_once_a_version_was_published():
    from django.core.exceptions import ValidationError

    procedure = make_procedure()
    procedure.receipt_prefix = "DRAFTOK"
    procedure.full_clean()  # a never-published procedure may still be renamed
    procedure.save()
    publish(procedure)
    procedure.refresh_from_db()
    procedure.receipt_prefix = "OTHER"
    with pytest.raises(ValidationError) as error:
        procedure.full_clean()
    assert "変更できません" in str(error.value)


def test_submission_clash_that_is_not_a_repeat_is_not_hidden():
    from django.db import IntegrityError

    version = publish(make_procedure())
    first = application_submit(submit=submit_for(version, "k1"), line_user_id="U1")
    # Force the next number to collide with an existing receipt from another submission.
    from procedures.models import ReceiptCounter

    ReceiptCounter.objects.update(last_number=0)
    with pytest.raises(IntegrityError):
        application_submit(submit=submit_for(version, "k2"), line_user_id="U2")
    assert Application.objects.get() == first


def test_out_of_range_numbers_in_a_template_are_refused_in_words():
    for path, value in [
        (("steps", 1, "options", "max"), 10**15),
        (("steps", 0, "choices", 0, "amount"), 10**12),
    ]:
        data = simple_spec_data()
        target = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        with pytest.raises(ProblemsError) as error:
            procedure_import(raw=template_bytes(data), max_bytes=1_000_000)
        assert any("範囲" in message for message in error.value.messages)
    assert Procedure.objects.count() == 0
