"""Rich menu sizes, the tile layouts LINE Official Account Manager offers, and the rules areas must keep.

Pure functions over plain tuples: the admin, the image generator and the deploy service share them.
LINE's rules (Messaging API reference, "Rich menu object"): width 800–2500 px, height at least
250 px, width/height at least 1.45, at most 20 areas; chat bar text at most 14 characters.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext as _

MIN_WIDTH, MAX_WIDTH = 800, 2500
MIN_HEIGHT = 250
MIN_ASPECT_RATIO = 1.45
MAX_AREAS = 20
CHAT_BAR_TEXT_MAX = 14

# (width, height) -> label; the first two are what LINE Official Account Manager calls large and compact.
SIZES: dict[tuple[int, int], str] = {
    (2500, 1686): "大（2500×1686）",
    (2500, 843): "小（2500×843）",
    (1200, 810): "大（1200×810）",
    (1200, 405): "小（1200×405）",
    (800, 540): "大（800×540）",
    (800, 270): "小（800×270）",
}


@dataclass(frozen=True)
class Bounds:
    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    def overlaps(self, other: Bounds) -> bool:
        return self.x < other.right and other.x < self.right and self.y < other.bottom and other.y < self.bottom

    def as_line(self) -> dict:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


# A layout is a list of tiles as fractions of the menu: (column, row, columns spanned, rows spanned)
# on a grid of `columns` x `rows`. These are the presets of LINE Official Account Manager.
@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    columns: int
    rows: int
    tiles: tuple[tuple[int, int, int, int], ...]
    compact: bool = False


PRESETS: tuple[Preset, ...] = (
    Preset(
        "large_6",
        "6分割（3列×2段）",
        3,
        2,
        ((0, 0, 1, 1), (1, 0, 1, 1), (2, 0, 1, 1), (0, 1, 1, 1), (1, 1, 1, 1), (2, 1, 1, 1)),
    ),
    Preset("large_4", "4分割（2列×2段）", 2, 2, ((0, 0, 1, 1), (1, 0, 1, 1), (0, 1, 1, 1), (1, 1, 1, 1))),
    Preset("large_1_3", "4分割（上1・下3）", 3, 2, ((0, 0, 3, 1), (0, 1, 1, 1), (1, 1, 1, 1), (2, 1, 1, 1))),
    Preset("large_1_2", "3分割（上1・下2）", 2, 2, ((0, 0, 2, 1), (0, 1, 1, 1), (1, 1, 1, 1))),
    Preset("large_left_2", "3分割（左1・右2）", 2, 2, ((0, 0, 1, 2), (1, 0, 1, 1), (1, 1, 1, 1))),
    Preset("large_3_columns", "3分割（3列）", 3, 1, ((0, 0, 1, 1), (1, 0, 1, 1), (2, 0, 1, 1))),
    Preset("large_2_columns", "2分割（左右）", 2, 1, ((0, 0, 1, 1), (1, 0, 1, 1))),
    Preset("large_2_rows", "2分割（上下）", 1, 2, ((0, 0, 1, 1), (0, 1, 1, 1))),
    Preset("large_1", "1分割", 1, 1, ((0, 0, 1, 1),)),
    Preset("compact_3", "3分割（3列）", 3, 1, ((0, 0, 1, 1), (1, 0, 1, 1), (2, 0, 1, 1)), compact=True),
    Preset("compact_2", "2分割（左右）", 2, 1, ((0, 0, 1, 1), (1, 0, 1, 1)), compact=True),
    Preset("compact_wide_left", "2分割（左2/3・右1/3）", 3, 1, ((0, 0, 2, 1), (2, 0, 1, 1)), compact=True),
    Preset("compact_wide_right", "2分割（左1/3・右2/3）", 3, 1, ((0, 0, 1, 1), (1, 0, 2, 1)), compact=True),
    Preset("compact_1", "1分割", 1, 1, ((0, 0, 1, 1),), compact=True),
)
PRESETS_BY_KEY = {preset.key: preset for preset in PRESETS}


def is_compact(width: int, height: int) -> bool:
    """Compact menus (half height) are at least twice as wide as they are high."""
    return width >= 2 * height


def presets_for(width: int, height: int) -> list[Preset]:
    compact = is_compact(width, height)
    return [preset for preset in PRESETS if preset.compact == compact]


def _edges(total: int, parts: int) -> list[int]:
    # Integer edges that add up exactly to `total`, so tiles neither overlap nor leave a gap.
    return [round(total * index / parts) for index in range(parts + 1)]


def preset_bounds(preset: Preset, width: int, height: int) -> list[Bounds]:
    xs, ys = _edges(width, preset.columns), _edges(height, preset.rows)
    return [
        Bounds(xs[column], ys[row], xs[column + span_x] - xs[column], ys[row + span_y] - ys[row])
        for column, row, span_x, span_y in preset.tiles
    ]


def size_problems(width: int, height: int) -> list[str]:
    problems = []
    if not MIN_WIDTH <= width <= MAX_WIDTH:
        problems.append(
            _("幅は %(min)s〜%(max)s ピクセルにしてください（%(width)s）。")
            % {"min": MIN_WIDTH, "max": MAX_WIDTH, "width": width}
        )
    if height < MIN_HEIGHT:
        problems.append(
            _("高さは %(min)s ピクセル以上にしてください（%(height)s）。") % {"min": MIN_HEIGHT, "height": height}
        )
    if height > 0 and width / height < MIN_ASPECT_RATIO:
        problems.append(
            _("幅÷高さは 1.45 以上にしてください（%(width)s×%(height)s）。") % {"width": width, "height": height}
        )
    return problems


def areas_problems(width: int, height: int, areas: list[tuple[str, Bounds]]) -> list[str]:
    """Problems with named areas: count, outside the image, overlapping each other (each pair named)."""
    problems = []
    if not areas:
        problems.append(_("タップ領域を1つ以上作ってください。"))
    if len(areas) > MAX_AREAS:
        problems.append(
            _("タップ領域は %(max)s 個までです（%(count)s 個あります）。") % {"max": MAX_AREAS, "count": len(areas)}
        )
    for name, bounds in areas:
        if bounds.width <= 0 or bounds.height <= 0:
            problems.append(_("「%(name)s」の幅と高さは1以上にしてください。") % {"name": name})
        elif bounds.x < 0 or bounds.y < 0 or bounds.right > width or bounds.bottom > height:
            problems.append(
                _(
                    "「%(name)s」が画像（%(width)s×%(height)s）の外にはみ出しています（x=%(x)s, y=%(y)s, 幅=%(w)s, 高さ=%(h)s）。"
                )
                % {
                    "name": name,
                    "width": width,
                    "height": height,
                    "x": bounds.x,
                    "y": bounds.y,
                    "w": bounds.width,
                    "h": bounds.height,
                }
            )
    for index, (name, bounds) in enumerate(areas):
        for other_name, other in areas[index + 1 :]:
            if bounds.overlaps(other):
                problems.append(_("「%(a)s」と「%(b)s」が重なっています。") % {"a": name, "b": other_name})
    return problems


def chat_bar_text_problems(text: str) -> list[str]:
    if not text.strip():
        return [_("メニューバーのテキストを入力してください。")]
    if len(text) > CHAT_BAR_TEXT_MAX:
        return [
            _("メニューバーのテキストは %(max)s 文字までです（%(count)s 文字）。")
            % {"max": CHAT_BAR_TEXT_MAX, "count": len(text)}
        ]
    return []
