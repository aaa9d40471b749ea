"""Rich menu images: checking an upload against LINE's rules, and drawing one from tile labels.

The Japanese font is IPAexGothic, shipped by the `matplotlib-fontja` package (IPA Font License
Agreement v1.0, which allows use and redistribution of the unmodified font: see
docs/rich-menus.md). It is located through the package's metadata, so matplotlib itself is never
imported.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import distribution

from django.utils.translation import gettext as _
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from broadcasts.richmenu.layout import Bounds, size_problems

MAX_BYTES = 1024 * 1024
FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}
FONT_FILE = "matplotlib_fontja/fonts/ipaexg.ttf"
ICON_MAX_BYTES = 512 * 1024
# Characters Japanese typesetting never puts at the start of a line (kinsoku shori).
NO_LINE_START = set("、。，．・：；？！ー）」』】〕〉》ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ々")


@lru_cache(maxsize=1)
def font_path() -> str:
    return str(distribution("matplotlib-fontja").locate_file(FONT_FILE))


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(), size)


@dataclass(frozen=True)
class CheckedImage:
    content_type: str
    width: int
    height: int


class ImageRejected(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems


def image_check(data: bytes, *, width: int, height: int) -> CheckedImage:
    """The upload's type and size, or ImageRejected listing every rule it breaks."""
    problems = []
    if len(data) > MAX_BYTES:
        problems.append(_("画像は 1MB 以下にしてください（%(kb)s KB あります）。") % {"kb": (len(data) + 1023) // 1024})
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (actual_width, actual_height) = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise ImageRejected(problems + [_("JPEG か PNG の画像ファイルを選んでください。")]) from None
    if image_format not in FORMATS:
        problems.append(_("JPEG か PNG の画像にしてください（%(format)s 形式です）。") % {"format": image_format})
    problems += size_problems(actual_width, actual_height)
    if (actual_width, actual_height) != (width, height):
        problems.append(
            _("画像の大きさ（%(aw)s×%(ah)s）がメニューの大きさ（%(w)s×%(h)s）と違います。")
            % {"aw": actual_width, "ah": actual_height, "w": width, "h": height}
        )
    if problems:
        raise ImageRejected(problems)
    return CheckedImage(FORMATS[image_format], actual_width, actual_height)


@dataclass(frozen=True)
class Tile:
    bounds: Bounds
    label: str
    background: str = "#FFFFFF"
    foreground: str = "#333333"
    icon: bytes | None = None


def _wrapped(label: str, font: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Lines of the label that fit `max_width`: staff's own line breaks first, then by character
    (Japanese has no spaces to break at), never starting a line with closing punctuation. A line
    that cannot then fit makes the caller choose a smaller font."""
    lines = []
    for paragraph in label.splitlines() or [""]:
        line = ""
        for char in paragraph:
            if line and char not in NO_LINE_START and font.getlength(line + char) > max_width:
                lines.append(line)
                line = char
            else:
                line += char
        lines.append(line)
    return lines


def _fitted_text(label: str, box_width: float, box_height: float) -> tuple[ImageFont.FreeTypeFont, list[str], int]:
    size = max(12, int(min(box_height * 0.45, box_width * 0.22)))
    while True:
        font = _font(size)
        lines = _wrapped(label, font, box_width)
        line_height = int(size * 1.25)
        fits = line_height * len(lines) <= box_height and all(font.getlength(line) <= box_width for line in lines)
        if fits or size <= 12:
            return font, lines, line_height
        size = int(size * 0.9)


def _paste_icon(canvas: Image.Image, icon: bytes, box: Bounds) -> None:
    with Image.open(io.BytesIO(icon)) as raw:
        picture = raw.convert("RGBA")
    picture = ImageOps.contain(picture, (box.width, box.height))
    left = box.x + (box.width - picture.width) // 2
    top = box.y + (box.height - picture.height) // 2
    canvas.paste(picture, (left, top), picture)


def icon_check(data: bytes) -> None:
    if len(data) > ICON_MAX_BYTES:
        raise ImageRejected([_("アイコンは 512KB 以下にしてください。")])
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            image.verify()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        image_format = None
    if image_format not in FORMATS:
        raise ImageRejected([_("アイコンには PNG か JPEG の画像を選んでください。")])


def tiles_image(width: int, height: int, tiles: list[Tile]) -> tuple[bytes, str]:
    """Draw a menu image: each tile filled with its colour, its icon above, its label centred.

    Returns PNG, or JPEG when the PNG would exceed LINE's 1 MB (photos as icons)."""
    canvas = Image.new("RGB", (width, height), "#FFFFFF")
    draw = ImageDraw.Draw(canvas)
    line_width = max(2, width // 500)
    for tile in tiles:
        box = tile.bounds
        draw.rectangle(
            [box.x, box.y, box.right - 1, box.bottom - 1], fill=tile.background, outline="#DDDDDD", width=line_width
        )
        padding = int(min(box.width, box.height) * 0.08)
        text_top = box.y + padding
        text_height = box.height - 2 * padding
        if tile.icon:
            icon_height = int(text_height * 0.5)
            _paste_icon(canvas, tile.icon, Bounds(box.x + padding, text_top, box.width - 2 * padding, icon_height))
            text_top += icon_height
            text_height -= icon_height
        font, lines, line_height = _fitted_text(tile.label, box.width - 2 * padding, text_height)
        y = text_top + (text_height - line_height * len(lines)) / 2
        for line in lines:
            x = box.x + (box.width - font.getlength(line)) / 2
            draw.text((x, y), line, font=font, fill=tile.foreground)
            y += line_height
    return _encoded(canvas)


def _encoded(canvas: Image.Image) -> tuple[bytes, str]:
    png = io.BytesIO()
    canvas.save(png, format="PNG", optimize=True)
    if png.tell() <= MAX_BYTES:
        return png.getvalue(), "image/png"
    for quality in (90, 80, 70, 60, 50):
        jpeg = io.BytesIO()
        canvas.save(jpeg, format="JPEG", quality=quality, optimize=True)
        if jpeg.tell() <= MAX_BYTES:
            return jpeg.getvalue(), "image/jpeg"
    raise ImageRejected([_("画像を 1MB 以下にできませんでした。アイコンを小さくしてください。")])
