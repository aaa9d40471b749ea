"""The flow picture of a procedure version, and conditions in words.

`flow_build(spec_data)` is a pure function from spec data (the dict of
procedures/spec.py, e.g. `selectors.version_spec_data(version)`) to a drawable
structure: boxes placed top to bottom, conditional steps offset to the side as
branches, and connectors (labelled with the condition in words where they
branch off). `flow_svg(flow)` draws that structure as an inline SVG string;
no database, no JavaScript.

`condition_text(condition, steps)` says a condition in Japanese, e.g.
"品目 が タンス" (the connector adds "のとき").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from procedures.spec import INPUT_KINDS

# --------------------------------------------------------------------------
# Kinds: label and a small symbol for the picture and the step list
# --------------------------------------------------------------------------

KIND_SYMBOLS = {
    "message": "✉",
    "short_text": "✎",
    "long_text": "¶",
    "number": "#",
    "date": "▦",
    "single_choice": "◉",
    "multiple_choice": "☑",
    "yes_no": "?",
    "image": "▣",
    "location": "◎",
    "confirmation": "✔",
    "completion": "★",
    "exit": "✖",
}
END_KINDS = ("completion", "exit")


def kind_label(kind: str) -> str:
    """The kind's Japanese name (the step model's verbose name)."""
    from procedures.models import STEP_MODELS  # class attributes only, no query

    model = STEP_MODELS.get(kind)
    return str(model._meta.verbose_name) if model is not None else kind


def truncate(text: str, limit: int) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def wrap(text: str, width: int, max_lines: int) -> tuple[str, ...]:
    """Lines of at most `width` characters, broken at a space when one is near; the last line may end in "…"."""
    text = " ".join(str(text or "").split())
    lines: list[str] = []
    while text and len(lines) < max_lines:
        if len(text) <= width:
            lines.append(text)
            text = ""
            break
        if len(lines) == max_lines - 1:
            lines.append(truncate(text, width))
            text = ""
            break
        cut = text.rfind(" ", width // 2, width + 1)
        cut = cut if cut > 0 else width
        lines.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    return tuple(lines)


# --------------------------------------------------------------------------
# Conditions in words
# --------------------------------------------------------------------------

STEP_NAME_LIMIT = 16


def _value_words(value, step: dict | None) -> str:
    """A condition value as the resident would see it: a choice's label, はい/いいえ, or the value itself."""
    if isinstance(value, bool):
        return _("はい") if value else _("いいえ")
    if step is not None:
        if step.get("kind") == "yes_no" and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("yes", "true", "はい"):
                return _("はい")
            if lowered in ("no", "false", "いいえ"):
                return _("いいえ")
        for choice in step.get("choices") or []:
            if isinstance(choice, dict) and choice.get("value") == value:
                return str(choice.get("label") or value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _step_name(key, steps_by_key: dict) -> str:
    step = steps_by_key.get(key)
    if step is None:
        return _("（不明なステップ %(key)s）") % {"key": key}
    return truncate(step.get("label") or key, STEP_NAME_LIMIT)


COMPARE_WORDS = {
    "lt": gettext_noop("%(step)s が %(value)s 未満"),
    "le": gettext_noop("%(step)s が %(value)s 以下"),
    "gt": gettext_noop("%(step)s が %(value)s より大きい"),
    "ge": gettext_noop("%(step)s が %(value)s 以上"),
    "eq": gettext_noop("%(step)s が %(value)s"),
    "ne": gettext_noop("%(step)s が %(value)s 以外"),
}


def _leaf_text(leaf: dict, steps_by_key: dict) -> str:
    key = leaf.get("step")
    step = steps_by_key.get(key)
    name = _step_name(key, steps_by_key)
    op = leaf.get("op")
    if op == "equals":
        return _("%(step)s が %(value)s") % {"step": name, "value": _value_words(leaf.get("value"), step)}
    if op == "one_of":
        values = leaf.get("values") if isinstance(leaf.get("values"), list) else []
        words = "・".join(_value_words(value, step) for value in values)
        if len(values) == 1:
            return _("%(step)s が %(value)s") % {"step": name, "value": words}
        return _("%(step)s が %(values)s のいずれか") % {"step": name, "values": words}
    if op == "compare":
        template = COMPARE_WORDS.get(leaf.get("operator"))
        if template is None:
            return _("%(step)s の比較（不明な比較）") % {"step": name}
        unit = str(((step or {}).get("options") or {}).get("unit") or "")
        value = _value_words(leaf.get("value"), None) + unit
        return _(template) % {"step": name, "value": value}
    if op == "answered":
        return _("%(step)s に回答あり") % {"step": name}
    if op == "not_answered":
        return _("%(step)s が未回答") % {"step": name}
    return _("%(step)s についての不明な条件") % {"step": name}


def condition_text(condition, steps) -> str:
    """The condition in Japanese words; "" when there is none. `steps` are spec step dicts (or a dict by key)."""
    if not condition:
        return ""
    steps_by_key = steps if isinstance(steps, dict) else {s.get("key"): s for s in steps if isinstance(s, dict)}
    return _condition_text(condition, steps_by_key, depth=0)


def _condition_text(condition, steps_by_key: dict, depth: int) -> str:
    if not isinstance(condition, dict) or depth > 5:
        return _("（読めない条件）")
    for group, joiner in (("all", _(" かつ ")), ("any", _(" または "))):
        if group in condition:
            items = condition[group] if isinstance(condition[group], list) else []
            parts = [_condition_text(item, steps_by_key, depth + 1) for item in items]
            if not parts:
                return _("（読めない条件）")
            text = joiner.join(parts)
            return f"（{text}）" if depth and len(parts) > 1 else text
    return _leaf_text(condition, steps_by_key)


def when_text(condition, steps) -> str:
    """The label of a branch connector: "品目 が タンス のとき"."""
    text = condition_text(condition, steps)
    return _("%(condition)s のとき") % {"condition": text} if text else ""


# --------------------------------------------------------------------------
# Layout (pure)
# --------------------------------------------------------------------------

BOX_WIDTH = 280
BOX_HEIGHT = 58
ROW_GAP = 30
MARGIN = 24
MAIN_X = MARGIN
BRANCH_GAP = 220  # room for the connector label between the columns
BRANCH_X = MAIN_X + BOX_WIDTH + BRANCH_GAP
START_HEIGHT = 30
START_WIDTH = 96
FIRST_ROW_Y = MARGIN + START_HEIGHT + ROW_GAP
LABEL_LIMIT = 19  # characters of the step label shown in a box
BRANCH_LABEL_WIDTH = 25  # characters per line of a connector label
BRANCH_LABEL_LINES = 2


@dataclass(frozen=True)
class FlowBox:
    index: int  # position in the spec's step list, from 0
    key: str
    kind: str
    kind_label: str
    symbol: str
    label: str  # truncated for the box
    full_label: str
    x: int
    y: int
    width: int
    height: int
    column: int  # 0: the main line, 1: a branch
    condition: str = ""  # the condition in words ("" when unconditional)
    end: str = ""  # "completion" or "exit" when the conversation ends here
    required: bool = True
    sensitive: bool = False
    reachable: bool = True

    @property
    def center_x(self) -> int:
        return self.x + self.width // 2

    @property
    def bottom(self) -> int:
        return self.y + self.height


@dataclass(frozen=True)
class FlowEdge:
    points: tuple[tuple[int, int], ...]
    style: str = "main"  # main | branch | return | unreachable
    label: str = ""  # shown along the first segment (in full as a tooltip)
    lines: tuple[str, ...] = ()  # the label as drawn: wrapped, possibly shortened

    @property
    def drawn_lines(self) -> tuple[str, ...]:
        return self.lines or ((self.label,) if self.label else ())


@dataclass(frozen=True)
class Flow:
    name: str
    boxes: tuple[FlowBox, ...]
    edges: tuple[FlowEdge, ...]
    start: tuple[int, int, int, int]  # x, y, width, height of the start mark
    junctions: tuple[tuple[int, int], ...] = ()
    width: int = 0
    height: int = 0
    branch_labels: tuple[str, ...] = field(default=())

    def box(self, key: str) -> FlowBox:
        return next(box for box in self.boxes if box.key == key)


def _groups(steps: list[dict]) -> list[tuple[object, list[int]]]:
    """Consecutive steps with the same condition form one group: (condition, [indexes])."""
    groups: list[tuple[object, list[int]]] = []
    for index, step in enumerate(steps):
        condition = step.get("condition") or None
        if groups and condition is not None and groups[-1][0] == condition:
            groups[-1][1].append(index)
        else:
            groups.append((condition, [index]))
    return groups


def flow_build(spec_data: dict) -> Flow:
    """Place every step of the spec data: unconditional ones on the main line, conditional ones as branches."""
    steps = [step for step in (spec_data.get("steps") or []) if isinstance(step, dict)]
    steps_by_key = {step.get("key"): step for step in steps}
    main_center = MAIN_X + BOX_WIDTH // 2
    start = (main_center - START_WIDTH // 2, MARGIN, START_WIDTH, START_HEIGHT)
    anchor = (main_center, MARGIN + START_HEIGHT)  # where the main line continues from
    alive = True  # False after an unconditional completion or exit
    pending_label = ""  # "それ以外" after a branch junction
    boxes: list[FlowBox] = []
    edges: list[FlowEdge] = []
    junctions: list[tuple[int, int]] = []
    branch_labels: list[str] = []
    lowest_merge = 0

    def row_y(index: int) -> int:
        return FIRST_ROW_Y + index * (BOX_HEIGHT + ROW_GAP)

    def make_box(index: int, column: int, condition_words: str, reachable: bool) -> FlowBox:
        step = steps[index]
        kind = str(step.get("kind") or "")
        full_label = " ".join(str(step.get("label") or "").split())
        return FlowBox(
            index=index,
            key=str(step.get("key") or ""),
            kind=kind,
            kind_label=kind_label(kind),
            symbol=KIND_SYMBOLS.get(kind, "•"),
            label=truncate(full_label, LABEL_LIMIT),
            full_label=full_label,
            x=MAIN_X if column == 0 else BRANCH_X,
            y=row_y(index),
            width=BOX_WIDTH,
            height=BOX_HEIGHT,
            column=column,
            condition=condition_words,
            end=kind if kind in END_KINDS else "",
            required=bool(step.get("required", True)) and kind in INPUT_KINDS,
            sensitive=bool(step.get("sensitive", False)),
            reachable=reachable,
        )

    for condition, indexes in _groups(steps):
        if condition is None:
            index = indexes[0]
            box = make_box(index, 0, "", alive)
            edges.append(
                FlowEdge(
                    points=(anchor, (main_center, box.y)),
                    style="main" if alive else "unreachable",
                    label=pending_label if alive else _("ここには進みません"),
                )
            )
            pending_label = ""
            boxes.append(box)
            anchor = (main_center, box.bottom)
            if box.end:
                alive = False
            continue
        words = condition_text(condition, steps_by_key)
        label = when_text(condition, steps_by_key)
        branch_labels.append(label)
        first_y = row_y(indexes[0])
        junction = (main_center, first_y + BOX_HEIGHT // 2)
        style = "main" if alive else "unreachable"
        edges.append(FlowEdge(points=(anchor, junction), style=style, label=pending_label if alive else ""))
        junctions.append(junction)
        edges.append(
            FlowEdge(
                points=(junction, (BRANCH_X, junction[1])),
                style="branch" if alive else "unreachable",
                label=label,
                lines=wrap(label, BRANCH_LABEL_WIDTH, BRANCH_LABEL_LINES),
            )
        )
        anchor = junction
        pending_label = _("それ以外")
        branch_alive = alive
        previous = None
        for index in indexes:
            box = make_box(index, 1, words, branch_alive)
            if previous is not None:
                edges.append(
                    FlowEdge(
                        points=((previous.center_x, previous.bottom), (box.center_x, box.y)),
                        style="main" if branch_alive else "unreachable",
                    )
                )
            boxes.append(box)
            previous = box
            if box.end:
                branch_alive = False
        if previous is not None and not previous.end and branch_alive:
            merge_y = previous.bottom + ROW_GAP // 2
            edges.append(
                FlowEdge(
                    points=((previous.center_x, previous.bottom), (previous.center_x, merge_y), (main_center, merge_y)),
                    style="return",
                )
            )
            junctions.append((main_center, merge_y))
            lowest_merge = max(lowest_merge, merge_y)

    # Branches that rejoin below the last main-line step: carry the main line down to them.
    if lowest_merge > anchor[1] and alive:
        edges.append(FlowEdge(points=(anchor, (main_center, lowest_merge)), style="main", label=pending_label))
        anchor = (main_center, lowest_merge)

    has_branch = any(box.column == 1 for box in boxes)
    width = (BRANCH_X if has_branch else MAIN_X) + BOX_WIDTH + MARGIN
    bottom = max([box.bottom for box in boxes] + [anchor[1], MARGIN + START_HEIGHT])
    return Flow(
        name=str(spec_data.get("name") or ""),
        boxes=tuple(boxes),
        edges=tuple(edges),
        start=start,
        junctions=tuple(junctions),
        width=width,
        height=bottom + MARGIN,
        branch_labels=tuple(branch_labels),
    )


# --------------------------------------------------------------------------
# SVG
# --------------------------------------------------------------------------

_SVG_STYLE = """
.flow-box rect{fill:#fff;stroke:#417690;stroke-width:1.5}
.flow-box.branch rect{fill:#f6fbfd}
.flow-box.end-completion rect{fill:#eef8ee;stroke:#2e7d32;stroke-width:3}
.flow-box.end-exit rect{fill:#fdf0ef;stroke:#b3261e;stroke-width:3}
.flow-box.unreachable rect{stroke-dasharray:5 4;fill:#f4f4f4}
.flow-kind{font-size:11px;fill:#555}
.flow-key{font-size:11px;fill:#555;font-family:monospace}
.flow-label{font-size:14px;fill:#222}
.flow-badge{font-size:11px;font-weight:bold}
.end-completion .flow-badge{fill:#2e7d32}
.end-exit .flow-badge{fill:#b3261e}
.flow-flag{font-size:10px;fill:#8a5a00}
.flow-start rect{fill:#417690}
.flow-start text{fill:#fff;font-size:13px}
.flow-edge{fill:none;stroke:#666;stroke-width:1.5}
.flow-edge.branch{stroke:#417690}
.flow-edge.return{stroke:#999;stroke-dasharray:4 3}
.flow-edge.unreachable{stroke:#bbb;stroke-dasharray:2 4}
.flow-edge-label{font-size:12px;fill:#205067}
.flow-edge-label.other{fill:#777}
.flow-junction{fill:#417690}
"""


def _box_svg(box: FlowBox, link: str | None) -> SafeString:
    classes = ["flow-box", "branch" if box.column else "main"]
    if box.end:
        classes.append(f"end-{box.end}")
    if not box.reachable:
        classes.append("unreachable")
    badge = ""
    if box.end == "completion":
        badge = _("完了")
    elif box.end == "exit":
        badge = _("終了")
    flags = []
    if box.required:
        flags.append(_("必須"))
    if box.sensitive:
        flags.append(_("機微"))
    title = box.full_label
    if box.condition:
        title = _("%(label)s（%(condition)s のとき）") % {"label": title, "condition": box.condition}
    inner = format_html(
        '<title>{title}</title>'
        '<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{rx}"/>'
        '<text class="flow-kind" x="{tx}" y="{y1}">{symbol} {kind}</text>'
        '<text class="flow-key" x="{kx}" y="{y1}" text-anchor="end">{key}</text>'
        '<text class="flow-label" x="{tx}" y="{y2}">{label}</text>'
        '{flags}{badge}',
        title=title,
        x=box.x,
        y=box.y,
        w=box.width,
        h=box.height,
        rx=14 if box.end else 4,
        tx=box.x + 10,
        kx=box.x + box.width - 10,
        y1=box.y + 18,
        y2=box.y + 40,
        symbol=box.symbol,
        kind=box.kind_label,
        key=box.key,
        label=box.label,
        flags=format_html(
            '<text class="flow-flag" x="{x}" y="{y}" text-anchor="end">{text}</text>',
            x=box.x + box.width - 10,
            y=box.y + box.height - 6,
            text="・".join(flags),
        )
        if flags
        else "",
        badge=format_html(
            '<text class="flow-badge" x="{x}" y="{y}">■ {text}</text>',
            x=box.x + 10,
            y=box.y + box.height - 5,
            text=badge,
        )
        if badge
        else "",
    )
    group = format_html(
        '<g class="{classes}" data-key="{key}">{inner}</g>', classes=" ".join(classes), key=box.key, inner=inner
    )
    if link:
        return format_html('<a href="{link}">{group}</a>', link=link, group=group)
    return group


def _edge_svg(edge: FlowEdge) -> SafeString:
    points = " ".join(f"{x},{y}" for x, y in edge.points)
    marker = "" if edge.style == "unreachable" else ' marker-end="url(#flow-arrow)"'
    line = format_html(
        '<polyline class="flow-edge {style}" points="{points}"{marker}/>',
        style=edge.style,
        points=points,
        marker=mark_safe(marker),  # noqa: S308 - a constant  # nosec B308 B703
    )
    lines = edge.drawn_lines
    if not lines:
        return line
    (x1, y1), (x2, y2) = edge.points[0], edge.points[1]
    if y1 == y2:  # a horizontal connector: the lines sit above it
        label_x = min(x1, x2) + 10
        first_y = y1 - 7 - 15 * (len(lines) - 1)
    else:  # a vertical segment: the label sits to its right, just below where it starts
        label_x, first_y = x1 + 8, y1 + 16
    css = "flow-edge-label" if edge.style == "branch" else "flow-edge-label other"
    spans = format_html_join(
        "",
        '<tspan x="{}" y="{}">{}</tspan>',
        ((label_x, first_y + 15 * index, text) for index, text in enumerate(lines)),
    )
    return format_html(
        '{line}<text class="{css}"><title>{title}</title>{spans}</text>',
        line=line,
        css=css,
        title=edge.label,
        spans=spans,
    )


def flow_svg(flow: Flow, links: dict[str, str] | None = None) -> SafeString:
    """The flow as an inline SVG element. `links` maps step keys to URLs (boxes become links)."""
    links = links or {}
    start_x, start_y, start_w, start_h = flow.start
    parts = [
        format_html(
            '<g class="flow-start"><rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{r}"/>'
            '<text x="{cx}" y="{ty}" text-anchor="middle">{text}</text></g>',
            x=start_x,
            y=start_y,
            w=start_w,
            h=start_h,
            r=start_h // 2,
            cx=start_x + start_w // 2,
            ty=start_y + start_h // 2 + 5,
            text=_("開始"),
        )
    ]
    parts.extend(_edge_svg(edge) for edge in flow.edges)
    parts.extend(
        format_html('<circle class="flow-junction" cx="{}" cy="{}" r="4"/>', x, y) for x, y in flow.junctions
    )
    parts.extend(_box_svg(box, links.get(box.key)) for box in flow.boxes)
    description = _("%(name)s の流れ図（ステップ %(count)s 個）") % {"name": flow.name, "count": len(flow.boxes)}
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="procedure-flow" role="img" aria-label="{label}" '
        'width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">'
        "<style>{style}</style>"
        '<defs><marker id="flow-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#666"/></marker></defs>'
        "{body}</svg>",
        label=description,
        w=flow.width,
        h=int(math.ceil(flow.height)),
        style=mark_safe(_SVG_STYLE),  # noqa: S308 - a constant  # nosec B308 B703
        body=format_html_join("", "{}", ((part,) for part in parts)),
    )
