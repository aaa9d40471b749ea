"""The flow picture: the pure layout, conditions in words, the SVG and the admin page."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from procedures.flow import (
    BRANCH_X,
    MAIN_X,
    condition_text,
    flow_build,
    flow_svg,
    when_text,
)

ITEM = {
    "key": "item",
    "kind": "single_choice",
    "label": "品目",
    "choices": [
        {"value": "tansu", "label": "タンス", "amount": 1200},
        {"value": "bed", "label": "ベッド", "amount": 1000},
        {"value": "other", "label": "その他", "amount": 0},
    ],
}


def spec(*steps) -> dict:
    return {"name": "粗大ごみ収集申込", "steps": list(steps)}


def step(key, kind="short_text", label=None, condition=None, **extra) -> dict:
    return {"key": key, "kind": kind, "label": label or key, "condition": condition, **extra}


TANSU = {"step": "item", "op": "equals", "value": "tansu"}
OTHER = {"step": "item", "op": "equals", "value": "other"}


def bulky_spec() -> dict:
    return spec(
        ITEM,
        step("drawers", "yes_no", "引き出しは外しましたか？", TANSU),
        step("drawers_note", "message", "引き出しは別に数えます。", TANSU),
        step("not_covered", "exit", "その他の品目は電話でご相談ください。", OTHER),
        step("count", "number", "個数", options={"unit": "点"}),
        step("confirm", "confirmation", "確認"),
        step("done", "completion", "受け付けました"),
    )


# --------------------------------------------------------------------------
# Layout (pure)
# --------------------------------------------------------------------------


def test_unconditional_steps_stay_on_the_main_line_top_to_bottom():
    flow = flow_build(bulky_spec())
    main = [box for box in flow.boxes if box.column == 0]
    assert [box.key for box in main] == ["item", "count", "confirm", "done"]
    assert all(box.x == MAIN_X for box in main)
    assert [box.y for box in flow.boxes] == sorted(box.y for box in flow.boxes)


def test_conditional_steps_are_drawn_as_branches_to_the_side():
    flow = flow_build(bulky_spec())
    branch = [box for box in flow.boxes if box.column == 1]
    assert [box.key for box in branch] == ["drawers", "drawers_note", "not_covered"]
    assert all(box.x == BRANCH_X for box in branch)
    assert flow.width >= BRANCH_X + branch[0].width


def test_flow_picture_shows_branch_label():
    flow = flow_build(bulky_spec())
    labels = [edge.label for edge in flow.edges if edge.style == "branch"]
    assert labels == ["品目 が タンス のとき", "品目 が その他 のとき"]
    assert flow.box("drawers").condition == "品目 が タンス"
    svg = str(flow_svg(flow))
    assert "品目 が タンス のとき" in svg
    assert svg.startswith("<svg") and svg.endswith("</svg>")


def test_consecutive_steps_with_the_same_condition_share_one_branch():
    flow = flow_build(bulky_spec())
    branch_edges = [edge for edge in flow.edges if edge.style == "branch"]
    assert len(branch_edges) == 2  # drawers + drawers_note together, not_covered alone
    drawers, note = flow.box("drawers"), flow.box("drawers_note")
    assert any(edge.points == ((drawers.center_x, drawers.bottom), (note.center_x, note.y)) for edge in flow.edges)
    # The tansu branch rejoins the main line; the exit branch ends there.
    returns = [edge for edge in flow.edges if edge.style == "return"]
    assert len(returns) == 1 and returns[0].points[0] == (note.center_x, note.bottom)


def test_exit_and_completion_are_marked_as_ends():
    flow = flow_build(bulky_spec())
    assert flow.box("not_covered").end == "exit"
    assert flow.box("done").end == "completion"
    assert flow.box("count").end == ""
    svg = str(flow_svg(flow))
    assert "end-exit" in svg and "end-completion" in svg
    assert "■ 終了" in svg and "■ 完了" in svg


def test_steps_after_an_unconditional_end_are_shown_unreachable():
    flow = flow_build(spec(step("a"), step("stop", "exit", "対象外です"), step("b")))
    assert flow.box("b").reachable is False
    assert flow.edges[-1].style == "unreachable"


def test_branch_at_the_end_is_joined_by_the_main_line():
    flow = flow_build(spec(ITEM, step("note", "long_text", "説明", OTHER)))
    assert flow.height > flow.box("note").bottom
    assert flow.edges[-1].style == "main"  # the main line is carried down to where the branch rejoins


def test_empty_spec_has_only_the_start():
    flow = flow_build({"name": "空", "steps": []})
    assert flow.boxes == () and "開始" in str(flow_svg(flow))


def test_long_labels_are_truncated_in_boxes_but_kept_in_full():
    long_label = "収集にうかがう住所を、建物名と部屋番号まで入力してください。"
    box = flow_build(spec(step("address", label=long_label))).box("address")
    assert box.label.endswith("…") and len(box.label) < len(long_label)
    assert box.full_label == long_label


def test_svg_escapes_staff_text_and_links_boxes():
    flow = flow_build(spec(step("x", label='<script>alert("x")</script>')))
    svg = str(flow_svg(flow, {"x": "/admin/procedures/step/1/change/"}))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert '<a href="/admin/procedures/step/1/change/">' in svg


# --------------------------------------------------------------------------
# Conditions in words
# --------------------------------------------------------------------------


def test_conditions_in_words():
    steps = [
        ITEM,
        step("in_city", "yes_no", "市内にお住まいですか？"),
        step("count", "number", "個数", options={"unit": "点"}),
    ]
    assert condition_text(None, steps) == ""
    assert condition_text({"step": "in_city", "op": "equals", "value": False}, steps) == "市内にお住まいですか？ が いいえ"
    assert condition_text({"step": "item", "op": "one_of", "values": ["tansu", "bed"]}, steps) == (
        "品目 が タンス・ベッド のいずれか"
    )
    assert condition_text({"step": "count", "op": "compare", "operator": "ge", "value": 3}, steps) == "個数 が 3点 以上"
    assert condition_text({"step": "count", "op": "compare", "operator": "lt", "value": 2.0}, steps) == "個数 が 2点 未満"
    assert condition_text({"step": "count", "op": "answered"}, steps) == "個数 に回答あり"
    assert condition_text({"step": "count", "op": "not_answered"}, steps) == "個数 が未回答"
    nested = {"all": [TANSU, {"any": [{"step": "count", "op": "not_answered"}, {"step": "in_city", "op": "equals", "value": True}]}]}
    assert condition_text(nested, steps) == "品目 が タンス かつ （個数 が未回答 または 市内にお住まいですか？ が はい）"
    assert "不明なステップ ghost" in condition_text({"step": "ghost", "op": "answered"}, steps)
    assert when_text(TANSU, steps) == "品目 が タンス のとき"


# --------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------


@pytest.mark.django_db
def test_flow_page_renders_for_the_demo_procedure(admin_client):
    from procedures.services import procedure_import

    raw = (Path(settings.BASE_DIR) / "procedures" / "templates_library" / "bulky_garbage.json").read_bytes()
    procedure = procedure_import(raw=raw, max_bytes=settings.PROCEDURE_IMPORT_MAX_BYTES, receipt_prefix="FLOWDEMO")
    draft = procedure.draft
    response = admin_client.get(reverse("admin:procedures_procedureversion_flow", args=[draft.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in html and "フロー図" in html
    assert "が いいえ のとき" in html  # the exit for residents outside the city
    assert "布団（400円）" in html  # a follow-up question shown only when futon is chosen
    assert "end-exit" in html and "end-completion" in html
    assert reverse("admin:procedures_step_change", args=[draft.steps.get(key="futon_extra").pk]) in html
    # Reachable from the version page and from the procedure list.
    flow_url = reverse("admin:procedures_procedureversion_flow", args=[draft.pk])
    assert flow_url in admin_client.get(reverse("admin:procedures_procedureversion_change", args=[draft.pk])).content.decode()
    assert flow_url in admin_client.get(reverse("admin:procedures_procedure_changelist")).content.decode()
