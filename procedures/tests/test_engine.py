"""Behaviour of the conversation engine, one scenario per test."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import jpholiday
import pytest

from procedures.engine import Catalog, Event, Submit, UnknownStepKind, get_handler, step
from procedures.engine.computed import compute
from procedures.engine.conditions import evaluate, prune
from procedures.tests.engine_fixtures import (
    NOW,
    Conversation,
    catalog_of,
    choices,
    make_spec,
    step_dict,
    text,
)


def start(spec, *, catalog: Catalog | None = None) -> Conversation:
    conversation = Conversation(catalog or catalog_of(spec))
    conversation.say(spec.keywords[0])
    return conversation


def question(conversation: Conversation):
    messages = [m for m in conversation.result.messages if m.code == "question"]
    assert messages, conversation.codes
    return messages[-1]


def asked_label(conversation: Conversation) -> str:
    return question(conversation).params["label"]


def action_codes(message) -> list[str]:
    return [action.code for action in message.actions]


def name_spec(**kwargs):
    return make_spec(step_dict("name", "short_text", "お名前"), **kwargs)


# --------------------------------------------------------------------------
# Starting
# --------------------------------------------------------------------------


def test_unmatched_text_without_session_shows_menu_of_open_procedures():
    first = name_spec()
    second = make_spec(step_dict("x", "short_text"), procedure_id=2, version_id=20, name="住民票の郵送請求", keywords=["住民票"])
    conversation = Conversation(catalog_of(first, second))
    result = conversation.say("こんにちは")
    assert conversation.codes == ["menu"]
    menu = result.messages[0]
    assert [a.event for a in menu.actions] == [Event(type="start", value=1), Event(type="start", value=2)]
    assert [a.params["label"] for a in menu.actions] == ["粗大ごみ収集", "住民票の郵送請求"]
    assert result.state["session"] is None


def test_menu_says_nothing_open_when_no_procedure_is_published():
    conversation = Conversation(Catalog(versions={}, current={}))
    conversation.send(Event(type="sticker"))
    assert conversation.codes == ["menu.empty"]


def test_sticker_without_session_shows_menu():
    conversation = Conversation(catalog_of(name_spec()))
    conversation.send(Event(type="sticker"))
    assert conversation.codes == ["menu"]


def test_keyword_starts_procedure_and_asks_first_question():
    conversation = start(name_spec())
    assert conversation.codes == ["procedure.started", "question"]
    assert asked_label(conversation) == "お名前"
    session = conversation.session
    assert session["procedure_id"] == 1 and session["version_id"] == 10
    assert session["id"] == f"1-10-{int(conversation.now.timestamp() * 1000)}"
    assert session["current"] == "name"


@pytest.mark.parametrize("value", [1, "1"])
def test_start_event_from_menu_or_rich_menu_starts_procedure(value):
    conversation = Conversation(catalog_of(name_spec()))
    conversation.send(Event(type="start", value=value))
    assert conversation.codes == ["procedure.started", "question"]


def test_start_event_for_unknown_procedure_says_not_open_and_shows_menu():
    conversation = Conversation(catalog_of(name_spec()))
    conversation.send(Event(type="start", value=99))
    assert conversation.codes == ["procedure.not_open", "menu"]


def test_message_steps_are_emitted_without_waiting():
    spec = make_spec(
        step_dict("intro", "message", "ご案内", help_text="収集は有料です。"),
        step_dict("name", "short_text", "お名前"),
        step_dict("note", "message", "次は住所です"),
        step_dict("address", "short_text", "ご住所"),
    )
    conversation = start(spec)
    assert conversation.codes == ["procedure.started", "step.message", "question"]
    assert conversation.result.messages[1].params == {"label": "ご案内", "help": "収集は有料です。"}
    conversation.say("山田")
    assert conversation.codes == ["step.message", "question"]
    assert asked_label(conversation) == "ご住所"


# --------------------------------------------------------------------------
# Text formats
# --------------------------------------------------------------------------


def test_too_long_text_is_reasked_with_max_length():
    conversation = start(make_spec(step_dict("name", "short_text", "お名前", options={"max_length": 5})))
    conversation.say("あいうえおか")
    assert conversation.codes == ["error.too_long", "question"]
    assert conversation.result.messages[0].params == {"max": 5}
    assert "name" not in conversation.answers


def test_invalid_postal_code_is_reasked_with_reason():
    spec = make_spec(step_dict("postal", "short_text", "郵便番号", options={"format": "postal_code"}), step_dict("x", "short_text"))
    conversation = start(spec)
    conversation.say("12-345")
    assert conversation.codes == ["error.bad_format", "question"]
    assert conversation.result.messages[0].params == {"format": "postal_code"}
    assert asked_label(conversation) == "郵便番号"
    conversation.say("〒１２３４５６７")
    assert conversation.answers["postal"] == "123-4567"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("090-1234-5678", "090-1234-5678"),
        ("09012345678", "09012345678"),
        ("０９０－１２３４－５６７８", "090-1234-5678"),
        ("03-1234-5678", "03-1234-5678"),
        ("0120-123-456", "0120-123-456"),
        ("+81 90 1234 5678", "09012345678"),
    ],
)
def test_phone_numbers_accept_full_width_digits_and_optional_hyphens(typed, stored):
    conversation = start(make_spec(step_dict("tel", "short_text", "電話番号", options={"format": "phone"})))
    conversation.say(typed)
    assert conversation.answers["tel"] == stored


@pytest.mark.parametrize("typed", ["12345", "090-1234-56789", "abc", "1234567890", "03-1234-567a"])
def test_bad_phone_numbers_are_refused(typed):
    conversation = start(make_spec(step_dict("tel", "short_text", "電話番号", options={"format": "phone"})))
    conversation.say(typed)
    assert conversation.codes == ["error.bad_format", "question"]
    assert conversation.result.messages[0].params == {"format": "phone"}


def test_email_is_checked():
    conversation = start(make_spec(step_dict("mail", "short_text", "メール", options={"format": "email"})))
    conversation.say("taro@")
    assert conversation.codes[0] == "error.bad_format"
    conversation.say("ｔａｒｏ@example.jp")
    assert conversation.answers["mail"] == "taro@example.jp"


def test_katakana_accepts_hiragana_and_half_width_and_normalises_to_katakana():
    conversation = start(make_spec(step_dict("kana", "short_text", "フリガナ", options={"format": "katakana"}), step_dict("x", "short_text")))
    conversation.say("山田")
    assert conversation.codes == ["error.bad_format", "question"]
    conversation.say("やまだ ﾀﾛｳ")
    assert conversation.answers["kana"] == "ヤマダ\u3000タロウ"


def test_regex_format_uses_pattern_and_hint():
    spec = make_spec(
        step_dict("plate", "short_text", "受付番号", options={"format": "regex", "pattern": r"[A-Z]{2}\d{3}", "pattern_hint": "例：AB123"}),
        step_dict("x", "short_text"),
    )
    conversation = start(spec)
    assert question(conversation).params["hint"] == "例：AB123"
    conversation.say("ab12")
    assert conversation.result.messages[0].params == {"format": "regex", "hint": "例：AB123"}
    conversation.say("AB123")
    assert conversation.answers["plate"] == "AB123"


def test_empty_text_is_refused():
    conversation = start(name_spec())
    conversation.say("   ")
    assert conversation.codes == ["error.empty", "question"]


# --------------------------------------------------------------------------
# Numbers and dates
# --------------------------------------------------------------------------


def test_number_accepts_full_width_digits_and_checks_range():
    spec = make_spec(step_dict("count", "number", "個数", options={"min": 1, "max": 5, "unit": "個"}), step_dict("x", "short_text"))
    conversation = start(spec)
    conversation.say("十")
    assert conversation.codes == ["error.not_a_number", "question"]
    conversation.say("６")
    assert conversation.codes == ["error.out_of_range", "question"]
    assert conversation.result.messages[0].params == {"min": 1, "max": 5, "unit": "個"}
    conversation.say("2.5")
    assert conversation.codes == ["error.not_an_integer", "question"]
    conversation.say("３個")
    assert conversation.answers["count"] == 3


def test_number_allows_decimals_when_not_integer():
    conversation = start(make_spec(step_dict("weight", "number", "重さ", options={"integer": False, "unit": "kg"})))
    conversation.say("2.5")
    assert conversation.answers["weight"] == 2.5


def test_date_question_offers_picker_with_min_max_and_first_allowed_initial():
    # Today is Tuesday 2026-06-02 in Tokyo; collection only on Thursdays, 3 to 30 days ahead.
    spec = make_spec(step_dict("day", "date", "収集日", options={"min_days": 3, "max_days": 30, "weekdays": [3]}))
    conversation = start(spec)
    picker = conversation.action("action.date_picker")
    assert picker.kind == "date_picker"
    assert picker.options == {"min": "2026-06-05", "max": "2026-07-02", "initial": "2026-06-11"}
    assert picker.event.type == "date" and picker.event.step == "day"


def test_today_is_taken_in_tokyo_time():
    spec = make_spec(step_dict("day", "date", "日付", options={"min_days": 0, "max_days": 0}))
    late_evening_utc = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)  # already 2026-06-02 01:00 in Tokyo
    conversation = Conversation(catalog_of(spec), now=late_evening_utc)
    conversation.say("粗大ごみ")
    assert conversation.action("action.date_picker").options["min"] == "2026-06-02"


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("2026-12-01", "2026-12-01"),
        ("2026/12/1", "2026-12-01"),
        ("２０２６年１２月１日", "2026-12-01"),
        ("12/1", "2026-12-01"),
        ("12月1日", "2026-12-01"),
        ("1/5", "2027-01-05"),  # already past this year: next year
    ],
)
def test_typed_dates_are_accepted(typed, stored):
    conversation = start(make_spec(step_dict("day", "date", "日付", options={"min_days": 0})))
    conversation.say(typed)
    assert conversation.answers["day"] == stored


def test_date_picker_value_is_accepted():
    conversation = start(make_spec(step_dict("day", "date", "日付")))
    conversation.tap("action.date_picker", value="2026-06-20")
    assert conversation.answers["day"] == "2026-06-20"


@pytest.mark.parametrize(
    ("options", "typed", "reason"),
    [
        ({"min_days": 3}, "2026-06-03", "too_early"),
        ({"max_days": 10}, "2026-06-30", "too_late"),
        ({"weekdays": [0, 1, 2, 3, 4]}, "2026-06-06", "weekday"),  # a Saturday
        ({"allow_holidays": False}, "2026-11-03", "holiday"),  # 文化の日
        ({"excluded_dates": ["2026-06-10"]}, "2026-06-10", "excluded"),
    ],
)
def test_date_not_allowed_is_reasked_with_reason(options, typed, reason):
    assert jpholiday.is_holiday(date(2026, 11, 3))
    conversation = start(make_spec(step_dict("day", "date", "日付", options=options)))
    conversation.say(typed)
    assert conversation.codes == ["error.date_not_allowed", "question"]
    assert conversation.result.messages[0].params["reason"] == reason
    assert "day" not in conversation.answers


def test_impossible_date_is_not_a_date():
    conversation = start(make_spec(step_dict("day", "date", "日付")))
    conversation.say("2/30")
    assert conversation.codes == ["error.not_a_date", "question"]


def test_date_that_became_too_early_is_reasked_before_submit():
    spec = make_spec(step_dict("day", "date", "収集日", options={"min_days": 1}))
    conversation = start(spec)
    conversation.say("6/3")  # tomorrow: fine today
    assert conversation.codes == ["summary"]
    conversation.tap("action.submit", after=timedelta(hours=20))  # the next day in Tokyo
    assert conversation.codes == ["error.date_not_allowed", "question"]
    assert conversation.result.effects == ()
    conversation.say("6/10")
    assert conversation.codes == ["summary"]


# --------------------------------------------------------------------------
# Input types, images, locations
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "event", "expected"),
    [
        ("image", Event(type="text", text="写真です"), "image"),
        ("date", Event(type="text", text="来週"), "date"),
        ("short_text", Event(type="image", data={"ref": "m1", "content_type": "image/jpeg", "size": 10}), "text"),
        ("short_text", Event(type="sticker"), "text"),
        ("number", Event(type="sticker"), "number"),
        ("location", Event(type="text", text="市役所"), "location"),
        ("single_choice", Event(type="location", data={"latitude": 1, "longitude": 2}), "choice"),
    ],
)
def test_wrong_input_type_says_what_is_expected(kind, event, expected):
    extra = {"choices": choices("a", "b")} if kind == "single_choice" else {}
    conversation = start(make_spec(step_dict("q", kind, "質問", **extra)))
    conversation.send(event)
    assert conversation.codes == ["error.wrong_input_type", "question"]
    assert conversation.result.messages[0].params == {"expected": expected}


def test_image_checks_type_and_size_and_stores_reference():
    spec = make_spec(step_dict("photo", "image", "写真", options={"max_bytes": 1000}))
    conversation = start(spec)
    assert {a.kind for a in question(conversation).actions} >= {"camera", "camera_roll"}
    conversation.send(Event(type="image", data={"ref": "m1", "content_type": "image/gif", "size": 10}))
    assert conversation.codes == ["error.image_type", "question"]
    conversation.send(Event(type="image", data={"ref": "m1", "content_type": "image/png", "size": 2000}))
    assert conversation.codes == ["error.image_too_large", "question"]
    conversation.send(Event(type="image", data={"ref": "m2", "content_type": "image/png", "size": 999}))
    assert conversation.answers["photo"] == {"ref": "m2", "content_type": "image/png", "size": 999}


def test_location_answer_is_stored():
    conversation = start(make_spec(step_dict("place", "location", "場所")))
    assert conversation.action("action.location").kind == "location"
    conversation.send(Event(type="location", data={"latitude": 35.68, "longitude": 139.76, "address": "東京都千代田区", "title": ""}))
    assert conversation.answers["place"] == {"latitude": 35.68, "longitude": 139.76, "address": "東京都千代田区", "title": ""}


def test_bad_location_is_refused():
    conversation = start(make_spec(step_dict("place", "location", "場所")))
    conversation.send(Event(type="location", data={"latitude": 135, "longitude": 0}))
    assert conversation.codes == ["error.bad_location", "question"]


# --------------------------------------------------------------------------
# Choices
# --------------------------------------------------------------------------


def test_yes_no_accepts_buttons_and_typed_words():
    spec = make_spec(step_dict("a", "yes_no", "A"), step_dict("b", "yes_no", "B"), step_dict("c", "yes_no", "C"))
    conversation = start(spec)
    assert action_codes(question(conversation))[:2] == ["action.yes", "action.no"]
    conversation.tap("action.yes")
    conversation.say("いいえ")
    conversation.say("たぶん")
    assert conversation.codes == ["error.unknown_choice", "question"]
    conversation.say("はい")
    assert conversation.answers == {"a": True, "b": False, "c": True}


def test_single_choice_accepts_button_typed_label_or_number():
    spec = make_spec(*(step_dict(k, "single_choice", k, choices=choices("sofa", "bed", "desk")) for k in ("a", "b", "c")))
    conversation = start(spec)
    conversation.tap("action.choice", label="BED")
    conversation.say("desk")
    conversation.say("1")
    assert conversation.answers == {"a": "bed", "b": "desk", "c": "sofa"}


def test_unknown_typed_choice_is_reasked():
    conversation = start(make_spec(step_dict("a", "single_choice", "A", choices=choices("x", "y"))))
    conversation.say("z")
    assert conversation.codes == ["error.unknown_choice", "question"]


def test_thirteen_choices_fit_on_one_page():
    values = [f"c{i:02d}" for i in range(13)]
    conversation = start(make_spec(step_dict("a", "single_choice", "A", choices=choices(*values))))
    message = question(conversation)
    assert action_codes(message).count("action.choice") == 13
    assert "action.page_next" not in action_codes(message)


def test_more_than_13_choices_are_paged_and_all_reachable():
    values = [f"c{i:02d}" for i in range(30)]
    spec = make_spec(step_dict("item", "single_choice", "品目", choices=choices(*values)))
    conversation = start(spec)
    seen = []
    pages = 0
    while True:
        message = question(conversation)
        pages += 1
        on_page = [a.event.value for a in message.actions if a.code == "action.choice"]
        assert 1 <= len(on_page) <= 11
        assert message.params["page"] == pages and message.params["pages"] == 3
        seen += on_page
        if "action.page_next" not in action_codes(message):
            break
        conversation.tap("action.page_next")
    assert seen == values
    conversation.tap("action.page_prev")
    assert question(conversation).params["page"] == 2
    conversation.say("30")  # the number of the last choice works from any page
    assert conversation.answers["item"] == "c29"


def test_multiple_choice_toggles_shows_selection_and_done_checks_limits():
    spec = make_spec(
        step_dict("items", "multiple_choice", "品目", choices=choices("a", "b", "c", "d"), options={"min_selected": 1, "max_selected": 2}),
        step_dict("x", "short_text"),
    )
    conversation = start(spec)
    conversation.tap("action.done")
    assert conversation.codes == ["error.too_few_selected", "question"]
    conversation.tap("action.toggle", label="C")
    conversation.tap("action.toggle", label="A")
    assert question(conversation).params["selected"] == ["A", "C"]
    conversation.tap("action.toggle", label="B")
    conversation.tap("action.done")
    assert conversation.codes == ["error.too_many_selected", "question"]
    assert conversation.result.messages[0].params == {"max": 2}
    conversation.tap("action.toggle", label="B")  # untoggle
    assert [a.params["selected"] for a in question(conversation).actions if a.code == "action.toggle"] == [True, False, True, False]
    conversation.say("完了")
    assert conversation.answers["items"] == ["a", "c"]


def test_multiple_choice_with_many_choices_is_paged():
    values = [f"c{i:02d}" for i in range(20)]
    spec = make_spec(step_dict("items", "multiple_choice", "品目", choices=choices(*values)))
    conversation = start(spec)
    conversation.tap("action.toggle", label="C01")
    conversation.tap("action.page_next")
    conversation.tap("action.toggle", label="C15")
    conversation.tap("action.done")
    assert conversation.session["answers"]["items"] == ["c01", "c15"]


# --------------------------------------------------------------------------
# Navigation
# --------------------------------------------------------------------------


def test_optional_step_offers_skip_and_required_does_not():
    spec = make_spec(step_dict("a", "short_text", "A"), step_dict("b", "short_text", "B", required=False), step_dict("c", "short_text", "C"))
    conversation = start(spec)
    assert "action.skip" not in action_codes(question(conversation))
    conversation.send(Event(type="command", name="skip"))
    assert conversation.codes == ["nav.cannot_skip", "question"]
    conversation.say("あ")
    assert "action.skip" in action_codes(question(conversation))
    conversation.tap("action.skip")
    assert asked_label(conversation) == "C"
    assert "b" not in conversation.answers


def test_every_question_offers_cancel_and_back_only_after_an_answer():
    spec = make_spec(step_dict("a", "short_text", "A"), step_dict("b", "short_text", "B"))
    conversation = start(spec)
    assert action_codes(question(conversation)) == ["action.cancel"]
    conversation.say("x")
    assert action_codes(question(conversation)) == ["action.back", "action.cancel"]


def test_back_returns_to_previous_answer():
    spec = make_spec(step_dict("a", "short_text", "A"), step_dict("b", "number", "B"), step_dict("c", "short_text", "C"))
    conversation = start(spec)
    conversation.say("first")
    conversation.say("2")
    conversation.say("戻る")
    message = question(conversation)
    assert message.params["label"] == "B" and message.params["current"] == {"number": 2, "unit": ""}
    assert "action.keep" in action_codes(message)
    conversation.tap("action.back")
    assert question(conversation).params["current"] == "first"
    conversation.say("second")
    assert asked_label(conversation) == "B"  # the later step is asked again, its answer shown
    conversation.tap("action.keep")
    assert asked_label(conversation) == "C"
    assert conversation.answers == {"a": "second", "b": 2}


def test_back_at_first_question_is_refused():
    conversation = start(name_spec())
    conversation.say("戻る")
    assert conversation.codes == ["nav.cannot_go_back", "question"]


def test_cancel_asks_first_then_yes_ends_and_no_continues():
    spec = make_spec(step_dict("a", "short_text", "A"), step_dict("b", "short_text", "B"))
    conversation = start(spec)
    conversation.say("x")
    conversation.say("やめる")
    assert conversation.codes == ["session.confirm_cancel"]
    assert conversation.last.layout == "confirm"
    conversation.tap("action.keep_going")
    assert asked_label(conversation) == "B"
    conversation.tap("action.cancel")
    conversation.tap("action.confirm_cancel")
    assert conversation.codes == ["session.cancelled"]
    assert conversation.session is None


def test_typed_yes_confirms_cancel():
    conversation = start(name_spec())
    conversation.say("やめる")
    conversation.say("はい")
    assert conversation.codes == ["session.cancelled"]


# --------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------


def branch_spec():
    return make_spec(
        step_dict("has_item", "yes_no", "大型の品はありますか"),
        step_dict("item", "single_choice", "品目", choices=choices("sofa", "bed"), condition={"step": "has_item", "op": "equals", "value": True}),
        step_dict("bed_size", "single_choice", "ベッドの大きさ", choices=choices("single", "double"), condition={"step": "item", "op": "equals", "value": "bed"}),
        step_dict("name", "short_text", "お名前"),
    )


def test_step_whose_condition_is_false_is_skipped():
    conversation = start(branch_spec())
    conversation.say("いいえ")
    assert asked_label(conversation) == "お名前"


def test_condition_turning_false_clears_skipped_answers():
    conversation = start(branch_spec())
    conversation.say("はい")
    conversation.say("bed")
    conversation.say("single")
    assert conversation.answers == {"has_item": True, "item": "bed", "bed_size": "single"}
    conversation.say("戻る")
    conversation.say("戻る")
    conversation.say("戻る")
    assert asked_label(conversation) == "大型の品はありますか"
    conversation.say("いいえ")
    # item no longer applies, and with it bed_size: a chain, cleared to a fixed point
    assert conversation.answers == {"has_item": False}
    assert asked_label(conversation) == "お名前"


def test_multiple_choice_condition_equals_means_contains_and_one_of_intersects():
    answers = {"items": ["a", "c"]}
    assert evaluate({"step": "items", "op": "equals", "value": "c"}, answers)
    assert not evaluate({"step": "items", "op": "equals", "value": "b"}, answers)
    assert evaluate({"step": "items", "op": "one_of", "values": ["b", "c"]}, answers)
    assert not evaluate({"step": "items", "op": "one_of", "values": ["b", "d"]}, answers)


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        ({"step": "n", "op": "compare", "operator": "ge", "value": 3}, True),
        ({"step": "n", "op": "compare", "operator": "lt", "value": 3}, False),
        ({"step": "n", "op": "answered"}, True),
        ({"step": "missing", "op": "not_answered"}, True),
        ({"step": "missing", "op": "equals", "value": "x"}, False),
        ({"step": "ok", "op": "equals", "value": "yes"}, True),
        ({"all": [{"step": "n", "op": "answered"}, {"step": "ok", "op": "equals", "value": False}]}, False),
        ({"any": [{"step": "n", "op": "answered"}, {"step": "ok", "op": "equals", "value": False}]}, True),
        ({"step": "n", "op": "unknown"}, False),
        ("garbage", False),
        (None, True),
    ],
)
def test_condition_operators(condition, holds):
    assert evaluate(condition, {"n": 3, "ok": True}) is holds


def test_prune_clears_chains_to_a_fixed_point():
    spec = branch_spec()
    answers, removed = prune(spec, {"has_item": False, "item": "bed", "bed_size": "single", "name": "x"})
    assert answers == {"has_item": False, "name": "x"}
    assert removed == ["item", "bed_size"]


# --------------------------------------------------------------------------
# Confirmation, editing, completion
# --------------------------------------------------------------------------


def fee_spec():
    return make_spec(
        step_dict("item", "multiple_choice", "品目", choices=choices("sofa", "bed", amounts={"sofa": 800, "bed": 1200})),
        step_dict("count", "number", "個数", options={"unit": "個"}),
        step_dict("photo", "image", "写真", required=False),
        step_dict("place", "location", "場所"),
        step_dict("tel", "short_text", "電話番号", sensitive=True, options={"format": "phone"}),
        computed=[{"key": "fee", "label": "手数料", "unit": "円", "constant": 100, "terms": [{"step": "item"}, {"step": "count", "factor": 10}]}],
    )


def answer_fee_spec(conversation: Conversation, *, photo=True):
    conversation.tap("action.toggle", label="SOFA")
    conversation.tap("action.toggle", label="BED")
    conversation.tap("action.done")
    conversation.say("2")
    if photo:
        conversation.send(Event(type="image", data={"ref": "m1", "content_type": "image/jpeg", "size": 100}))
    else:
        conversation.tap("action.skip")
    conversation.send(Event(type="location", data={"latitude": 35.0, "longitude": 139.0, "address": "東京都千代田区1-1", "title": ""}))
    conversation.say("09012345678")


def test_confirmation_summarises_answers_masks_sensitive_and_shows_computed():
    conversation = start(fee_spec())
    answer_fee_spec(conversation)
    assert conversation.codes == ["summary"]
    summary = conversation.last
    assert summary.layout == "summary"
    rows = {row.key: row for row in summary.rows}
    assert list(rows) == ["item", "count", "photo", "place", "tel"]
    assert rows["item"].value == ["SOFA", "BED"]
    assert rows["count"].value == {"number": 2, "unit": "個"}
    assert rows["photo"].value == {"images": 1}
    assert rows["place"].value["address"] == "東京都千代田区1-1"
    assert rows["tel"].masked and "09012345678" not in repr(rows["tel"])
    assert all(row.edit.event.name == "edit" and row.edit.event.value == row.key for row in rows.values())
    assert summary.params["computed"] == [{"key": "fee", "label": "手数料", "value": 100 + 2000 + 20, "unit": "円"}]
    assert action_codes(summary)[0] == "action.submit"


def test_skipped_optional_step_shows_as_unanswered_row():
    conversation = start(fee_spec())
    answer_fee_spec(conversation, photo=False)
    rows = {row.key: row for row in conversation.last.rows}
    assert rows["photo"].value is None and not rows["photo"].masked


def test_completion_submits_applicable_answers_and_computed_values():
    conversation = start(fee_spec())
    answer_fee_spec(conversation)
    result = conversation.tap("action.submit")
    [submit] = result.effects
    assert isinstance(submit, Submit)
    assert submit.submission_key == conversation.results[0].state["session"]["id"]
    assert (submit.procedure_id, submit.version_id) == (1, 10)
    assert submit.answers["item"] == ["sofa", "bed"] and submit.answers["tel"] == "09012345678"
    assert submit.computed == {"fee": 2120}
    completed = result.messages[-1]
    assert completed.code == "procedure.completed"
    assert completed.params["label"] == "受け付けました。" and completed.params["help"] == "職員から連絡します。"
    assert "receipt_number" in completed.params
    assert result.state["session"] is None
    assert result.state["last_submission"]["session"] == submit.submission_key


def test_second_submit_tap_creates_no_second_submission():
    conversation = start(name_spec())
    conversation.say("山田")
    submit_action = conversation.action("action.submit")
    conversation.send(submit_action.event)
    assert len(conversation.result.effects) == 1
    conversation.send(submit_action.event)
    assert conversation.codes == ["procedure.already_submitted"]
    assert conversation.result.effects == ()
    # ... also while a new session of the same procedure is running
    conversation.say("粗大ごみ")
    conversation.send(submit_action.event)
    assert conversation.codes == ["procedure.already_submitted", "question"]
    assert len(conversation.submits()) == 1


def test_submit_without_any_session_says_already_submitted_when_one_exists():
    conversation = start(name_spec())
    conversation.say("山田")
    conversation.tap("action.submit")
    conversation.send(Event(type="command", name="submit"))
    assert conversation.codes == ["procedure.already_submitted"]


def test_edit_from_confirmation_asks_new_branch_then_returns():
    conversation = start(branch_spec())
    conversation.say("いいえ")
    conversation.say("山田")
    assert conversation.codes == ["summary"]
    conversation.tap("action.edit", label="大型の品はありますか")
    assert asked_label(conversation) == "大型の品はありますか"
    assert question(conversation).params["editing"] is True
    conversation.say("はい")
    assert asked_label(conversation) == "品目"  # newly applicable
    conversation.say("bed")
    assert asked_label(conversation) == "ベッドの大きさ"
    conversation.say("double")
    assert conversation.codes == ["summary"]  # name was answered: not asked again
    assert [row.key for row in conversation.last.rows] == ["has_item", "item", "bed_size", "name"]
    conversation.tap("action.submit")
    assert conversation.submits()[0].answers == {"has_item": True, "item": "bed", "bed_size": "double", "name": "山田"}


def test_edit_keep_returns_to_confirmation_unchanged():
    conversation = start(branch_spec())
    conversation.say("いいえ")
    conversation.say("山田")
    conversation.tap("action.edit", label="お名前")
    conversation.tap("action.keep")
    assert conversation.codes == ["summary"]
    assert conversation.answers == {"has_item": False, "name": "山田"}


def test_edit_that_turns_a_branch_off_clears_its_answers():
    conversation = start(branch_spec())
    conversation.say("はい")
    conversation.say("sofa")
    conversation.say("山田")
    conversation.tap("action.edit", label="大型の品はありますか")
    conversation.say("いいえ")
    assert conversation.codes == ["summary"]
    assert conversation.answers == {"has_item": False, "name": "山田"}


def test_exit_step_ends_without_submit():
    spec = make_spec(
        step_dict("resident", "yes_no", "市内にお住まいですか"),
        step_dict("sorry", "exit", "市内にお住まいの方のみ申し込めます。", condition={"step": "resident", "op": "equals", "value": False}),
        step_dict("name", "short_text", "お名前"),
    )
    conversation = start(spec)
    conversation.say("いいえ")
    assert conversation.codes == ["procedure.exited"]
    assert conversation.last.params["label"] == "市内にお住まいの方のみ申し込めます。"
    assert conversation.session is None and conversation.submits() == []


# --------------------------------------------------------------------------
# Sessions: expiry, switching, versions, stale buttons
# --------------------------------------------------------------------------


def test_session_expires_after_idle_timeout():
    spec = make_spec(step_dict("a", "short_text", "A"), step_dict("b", "short_text", "B"))
    conversation = Conversation(catalog_of(spec, idle_timeout=timedelta(hours=1)))
    conversation.say("粗大ごみ")
    conversation.say("x", after=timedelta(minutes=59))
    assert asked_label(conversation) == "B"
    conversation.say("粗大ごみ", after=timedelta(hours=1, seconds=1))
    assert conversation.codes == ["session.expired", "procedure.started", "question"]
    assert conversation.last.params["label"] == "A"
    assert conversation.answers == {}


def test_expired_session_with_plain_text_shows_menu():
    conversation = start(name_spec())
    conversation.say("山田", after=timedelta(days=2))
    assert conversation.codes == ["session.expired", "menu"]
    assert conversation.session is None


def test_keyword_for_other_procedure_asks_before_switching():
    first = make_spec(step_dict("a", "short_text", "A"), step_dict("b", "short_text", "B"))
    second = make_spec(step_dict("z", "short_text", "Z"), procedure_id=2, version_id=20, name="住民票", keywords=["住民票"])
    conversation = Conversation(catalog_of(first, second))
    conversation.say("粗大ごみ")
    conversation.say("x")
    conversation.say("住民票")
    assert conversation.codes == ["session.confirm_switch"]
    assert conversation.last.params == {"current": "粗大ごみ収集", "next": "住民票"}
    conversation.tap("action.stay")
    assert asked_label(conversation) == "B" and conversation.answers == {"a": "x"}
    conversation.send(Event(type="start", value=2))
    conversation.tap("action.switch")
    assert conversation.codes == ["procedure.started", "question"]
    assert conversation.session["procedure_id"] == 2 and asked_label(conversation) == "Z"


def test_start_of_the_same_procedure_continues_it():
    conversation = start(name_spec())
    conversation.send(Event(type="start", value=1))
    assert conversation.codes == ["session.already_in_progress", "question"]


def test_session_stays_on_pinned_version_after_new_publish():
    old = make_spec(step_dict("a", "short_text", "A"), step_dict("b", "short_text", "B"))
    new = make_spec(step_dict("a", "short_text", "A"), step_dict("c", "short_text", "C"), version_id=11)
    conversation = start(old)
    conversation.say("x")
    conversation.catalog = Catalog(versions={10: old, 11: new}, current={1: 11})
    conversation.say("y")
    assert conversation.codes == ["summary"]
    assert [row.key for row in conversation.last.rows] == ["a", "b"]
    conversation.tap("action.submit")
    assert conversation.submits()[0].version_id == 10
    conversation.say("粗大ごみ")
    assert conversation.session["version_id"] == 11


def test_unpublished_procedure_ends_session_politely():
    conversation = start(name_spec())
    conversation.catalog = Catalog(versions=dict(conversation.catalog.versions), current={})
    conversation.say("山田")
    assert conversation.codes == ["procedure.closed", "menu.empty"]
    assert conversation.result.messages[0].params == {"name": "粗大ごみ収集"}
    assert conversation.session is None


def test_dropped_version_ends_session_politely():
    conversation = start(name_spec())
    conversation.catalog = Catalog(versions={}, current={1: 11})
    conversation.say("山田")
    assert conversation.codes[0] == "procedure.closed"


def test_stale_button_is_refused_and_changes_nothing():
    spec = make_spec(
        step_dict("a", "single_choice", "A", choices=choices("x", "y")),
        step_dict("b", "single_choice", "B", choices=choices("x", "y")),
    )
    conversation = start(spec)
    old_button = conversation.action("action.choice", label="X").event
    conversation.send(old_button)
    answers = dict(conversation.answers)
    conversation.send(old_button)  # the question A was already answered
    assert conversation.codes == ["button.stale", "question"]
    assert asked_label(conversation) == "B" and conversation.answers == answers
    other_session = Event(type="choice", value="y", step="b", session="1-10-0")
    conversation.send(other_session)
    assert conversation.codes == ["button.stale", "question"] and conversation.answers == answers


def test_button_without_session_is_refused_with_menu():
    conversation = Conversation(catalog_of(name_spec()))
    conversation.send(Event(type="choice", value="x", step="a", session="1-10-5"))
    assert conversation.codes == ["button.stale", "menu"]


def test_sensitive_answer_never_appears_in_messages():
    secret = "SECRET-12345"
    spec = make_spec(
        step_dict("code", "short_text", "暗証番号", sensitive=True, options={"max_length": 12}),
        step_dict("name", "short_text", "お名前"),
    )
    conversation = start(spec)
    conversation.say(secret + "X")  # too long: the error must not echo it either
    conversation.say(secret)
    conversation.say("戻る")
    assert question(conversation).params["has_current"] is True and "current" not in question(conversation).params
    conversation.tap("action.keep")
    conversation.say("山田")
    conversation.tap("action.edit", label="暗証番号")
    conversation.say(secret)
    conversation.tap("action.submit")
    assert conversation.submits()[0].answers["code"] == secret
    for result in conversation.results:
        assert secret not in repr(result.messages)


# --------------------------------------------------------------------------
# Robustness
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        "garbage",
        {"schema_version": 99, "session": None},
        {"schema_version": 1, "session": "x"},
        {"schema_version": 1, "session": {"id": 1}},
        {"schema_version": 1, "session": {"id": "s", "procedure_id": 1, "version_id": 10, "started_at": "x", "updated_at": "bad",
                                          "answers": {}, "history": [], "current": "name", "mode": "asking", "page": 0}},
        {"schema_version": 1, "session": {"id": "s", "procedure_id": 1, "version_id": 10, "started_at": "x", "updated_at": NOW.isoformat(),
                                          "answers": {}, "history": [], "current": "nope", "mode": "asking", "page": 0}},
    ],
)
def test_corrupted_state_is_reset_with_message(state):
    catalog = catalog_of(name_spec())
    result = step(catalog, state, text("粗大ごみ"), NOW)
    assert result.messages[0].code == "session.reset"
    assert [m.code for m in result.messages][1:] == ["procedure.started", "question"]


@pytest.mark.parametrize("state", [None, {}])
def test_empty_state_means_no_session(state):
    result = step(catalog_of(name_spec()), state, text("こんにちは"), NOW)
    assert [m.code for m in result.messages] == ["menu"]
    assert result.state == {"schema_version": 1, "session": None, "last_submission": None}


@pytest.mark.parametrize(
    "event",
    [
        Event(type="nonsense"),
        Event(type="command", name="edit", value=["x"]),
        Event(type="command", name="page", value="abc"),
        Event(type="choice", value={"a": 1}),
        Event(type="date", value=20261201),
        Event(type="image", data={"ref": None}),
        Event(type="location", data={"latitude": "north"}),
        Event(type="start", value=None),
        Event(type="text", text=None),
        "not an event",
    ],
)
def test_garbage_events_never_raise(event):
    conversation = start(name_spec())
    result = step(conversation.catalog, conversation.state, event, NOW + timedelta(minutes=1))
    assert result.messages
    assert "error.internal" not in [m.code for m in result.messages]


def test_step_does_not_mutate_the_given_state():
    conversation = start(name_spec())
    before = repr(conversation.state)
    step(conversation.catalog, conversation.state, text("山田"), NOW + timedelta(minutes=1))
    assert repr(conversation.state) == before


def test_unknown_step_kind_lists_known_kinds():
    with pytest.raises(UnknownStepKind) as error:
        get_handler("signature")
    assert "short_text" in str(error.value) and "completion" in str(error.value)


def test_computed_values_use_numbers_choice_amounts_and_yes_no():
    spec = make_spec(
        step_dict("n", "number", "N", options={"integer": False}),
        step_dict("c", "single_choice", "C", choices=choices("a", "b", amounts={"a": 300, "b": 500})),
        step_dict("y", "yes_no", "Y"),
        step_dict("skipped", "number", "S", required=False),
        computed=[{"key": "total", "label": "合計", "constant": 0.1, "terms": [
            {"step": "n", "factor": 0.2}, {"step": "c"}, {"step": "y", "factor": 50}, {"step": "skipped", "factor": 1000}]}],
    )
    assert compute(spec, {"n": 1, "c": "b", "y": True}) == {"total": 550.3}
    assert compute(spec, {}) == {"total": 0.1}


def test_same_inputs_give_same_result():
    catalog = catalog_of(name_spec())
    later = NOW + timedelta(hours=1)
    assert step(catalog, None, text("粗大ごみ"), later) == step(catalog, None, text("粗大ごみ"), later)


def test_naive_now_is_tolerated():
    result = step(catalog_of(name_spec()), None, text("粗大ごみ"), datetime(2026, 6, 2, 10, 0))  # noqa: DTZ001
    assert [m.code for m in result.messages] == ["procedure.started", "question"]


def test_sensitive_date_and_selection_are_not_shown_in_buttons():
    spec = make_spec(
        step_dict("birthday", "date", "生年月日", sensitive=True),
        step_dict("conditions", "multiple_choice", "持病", sensitive=True, choices=choices("heart", "lung")),
    )
    conversation = start(spec)
    conversation.tap("action.date_picker", value="1990-04-01")
    conversation.tap("action.toggle", label="LUNG")
    message = question(conversation)
    assert message.params["selected_count"] == 1 and "selected" not in message.params
    assert not any(a.params.get("selected") for a in message.actions)
    conversation.tap("action.back")
    assert conversation.action("action.date_picker").options["initial"] != "1990-04-01"
    for result in conversation.results:
        assert "1990-04-01" not in repr(result.messages)


def test_image_the_channel_did_not_keep_is_reasked_with_the_channels_limit():
    from procedures.engine.handlers import get_handler
    from procedures.spec import REJECTED_IMAGE_REF_PREFIX, parse_spec

    step = parse_spec(
        {"name": "x", "steps": [{"key": "photo", "kind": "image", "label": "写真"}]}
    ).steps[0]
    handler = get_handler("image")
    error = handler._check(
        step, {"ref": f"{REJECTED_IMAGE_REF_PREFIX}abc", "content_type": "image/jpeg", "size": 10, "max_bytes": 1024}
    )
    assert error.code == "error.image_too_large" and error.params["max_bytes"] == 1024


def test_internal_error_keeps_progress_once_then_resets():
    from datetime import UTC, datetime

    from procedures.engine import core
    from procedures.engine.types import Catalog, Event

    state = {"schema_version": 1, "session": None, "last_submission": None}
    broken = Catalog(versions=None, current=None)  # makes the turn fail inside the engine
    first = core.step(broken, state, Event(type="text", text="x"), datetime(2026, 1, 1, tzinfo=UTC))
    assert first.messages[0].code == "error.internal"
    assert first.state[core.INTERNAL_ERROR_MARK] is True
    second = core.step(broken, first.state, Event(type="text", text="x"), datetime(2026, 1, 1, tzinfo=UTC))
    assert core.INTERNAL_ERROR_MARK not in second.state and second.state["session"] is None
