import io
import random

import pytest
from PIL import Image

from broadcasts.richmenu import image, layout
from broadcasts.richmenu.layout import Bounds


@pytest.mark.parametrize("preset", layout.PRESETS, ids=lambda preset: preset.key)
def test_every_preset_tiles_its_menu_exactly_without_gaps_or_overlaps(preset):
    width, height = (2500, 843) if preset.compact else (2500, 1686)
    bounds = layout.preset_bounds(preset, width, height)
    assert len(bounds) == len(preset.tiles)
    assert layout.areas_problems(width, height, [(str(i), b) for i, b in enumerate(bounds)]) == []
    assert sum(b.width * b.height for b in bounds) == width * height


def test_presets_offered_for_a_size_match_its_shape():
    assert {p.key for p in layout.presets_for(2500, 843)} == {p.key for p in layout.PRESETS if p.compact}
    assert {"large_6", "large_4", "large_1_3", "large_1_2", "large_2_columns", "large_1"} <= {
        p.key for p in layout.presets_for(2500, 1686)
    }


def test_every_listed_size_is_one_line_accepts():
    for width, height in layout.SIZES:
        assert layout.size_problems(width, height) == []


def test_sizes_line_refuses_are_explained():
    assert "幅は 800〜2500" in layout.size_problems(700, 300)[0]
    assert "高さは 250" in layout.size_problems(2500, 200)[0]
    assert "1.45" in layout.size_problems(1000, 800)[0]


def test_overlapping_and_outside_areas_are_named_in_the_message():
    problems = layout.areas_problems(
        2500,
        843,
        [
            ("予約", Bounds(0, 0, 1300, 843)),
            ("お知らせ", Bounds(1200, 0, 1300, 843)),
            ("外", Bounds(2400, 0, 200, 100)),
        ],
    )
    assert "「予約」と「お知らせ」が重なっています。" in problems
    assert any("「外」が画像（2500×843）の外にはみ出しています" in p for p in problems)


def test_touching_areas_do_not_overlap():
    assert layout.areas_problems(2500, 843, [("a", Bounds(0, 0, 1250, 843)), ("b", Bounds(1250, 0, 1250, 843))]) == []


def test_more_than_twenty_areas_and_no_area_are_refused():
    many = [(str(i), Bounds(i * 100, 0, 100, 100)) for i in range(21)]
    assert any("20 個まで" in p for p in layout.areas_problems(2500, 1686, many))
    assert layout.areas_problems(2500, 1686, []) == ["タップ領域を1つ以上作ってください。"]


def test_chat_bar_text_is_at_most_fourteen_characters():
    assert layout.chat_bar_text_problems("メニューを開く") == []
    assert "14 文字まで" in layout.chat_bar_text_problems("あ" * 15)[0]
    assert layout.chat_bar_text_problems("  ")


def _png(width, height, **save):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "#336699").save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()


def test_an_image_of_the_menus_size_is_accepted():
    checked = image.image_check(_png(2500, 843), width=2500, height=843)
    assert (checked.content_type, checked.width, checked.height) == ("image/png", 2500, 843)
    assert image.image_check(_png(2500, 843, format="JPEG"), width=2500, height=843).content_type == "image/jpeg"


def test_an_image_of_another_size_a_gif_or_not_an_image_is_refused_with_reasons():
    with pytest.raises(image.ImageRejected) as wrong_size:
        image.image_check(_png(2500, 1686), width=2500, height=843)
    assert "メニューの大きさ（2500×843）と違います" in wrong_size.value.problems[0]
    with pytest.raises(image.ImageRejected) as gif:
        image.image_check(_png(2500, 843, format="GIF"), width=2500, height=843)
    assert "GIF" in gif.value.problems[0]
    with pytest.raises(image.ImageRejected) as text:
        image.image_check(b"not an image", width=2500, height=843)
    assert text.value.problems == ["JPEG か PNG の画像ファイルを選んでください。"]


def test_an_image_over_one_megabyte_is_refused():
    noise = Image.frombytes("RGB", (2500, 1686), random.Random(7).randbytes(2500 * 1686 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    assert buffer.tell() > image.MAX_BYTES
    with pytest.raises(image.ImageRejected) as rejected:
        image.image_check(buffer.getvalue(), width=2500, height=1686)
    assert "1MB 以下" in rejected.value.problems[0]


def _glyph_pixels(data: bytes, bounds: Bounds, background: str) -> int:
    with Image.open(io.BytesIO(data)) as picture:
        tile = picture.convert("RGB").crop((bounds.x + 10, bounds.y + 10, bounds.right - 10, bounds.bottom - 10))
    fill = Image.new("RGB", (1, 1), background).getpixel((0, 0))
    return sum(count for count, colour in tile.getcolors(tile.width * tile.height) if colour != fill)


def test_generated_image_follows_lines_rules_and_draws_japanese_labels():
    bounds = layout.preset_bounds(layout.PRESETS_BY_KEY["large_6"], 2500, 1686)
    labels = ["住民票の写し", "粗大ごみ\n申込み", "受信設定", "申請状況", "市のホームページ", "防災情報・避難所"]
    data, content_type = image.tiles_image(
        2500, 1686, [image.Tile(b, label, "#E3F2FD") for b, label in zip(bounds, labels, strict=True)]
    )
    assert image.image_check(data, width=2500, height=1686).content_type == content_type
    for tile_bounds in bounds:
        assert _glyph_pixels(data, tile_bounds, "#E3F2FD") > 2000


def test_japanese_glyphs_are_real_glyphs_not_missing_boxes():
    font = image._font(80)
    missing = font.getmask("\uffff").getbbox()
    assert font.getmask("住").getbbox() != missing
    assert font.getlength("住民票") > font.getlength("住")


def test_a_label_never_starts_a_line_with_closing_punctuation():
    font = image._font(100)
    lines = image._wrapped("防災情報・避難所", font, font.getlength("防災情報"))
    assert not any(line.startswith("・") for line in lines)


def test_a_tile_can_show_an_icon_above_its_label():
    icon = io.BytesIO()
    Image.new("RGBA", (64, 64), (255, 0, 0, 255)).save(icon, format="PNG")
    image.icon_check(icon.getvalue())
    tile = Bounds(0, 0, 2500, 843)
    data, _type = image.tiles_image(2500, 843, [image.Tile(tile, "ごみ", "#FFFFFF", icon=icon.getvalue())])
    with Image.open(io.BytesIO(data)) as picture:
        assert picture.convert("RGB").getpixel((1250, 244)) == (255, 0, 0)


def test_an_icon_that_is_not_a_png_or_jpeg_is_refused():
    with pytest.raises(image.ImageRejected):
        image.icon_check(b"<svg></svg>")
    with pytest.raises(image.ImageRejected):
        image.icon_check(_png(64, 64, format="GIF"))
