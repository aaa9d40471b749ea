"""Engine Messages -> LINE messages: within LINE's limits, every action reachable, valid on the fake LINE."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from messaging.line import postback, render
from messaging.line.client import LineClient
from messaging.line.fakeline import schema_errors
from messaging.tests.test_webhook import ACCESS_TOKEN, actions_in, line_channel, user_id  # noqa: F401 (autouse fixture)
from procedures import engine
from procedures.engine.types import Action, Catalog, Event, Message, SummaryRow
from procedures.spec import parse_spec

TEMPLATES = Path(__file__).resolve().parents[2] / "procedures" / "templates_library"
NOW = datetime(2026, 6, 2, 1, 0, tzinfo=UTC)  # Tuesday 10:00 in Tokyo


# --------------------------------------------------------------------------
# Conversations that produce every kind of engine message
# --------------------------------------------------------------------------


def template_spec(file_name: str, procedure_id: int, version_id: int):
    data = json.loads((TEMPLATES / file_name).read_text(encoding="utf-8"))["procedure"]
    return parse_spec({**data, "procedure_id": procedure_id, "version_id": version_id})


def spec_of(steps: list[dict], *, name: str = "テスト手続き", keyword: str = "テスト", procedure_id: int = 1):
    return parse_spec(
        {
            "name": name,
            "keywords": [keyword],
            "procedure_id": procedure_id,
            "version_id": procedure_id * 10,
            "steps": [
                *steps,
                {"key": "confirm", "kind": "confirmation", "label": "以下の内容でよろしいですか？"},
                {"key": "done", "kind": "completion", "label": "受け付けました。"},
            ],
        }
    )


class Talk:
    """Runs the engine (no database) and keeps every message it says."""

    def __init__(self, *specs):
        self.catalog = Catalog(
            versions={spec.version_id: spec for spec in specs},
            current={spec.procedure_id: spec.version_id for spec in specs},
        )
        self.state = None
        self.last: tuple[Message, ...] = ()
        self.said: list[Message] = []

    def send(self, event: Event) -> tuple[Message, ...]:
        result = engine.step(self.catalog, self.state, event, NOW)
        self.state, self.last = result.state, result.messages
        self.said += result.messages
        return result.messages

    def say(self, text: str):
        return self.send(Event(type="text", text=text))

    def action(self, code: str, label: str | None = None) -> Action:
        for message in reversed(self.last):
            edits = [row.edit for row in message.rows if row.edit is not None]
            for action in (*message.actions, *edits):
                if action.code == code and (label is None or action.params.get("label") == label):
                    return action
        raise AssertionError(f"no {code} {label or ''} in {[m.code for m in self.last]}")

    def tap(self, code: str, label: str | None = None):
        return self.send(self.action(code, label).event)


def bulky_garbage_talk() -> list[Message]:
    talk = Talk(template_spec("bulky_garbage.json", 1, 10), template_spec("residence_certificate_mail.json", 2, 20))
    talk.say("こんにちは")  # menu
    talk.say("粗大ごみ")
    talk.tap("action.yes")
    talk.tap("action.page_next")
    talk.tap("action.toggle", "スキー板（400円）")
    talk.tap("action.page_prev")
    talk.tap("action.toggle", "タンス（1,200円）")
    talk.tap("action.done")
    picker = talk.action("action.date_picker")
    talk.send(Event(type="date", value=picker.options["initial"], step=picker.event.step, session=picker.event.session))
    for answer in ("玄関前", "小城 太郎", "小城市三日月町長神田2312番地2", "090-1234-5678"):
        talk.say(answer)
    camera = talk.action("action.camera")
    talk.send(Event(type="image", data={"ref": "line/images/a.jpg", "content_type": "image/jpeg", "size": 1000}))
    assert camera.kind == "camera"
    talk.tap("action.skip")  # the location
    talk.tap("action.edit")  # back to the first row, then on to the summary again
    talk.tap("action.keep")
    talk.say("やめる")  # confirm_cancel
    talk.tap("action.keep_going")
    talk.say("住民票")  # confirm_switch
    talk.tap("action.stay")
    talk.tap("action.submit")
    return talk.said


def many_choices_talk() -> list[Message]:
    long_label = "とても長い選択肢の名前です。" * 6  # 84 characters
    choices13 = [{"value": f"c{i}", "label": f"選択肢{i}", "amount": 0} for i in range(13)]
    choices100 = [{"value": f"v{i}", "label": f"{i}番目 {long_label}"[:100], "amount": 0} for i in range(100)]
    spec = spec_of(
        [
            {
                "key": "thirteen",
                "kind": "single_choice",
                "label": "13の選択肢",
                "required": False,
                "choices": choices13,
            },
            {"key": "hundred", "kind": "single_choice", "label": "100の選択肢", "choices": choices100},
            {
                "key": "many",
                "kind": "multiple_choice",
                "label": "複数選択",
                "required": False,
                "choices": choices100[:30],
            },
        ]
    )
    talk = Talk(spec)
    talk.say("テスト")
    talk.tap("action.choice", "選択肢12")
    for _ in range(9):
        talk.tap("action.page_next")
    talk.tap("action.choice")
    talk.tap("action.toggle")
    talk.tap("action.page_next")
    talk.tap("action.done")
    return talk.said


def long_summary_talk() -> list[Message]:
    steps = [
        {"key": f"q{i}", "kind": "long_text", "label": f"質問{i}：" + "説明" * 50, "options": {"max_length": 5000}}
        for i in range(80)
    ]
    talk = Talk(spec_of(steps))
    talk.say("テスト")
    for i in range(80):
        talk.say(f"回答{i} " + "長い回答です。" * (600 if i < 3 else 2))
    assert talk.last[-1].layout == "summary"
    return talk.said


def synthetic_messages() -> list[Message]:
    def choice(label: str, value: str) -> Action:
        return Action("action.choice", {"label": label}, Event(type="choice", value=value, step="s", session="x"))

    return [
        Message("step.message", {"label": "あ" * 4000, "help": "い" * 3000}),
        Message("step.message", {"label": "😀" * 3000}),  # 6000 UTF-16 units
        Message(
            "question",
            {"label": "カードに収まる質問"},
            layout="buttons",
            actions=(choice("はい", "y"), choice("いいえ", "n")),
        ),
        Message("question", {"label": "長い" * 100}, layout="buttons", actions=(choice("はい", "y"),)),
        Message(
            "question", {"label": "5つ"}, layout="buttons", actions=tuple(choice(f"{i}", f"v{i}") for i in range(5))
        ),
        Message(
            "question",
            {"label": "長いラベル"},
            layout="buttons",
            actions=(choice("二十文字を超える長い長い長い選択肢ラベル", "a"),),
        ),
        Message(
            "session.confirm_switch",
            {"current": "名前" * 150, "next": "次"},
            layout="confirm",
            actions=(
                Action("action.switch", {}, Event(type="command", name="switch", step="s", session="x")),
                Action("action.stay", {}, Event(type="command", name="stay", step="s", session="x")),
            ),
        ),
        Message(
            "summary",
            {"name": "空の確認"},
            layout="summary",
            actions=(),
            rows=(SummaryRow(key="a", label="任意の質問", value=None, kind="short_text"),),
        ),
    ]


@pytest.fixture(scope="module")
def all_messages() -> list[Message]:
    return bulky_garbage_talk() + many_choices_talk() + long_summary_talk() + synthetic_messages()


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def size(obj) -> int:
    return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def limit_problems(message: dict) -> list[str]:
    """LINE's documented limits that the OpenAPI spec does not state."""
    problems = []
    units = render.units
    if message["type"] == "text" and not 0 < units(message["text"]) <= 5000:
        problems.append("text length")
    if "altText" in message and not 0 < units(message["altText"]) <= 400:
        problems.append("altText length")
    items = (message.get("quickReply") or {}).get("items", [])
    if len(items) > 13:
        problems.append("more than 13 quick replies")
    problems += [f"quick reply label {i['action']['label']}" for i in items if units(i["action"]["label"]) > 20]
    template = message.get("template")
    if template and template["type"] == "buttons":
        text_max = 60 if template.get("title") or template.get("thumbnailImageUrl") else 160
        if len(template["actions"]) > 4 or units(template["text"]) > text_max or units(template.get("title", "")) > 40:
            problems.append("buttons template limits")
    if template and template["type"] == "confirm" and (len(template["actions"]) != 2 or units(template["text"]) > 240):
        problems.append("confirm template limits")
    if template:
        problems += [f"template label {a['label']}" for a in template["actions"] if units(a["label"]) > 20]
    if message["type"] == "flex":
        contents = message["contents"]
        bubbles = contents["contents"] if contents["type"] == "carousel" else [contents]
        if len(bubbles) > 12:
            problems.append("more than 12 bubbles")
        if any(size(bubble) > 30_000 for bubble in bubbles) or size(contents) > 50_000:
            problems.append("flex too large")
    for action in actions_in(message):
        if units(action.get("label", "")) > 40:
            problems.append(f"label {action['label']}")
        if len(action.get("data", "")) > 300 or units(action.get("displayText", "")) > 300:
            problems.append("postback data or displayText too long")
    return problems


def test_every_rendered_message_is_valid_and_within_lines_limits(all_messages):
    count = 0
    for message in all_messages:
        for line_message in render.render(message):
            count += 1
            assert schema_errors("messaging-api", "Message", line_message) == [], (message.code, line_message)
            assert limit_problems(line_message) == [], (message.code, limit_problems(line_message))
    assert count > 60


def test_every_action_of_every_message_is_reachable(all_messages):
    kinds = {"camera": "camera", "camera_roll": "cameraRoll", "location": "location"}
    for message in all_messages:
        rendered = render.render(message)
        line_actions = [action for line_message in rendered for action in actions_in(line_message)]
        events = [
            postback.decode(a["data"], {"date": a.get("initial")})
            for a in line_actions
            if a["type"] in ("postback", "datetimepicker")
        ]
        expected = [*message.actions, *(row.edit for row in message.rows if row.edit is not None)]
        for action in expected:
            if action.kind in kinds:
                assert any(a["type"] == kinds[action.kind] for a in line_actions), (message.code, action.code)
            elif action.kind == "date_picker":
                picker = next(a for a in line_actions if a["type"] == "datetimepicker")
                assert (picker["mode"], picker["initial"]) == ("date", action.options["initial"])
                assert picker.get("min") == action.options.get("min") and picker.get("max") == action.options.get("max")
                assert postback.decode(picker["data"], {"date": "2026-06-05"}).value == "2026-06-05"
            else:
                assert action.event in events, (message.code, action.code, action.params)
        # Quick replies are on the last message only, where LINE shows them.
        assert all("quickReply" not in m for m in rendered[:-1]), message.code


def test_nothing_is_cut_silently(all_messages):
    """Long texts are split, and a shortened choice label is listed in full in the text."""
    for message in all_messages:
        rendered = render.render(message)
        texts = "\n".join(m["text"] for m in rendered if m["type"] == "text")
        if message.layout in ("text", "question") and message.code != "summary":
            # A split happens at a line break, which then separates two messages.
            assert engine_text(message).replace("\n", "") in texts.replace("\n", "")
        for action in message.actions:
            label = render.action_label(action)
            if action.code in render.ANSWER_CODES and render.units(label) > 20:
                shown = [a["label"] for m in rendered for a in actions_in(m)]
                assert label in shown or f"・{label}" in texts, label


def engine_text(message: Message) -> str:
    from procedures.texts import render_message

    return render_message(message)


def test_question_with_few_actions_is_text_with_quick_replies():
    actions = (
        Action("action.yes", {}, Event(type="choice", value="yes", step="in_city", session="s")),
        Action("action.no", {}, Event(type="choice", value="no", step="in_city", session="s")),
        Action("action.cancel", {}, Event(type="command", name="cancel", step="in_city", session="s")),
    )
    [line_message] = render.render(
        Message("question", {"label": "市内にお住まいですか？", "kind": "yes_no"}, layout="question", actions=actions)
    )
    assert line_message["type"] == "text" and line_message["text"].startswith("市内にお住まいですか？")
    items = line_message["quickReply"]["items"]
    assert [item["action"]["label"] for item in items] == ["はい", "いいえ", "やめる"]
    assert items[0]["action"]["displayText"] == "はい"


def test_question_with_more_than_13_actions_lists_every_button_in_flex_and_keeps_navigation_as_quick_replies():
    talk_messages = many_choices_talk()
    paged = next(
        m
        for m in talk_messages
        if m.code == "question" and len(m.actions) > 13 and any(a.code == "action.page_next" for a in m.actions)
    )
    text_part, *flex_part = render.render(paged)
    assert text_part["type"] == "text" and "quickReply" not in text_part
    assert all(m["type"] == "flex" for m in flex_part)
    quick = [item["action"]["label"] for item in flex_part[-1]["quickReply"]["items"]]
    assert "やめる" in quick and "次へ" in quick
    assert not any(label.startswith("選択肢") for label in quick)


def test_labels_are_shortened_with_an_ellipsis():
    assert render.truncate("あ" * 25, 20) == "あ" * 19 + "…"
    assert render.truncate("短い", 20) == "短い"
    assert render.units(render.truncate("😀" * 30, 20)) <= 20
    assert render.split_text("a" * 12001) == ["a" * 5000, "a" * 5000, "a" * 2001]


def test_confirm_layout_is_a_confirm_template():
    actions = (
        Action("action.confirm_cancel", {}, Event(type="command", name="confirm_cancel", step="s", session="x")),
        Action("action.keep_going", {}, Event(type="command", name="keep_going", step="s", session="x")),
    )
    [line_message] = render.render(
        Message("session.confirm_cancel", {"name": "粗大ごみ収集申込"}, layout="confirm", actions=actions)
    )
    template = line_message["template"]
    assert template["type"] == "confirm"
    assert [a["label"] for a in template["actions"]] == ["はい、やめます", "いいえ、続けます"]
    assert line_message["altText"] == template["text"]


def test_summary_is_a_flex_card_with_a_change_button_per_row():
    bulky = bulky_garbage_talk()
    summary = next(m for m in bulky if m.layout == "summary")
    rendered = render.render(summary)
    assert [m["type"] for m in rendered] == ["flex"]
    flex = rendered[0]
    assert flex["altText"] == "「粗大ごみ収集申込」の入力内容の確認"
    change_buttons = [a for a in actions_in(flex) if a["label"] == "変更"]
    assert len(change_buttons) == len(summary.rows)
    body = json.dumps(flex, ensure_ascii=False)
    assert "小城 太郎" not in body and "090-1234-5678" not in body  # sensitive answers are masked
    assert "手数料合計：1600円" in body
    assert [i["action"]["label"] for i in flex["quickReply"]["items"]] == ["この内容で申し込む", "戻る", "やめる"]


def test_long_summary_is_split_into_carousels_of_at_most_12_bubbles():
    summary = [m for m in long_summary_talk() if m.layout == "summary"][-1]
    rendered = render.render(summary)
    assert len(rendered) >= 2 and all(m["type"] == "flex" for m in rendered)
    bubbles = [
        b
        for m in rendered
        for b in (m["contents"]["contents"] if m["contents"]["type"] == "carousel" else [m["contents"]])
    ]
    assert sum(1 for b in bubbles for a in actions_in(b) if a["label"] == "変更") == 80
    assert "footer" in bubbles[-1]


def test_rendered_messages_are_accepted_by_the_fake_line(fake_line, all_messages):
    user = user_id(99)
    line_messages = render.render_all(all_messages)
    with LineClient() as line:
        for number, group in enumerate(render.chunks(line_messages)):
            result = line.push(user, group, f"00000000-0000-4000-8000-{number:012d}")
            assert result.ok, result
    assert fake_line.invalid_calls() == []
    assert fake_line.messages_sent_to(user) == line_messages
    assert ACCESS_TOKEN in fake_line.last_call("/v2/bot/message/push").headers["authorization"]
