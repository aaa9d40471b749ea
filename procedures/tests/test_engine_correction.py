"""Correction conversations in the engine: only the marked steps (and what a changed answer brings) are asked."""

from __future__ import annotations

from procedures.engine import CORRECTION_EVENT, Event, Resubmit, Submit
from procedures.tests.engine_fixtures import Conversation, catalog_of, choices, make_spec, step_dict

SPEC = make_spec(
    step_dict("kind", "single_choice", "種類", choices=choices("a", "b", "c")),
    step_dict("name", "short_text", "お名前", sensitive=True),
    step_dict("extra", "short_text", "Aの詳細", condition={"step": "kind", "op": "equals", "value": "a"}),
    step_dict("detail", "short_text", "Bの詳細", condition={"step": "kind", "op": "equals", "value": "b"}),
    step_dict("photo", "image", "写真"),
    step_dict("note", "short_text", "備考", required=False),
)
PHOTO = {"ref": "old.jpg", "content_type": "image/jpeg", "size": 100}
ORIGINAL = {"kind": "b", "name": "山田", "detail": "青い", "photo": PHOTO}


def correction_event(keys, *, answers=None, correction_id=7, version_id=10, **data) -> Event:
    return Event(
        type=CORRECTION_EVENT,
        data={
            "correction_id": correction_id,
            "token": "tok",
            "procedure_id": 1,
            "version_id": version_id,
            "receipt_number": "SODAI-2026-000001",
            "answers": dict(ORIGINAL) if answers is None else answers,
            "keys": list(keys),
            **data,
        },
    )


def correcting(keys, **kwargs) -> Conversation:
    conversation = Conversation(catalog_of(SPEC))
    conversation.send(correction_event(keys, **kwargs))
    return conversation


def asked(conversation: Conversation) -> str:
    questions = [m for m in conversation.result.messages if m.code == "question"]
    assert questions, conversation.codes
    return questions[-1].params["label"]


def resubmits(conversation: Conversation) -> list[Resubmit]:
    return [effect for effect in conversation.submits() if isinstance(effect, Resubmit)]


def summary(conversation: Conversation):
    assert conversation.codes[-1] == "summary", conversation.codes
    return conversation.last


def test_correction_asks_only_the_marked_step_then_confirms_and_resubmits():
    conversation = correcting(["name"])
    assert conversation.codes == ["correction.started", "question"]
    assert conversation.result.messages[0].params["labels"] == ["お名前"]
    assert asked(conversation) == "お名前"
    conversation.say("山田 太郎")
    card = summary(conversation)
    assert [row.key for row in card.rows] == ["kind", "name", "detail", "photo", "note"]
    # Only the marked step can be changed from the card; the button says it is a resubmission.
    assert [row.key for row in card.rows if row.edit is not None] == ["name", "note"]
    assert card.actions[0].code == "action.resubmit"
    conversation.tap("action.resubmit")
    assert conversation.codes == ["correction.completed"]
    assert conversation.result.messages[0].params["receipt_number"] == "SODAI-2026-000001"
    [effect] = resubmits(conversation)
    assert effect.correction_id == 7 and effect.token == "tok" and effect.version_id == 10
    assert effect.answers == {**ORIGINAL, "name": "山田 太郎"}
    assert not any(isinstance(effect, Submit) for effect in conversation.submits())
    assert conversation.session is None


def test_a_changed_answer_that_makes_a_step_applicable_asks_it_and_drops_the_old_one():
    conversation = correcting(["kind"])
    assert asked(conversation) == "種類"
    conversation.tap("action.choice", label="A")
    # "Aの詳細" now applies and was never answered: asked. "Bの詳細" no longer applies: dropped.
    assert asked(conversation) == "Aの詳細"
    conversation.say("赤い")
    card = summary(conversation)
    assert "detail" not in [row.key for row in card.rows]
    conversation.tap("action.resubmit")
    [effect] = resubmits(conversation)
    assert effect.answers == {"kind": "a", "name": "山田", "extra": "赤い", "photo": PHOTO}


def test_a_changed_answer_that_removes_a_step_goes_straight_to_the_confirmation():
    conversation = correcting(["kind"])
    conversation.tap("action.choice", label="C")
    card = summary(conversation)
    assert [row.key for row in card.rows] == ["kind", "name", "photo", "note"]
    conversation.tap("action.resubmit")
    [effect] = resubmits(conversation)
    assert effect.answers == {"kind": "c", "name": "山田", "photo": PHOTO}


def test_an_image_step_is_asked_again_and_the_new_image_replaces_the_old():
    conversation = correcting(["photo"])
    assert asked(conversation) == "写真"
    new_photo = {"ref": "new.png", "content_type": "image/png", "size": 200}
    conversation.send(Event(type="image", data=new_photo))
    conversation.tap("action.resubmit")
    [effect] = resubmits(conversation)
    assert effect.answers["photo"] == new_photo


def test_several_marked_steps_are_asked_in_step_order():
    conversation = correcting(["photo", "name"])
    assert asked(conversation) == "お名前"
    conversation.send(Event(type="command", name="keep"))
    assert asked(conversation) == "写真"


def test_an_unmarked_step_cannot_be_edited_from_the_confirmation_or_reached_by_back():
    conversation = correcting(["photo"])
    result = conversation.send(Event(type="command", name="back"))
    assert result.messages[0].code == "nav.cannot_go_back"
    conversation.send(Event(type="image", data={"ref": "x.png", "content_type": "image/png", "size": 1}))
    card = summary(conversation)
    assert card.rows[0].key == "kind" and card.rows[0].edit is None
    forged = Event(type="command", name="edit", value="kind", step="confirm", session=conversation.session["id"])
    conversation.send(forged)
    assert conversation.codes == ["button.stale", "summary"]


def test_a_second_tap_while_correcting_says_it_is_in_progress_and_changes_nothing():
    conversation = correcting(["name"])
    before = conversation.state
    conversation.send(correction_event(["name"]))
    assert conversation.codes == ["correction.in_progress", "question"]
    assert conversation.session["correction"] == before["session"]["correction"]
    conversation.send(correction_event(["name"], correction_id=8))
    assert conversation.codes == ["correction.finish_current_first", "question"]


def test_a_correction_tap_during_another_procedure_keeps_that_procedure():
    conversation = Conversation(catalog_of(SPEC))
    conversation.say("粗大ごみ")
    session = conversation.session["id"]
    conversation.send(correction_event(["name"]))
    assert conversation.codes == ["correction.finish_current_first", "question"]
    assert conversation.session["id"] == session and conversation.session.get("correction") is None


def test_cancelling_a_correction_ends_it_without_effects():
    conversation = correcting(["name"])
    conversation.send(Event(type="command", name="cancel"))
    conversation.send(Event(type="command", name="confirm_cancel"))
    assert conversation.codes == ["session.cancelled"]
    assert conversation.session is None and resubmits(conversation) == []


def test_a_double_tap_on_resubmit_is_already_submitted():
    conversation = correcting(["name"])
    conversation.say("山田 次郎")
    submit = conversation.action("action.resubmit").event
    conversation.send(submit)
    conversation.send(submit)
    assert conversation.codes[0] == "procedure.already_submitted"
    assert len(resubmits(conversation)) == 1


def test_a_correction_for_an_unknown_version_or_without_valid_keys_is_unavailable():
    for event in (
        correction_event(["name"], version_id=99),
        correction_event(["nope", "confirm"]),
        correction_event(["name"], answers="not a dict"),
        correction_event(["name"], correction_id="7"),
    ):
        conversation = Conversation(catalog_of(SPEC))
        conversation.send(event)
        assert conversation.codes == ["correction.unavailable"]
        assert conversation.session is None


def test_a_damaged_correction_in_the_state_resets_the_session():
    conversation = correcting(["name"])
    state = dict(conversation.state)
    state["session"] = {**state["session"], "correction": {"id": "x"}}
    conversation.state = state
    conversation.say("山田")
    assert conversation.codes[0] == "session.reset"
