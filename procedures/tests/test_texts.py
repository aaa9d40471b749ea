"""Japanese rendering: every engine message, action and spec problem has a text."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from procedures import texts
from procedures.engine import (
    ACTION_CODES,
    CORRECTION_EVENT,
    MESSAGE_CODES,
    Action,
    Catalog,
    Event,
    Message,
    SummaryRow,
    step,
)
from procedures.spec import Problem, SpecError, parse_spec, validate_spec
from procedures.tests.engine_fixtures import (
    NOW,
    Conversation,
    catalog_of,
    choices,
    completion,
    make_spec,
    spec_data,
    step_dict,
)

SPEC_SOURCE = Path(__file__).resolve().parents[1] / "spec.py"


def kitchen_sink_spec():
    return make_spec(
        step_dict("intro", "message", "ご案内"),
        step_dict("name", "short_text", "お名前", options={"max_length": 5}),
        step_dict("tel", "short_text", "電話番号", sensitive=True, options={"format": "phone"}),
        step_dict("count", "number", "個数", options={"min": 1, "max": 3, "unit": "個"}),
        step_dict("day", "date", "収集日", options={"min_days": 2}),
        step_dict("items", "multiple_choice", "品目", choices=choices("a", "b", "c"), options={"max_selected": 1}),
        step_dict("size", "single_choice", "大きさ", choices=choices(*[f"s{i}" for i in range(15)]), required=False),
        step_dict("ok", "yes_no", "同意しますか"),
        step_dict("photo", "image", "写真", options={"max_bytes": 100}),
        step_dict("place", "location", "場所"),
        computed=[{"key": "fee", "label": "手数料", "unit": "円", "terms": [{"step": "count", "factor": 300}]}],
    )


def image(content_type="image/png", size=10, ref="m1"):
    return Event(type="image", data={"ref": ref, "content_type": content_type, "size": size})


def collect_messages() -> list[Message]:
    """Run scenarios that make the engine emit (nearly) every message code."""
    spec = kitchen_sink_spec()
    other = make_spec(step_dict("z", "short_text", "Z"), procedure_id=2, version_id=20, name="住民票", keywords=["住民票"])
    conversation = Conversation(catalog_of(spec, other))
    say, send, tap = conversation.say, conversation.send, conversation.tap
    say("こんにちは")
    send(Event(type="start", value=99))
    say("粗大ごみ")
    say("戻る")
    say("   ")
    say("山田太郎さん")
    say("山田")
    say("12345")
    say("080-9876-5432")
    say("十")
    say("1.5")
    say("9")
    say("2")
    send(Event(type="sticker"))
    say("2/30")
    say("6/3")
    say("6/10")
    tap("action.done")
    tap("action.toggle", label="A")
    tap("action.toggle", label="B")
    tap("action.done")
    tap("action.toggle", label="B")
    say("ああ")
    tap("action.done")
    tap("action.page_next")
    tap("action.page_prev")
    say("スキップ")
    say("たぶん")
    say("はい")
    send(image("image/gif"))
    send(image(size=1000))
    send(image(ref=""))
    send(image())
    send(Event(type="location", data={"latitude": 500, "longitude": 0}))
    send(Event(type="location", data={"latitude": 35.0, "longitude": 139.0, "address": "東京都", "title": ""}))
    say("なにか")
    send(Event(type="start", value=1))
    say("住民票")
    tap("action.stay")
    tap("action.edit", label="同意しますか")
    tap("action.keep")
    send(Event(type="choice", value="a", step="items", session=conversation.session["id"]))
    say("やめる")
    tap("action.keep_going")
    submit = conversation.action("action.submit").event
    send(submit)
    send(submit)
    say("粗大ごみ")
    say("やめる")
    say("はい")
    say("粗大ごみ")
    conversation.catalog = Catalog(versions=conversation.catalog.versions, current={2: 20})
    say("山田")
    conversation.catalog = Catalog(versions={}, current={})
    say("こんにちは")
    conversation.catalog = catalog_of(spec, other)
    say("粗大ごみ")
    say("山田", after=timedelta(days=2))
    messages = [m for result in conversation.results for m in result.messages]

    exit_spec = make_spec(
        step_dict("resident", "yes_no", "市内在住ですか"),
        step_dict("bye", "exit", "対象外です", condition={"step": "resident", "op": "equals", "value": False}),
        step_dict("optional", "short_text", "備考", required=False),
        step_dict("name", "short_text", "お名前"),
    )
    conversation = Conversation(catalog_of(exit_spec))
    conversation.say("粗大ごみ")
    conversation.say("いいえ")
    conversation.say("粗大ごみ")
    conversation.say("はい")
    conversation.send(Event(type="command", name="keep"))
    conversation.send(Event(type="command", name="skip"))
    conversation.send(Event(type="command", name="skip"))
    messages += [m for result in conversation.results for m in result.messages]

    no_end = parse_spec({"procedure_id": 1, "version_id": 10, "name": "案内", "keywords": ["案内"],
                         "steps": [step_dict("a", "short_text", "A")]})
    conversation = Conversation(catalog_of(no_end))
    conversation.say("案内")
    conversation.say("x")
    messages += [m for result in conversation.results for m in result.messages]

    messages += step(catalog_of(spec), {"schema_version": 0}, Event(type="sticker"), NOW).messages

    # A correction of an existing application (procedures/correspondence.py starts it).
    corrected = make_spec(step_dict("name", "short_text", "お名前"))
    conversation = Conversation(catalog_of(corrected))
    correction = {"correction_id": 1, "token": "t", "procedure_id": 1, "version_id": 10,
                  "receipt_number": "R-1", "answers": {"name": "山田"}, "keys": ["name"]}
    conversation.send(Event(type=CORRECTION_EVENT, data={**correction, "version_id": 99}))
    conversation.send(Event(type=CORRECTION_EVENT, data=correction))
    conversation.send(Event(type=CORRECTION_EVENT, data=correction))
    conversation.send(Event(type=CORRECTION_EVENT, data={**correction, "correction_id": 2}))
    conversation.say("山田 太郎")
    conversation.tap("action.resubmit")
    messages += [m for result in conversation.results for m in result.messages]
    return messages


@pytest.fixture(scope="module")
def emitted() -> list[Message]:
    return collect_messages()


def test_scenarios_emit_only_known_codes_and_nearly_all_of_them(emitted):
    codes = {message.code for message in emitted}
    assert codes <= set(MESSAGE_CODES)
    assert set(MESSAGE_CODES) - codes == {"error.internal"}


def test_every_emitted_message_renders_japanese_text(emitted):
    for message in emitted:
        rendered = texts.render_message(message)
        assert rendered.strip(), message.code
        assert "%(" not in rendered and "None" not in rendered, (message.code, rendered)
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", rendered), (message.code, rendered)


def test_every_message_code_renders_even_without_params():
    for code in MESSAGE_CODES:
        assert texts.render_message(Message(code)).strip(), code


def test_every_emitted_action_has_a_label(emitted):
    seen = set()
    for message in emitted:
        for action in list(message.actions) + [row.edit for row in message.rows if row.edit]:
            seen.add(action.code)
            assert texts.render_action_label(action).strip(), action.code
    assert seen == set(ACTION_CODES)


def test_every_action_code_has_a_label():
    for code in ACTION_CODES:
        assert texts.render_action_label(Action(code, {"label": "ソファ"})).strip()


def test_rendering_never_echoes_sensitive_answers(emitted):
    rendered = "\n".join(texts.render_message(m) for m in emitted)
    assert "9876" not in rendered
    assert "●●●●（入力済み）" in rendered


def test_question_texts():
    message = Message("question", {"label": "個数", "kind": "number", "min": 1, "max": 3, "unit": "個", "required": False,
                                   "has_current": True, "current": {"number": 2, "unit": "個"}})
    assert texts.render_message(message) == "個数\n数字で入力してください（1個〜3個）。\n（任意：「スキップ」で飛ばせます）\n現在の回答：2個"


def test_error_texts_carry_their_params():
    assert texts.render_message(Message("error.too_long", {"max": 20})) == "20文字以内で入力してください。"
    assert "2026年6月5日（金）以降" in texts.render_message(
        Message("error.date_not_allowed", {"reason": "too_early", "min": "2026-06-05", "max": None, "weekdays": [0]})
    )
    assert "月・水" in texts.render_message(Message("error.date_not_allowed", {"reason": "weekday", "weekdays": [0, 2]}))
    assert texts.render_message(Message("error.wrong_input_type", {"expected": "image"})) == "写真（画像）を送ってください。"
    assert "例：AB123" in texts.render_message(Message("error.bad_format", {"format": "regex", "hint": "例：AB123"}))


def test_completed_message_shows_receipt_number_once_filled_in():
    message = Message("procedure.completed", {"name": "粗大ごみ", "label": "受け付けました。", "receipt_number": None})
    assert "受付番号" not in texts.render_message(message)
    message.params["receipt_number"] = "SD-2026-0001"
    assert "受付番号：SD-2026-0001" in texts.render_message(message)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (SummaryRow("tel", "電話", "●●●●", "short_text", masked=True), "●●●●（入力済み）"),
        (SummaryRow("photo", "写真", {"images": 1}, "image"), "画像1枚"),
        (SummaryRow("place", "場所", {"address": "東京都千代田区", "title": "", "latitude": 1, "longitude": 2}, "location"), "東京都千代田区"),
        (SummaryRow("place", "場所", {"address": "", "title": "市役所", "latitude": 1, "longitude": 2}, "location"), "市役所"),
        (SummaryRow("ok", "同意", True, "yes_no"), "はい"),
        (SummaryRow("ok", "同意", False, "yes_no"), "いいえ"),
        (SummaryRow("n", "個数", {"number": 3, "unit": "個"}, "number"), "3個"),
        (SummaryRow("d", "日付", "2026-12-01", "date"), "2026年12月1日（火）"),
        (SummaryRow("m", "品目", ["ソファ", "ベッド"], "multiple_choice"), "ソファ、ベッド"),
        (SummaryRow("o", "備考", None, "short_text"), "（未回答）"),
    ],
)
def test_summary_values(row, expected):
    assert texts.render_summary_value(row) == expected


def spec_problem_codes() -> set[str]:
    source = SPEC_SOURCE.read_text(encoding="utf-8")
    return set(re.findall(r'(?:Problem|add)\(\s*"([a-z_]+)"', source))


def test_every_problem_code_of_spec_py_has_its_own_text():
    codes = spec_problem_codes()
    assert {"unknown_kind", "duplicate_key", "unreachable", "no_confirmation"} <= codes
    for code in codes:
        problem = Problem(code, ("steps", 2, "label"), {"key": "name", "other": 1, "ref": "name", "max": 5, "min": 1,
                                                         "kind": "x", "known": "a, b", "expected": "text", "label": "L",
                                                         "after": "完了", "values": "v", "format": "f", "op": "o"})
        rendered = texts.problem_message(problem)
        assert rendered.strip() and "%(" not in rendered, code
        assert "設定に問題があります" not in rendered, code  # not the generic fallback


def test_problem_location_names_the_step_with_its_label():
    data = spec_data(step_dict("a", "short_text", "ご住所"), step_dict("b", "short_text", "電話"), step_dict("name", "short_text", "お名前", options={"max_length": 0}))
    with pytest.raises(SpecError) as error:
        parse_spec(data)
    [problem] = error.value.problems
    message = texts.problem_message(problem, data)
    assert message.startswith("3番目のステップ「お名前」の設定「最大文字数」")
    assert "1〜5000" in message
    assert texts.problem_message(problem).startswith("3番目のステップの設定「最大文字数」")


def test_unknown_kind_problem_lists_known_kinds_in_japanese():
    with pytest.raises(SpecError) as error:
        parse_spec(spec_data(step_dict("sig", "signature", "署名")))
    message = texts.problem_message(error.value.problems[0])
    assert "「signature」" in message and "一行テキスト（short_text）" in message and "完了（completion）" in message


def test_condition_problems_use_step_labels():
    data = spec_data(
        step_dict("a", "short_text", "ご住所", condition={"step": "b", "op": "answered"}),
        step_dict("b", "short_text", "電話番号"),
    )
    [problem] = validate_spec(parse_spec(data))
    assert texts.problem_message(problem, data) == (
        "1番目のステップ「ご住所」の表示条件：条件で参照できるのは、このステップより前の質問だけです（「電話番号」は後ろにあります）。"
    )


def test_flow_problems_render():
    data = spec_data(step_dict("a", "short_text", "A"), completion(), with_end=False)
    problems = validate_spec(parse_spec(data))
    assert [texts.problem_message(p, data) for p in problems] == [
        "2番目のステップ「受け付けました。」：完了の前に、条件のない確認ステップが必要です。"
    ]
    assert texts.problem_message(Problem("no_steps", ("steps",))) == "ステップが1つもありません。"
    assert texts.problem_message(Problem("wrong_type", ())).startswith("手続き全体の形式が正しくありません")


@pytest.mark.parametrize(("max_bytes", "expected"), [(10 * 1024 * 1024, "10MB"), (512 * 1024, "512KB"), (100, "100バイト")])
def test_image_size_limit_is_readable(max_bytes, expected):
    assert texts.render_message(Message("error.image_too_large", {"max_bytes": max_bytes})) == (
        f"画像が大きすぎます。{expected}以下の画像を送ってください。"
    )
