"""The watermark engine in sandboxed helpers: a text or an image on the chosen pages, where
the position says (also on a page shown turned), above or below the content, translucent.
Outputs are read back by poppler (pdftotext with word boxes) and rendered by PDFium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pikepdf
import pypdfium2
import pytest
import pyvips

from appliance.engines.sandbox import SandboxedEngine
from appliance.engines.watermark import WatermarkEngine, WatermarkOptions
from appliance.errors import PermanentError

CORPUS = Path(__file__).parents[4] / "shared" / "corpus" / "real"
THREE_PAGES = CORPUS / "gotenberg-pages_3.pdf"  # "Page 1" .. "Page 3"


def _stamp(pool, src, dst, image_file=None, **options):
    srcs = [src, image_file] if image_file else [src]
    SandboxedEngine(WatermarkEngine(), pool).combine(
        srcs, dst, "pdf", WatermarkOptions(**options), lambda f: None
    )
    return dst


def _words(path):
    """Each page's words with their boxes (points from the shown page's top left)."""
    out = subprocess.run(
        ["pdftotext", "-bbox", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    pages = []
    for chunk in out.split("<page ")[1:]:
        words = []
        for line in chunk.split("<word ")[1:]:
            attrs = dict(re.findall(r'(\w+)="([^"]*)"', line.split(">")[0]))
            text = line.split(">", 1)[1].split("<", 1)[0]
            words.append((text, *(float(attrs[k]) for k in ("xMin", "yMin", "xMax", "yMax"))))
        pages.append(words)
    return pages


def _render(path, page=0):
    doc = pypdfium2.PdfDocument(str(path))
    image = doc[page].render(scale=1).to_pil().convert("RGB")
    doc.close()
    return image


def _page(tmp_path, rotate=0, white_cover=False):
    """A 400 x 300 pt page (shown turned by ``rotate``), optionally painted white all over."""
    pdf = pikepdf.new()
    page = pdf.add_blank_page(page_size=(400, 300))
    page.obj.Contents = pikepdf.Stream(pdf, b"1 1 1 rg 0 0 400 300 re f" if white_cover else b"")
    if rotate:
        page.obj.Rotate = rotate
    path = tmp_path / f"page-{rotate}-{white_cover}.pdf"
    pdf.save(path)
    return path


def test_text_goes_on_the_chosen_pages_only(pool, tmp_path):
    dst = _stamp(pool, THREE_PAGES, tmp_path / "out.pdf", text="DRAFT", pages="2")
    texts = [sorted(w[0] for w in page) for page in _words(dst)]
    assert texts == [["1", "Page"], ["2", "DRAFT", "Page"], ["3", "Page"]]


def test_text_is_placed_by_position_and_margins(pool, tmp_path):
    src = _page(tmp_path)
    dst = _stamp(pool, src, tmp_path / "out.pdf", text="Corner", font_size=20,
                 position_vertical="top", position_horizontal="right",
                 margin_vertical=10, margin_horizontal=30)  # fmt: skip
    ((word, x_min, y_min, x_max, _y_max),) = _words(dst)[0]
    assert word == "Corner"
    assert abs(400 - 30 - x_max) < 2  # right edge 30 pt from the page's
    assert 10 <= y_min < 16  # the line's top 10 pt down, the glyphs a little below
    assert x_max - x_min > 50  # 6 letters at 20 pt


def test_a_page_shown_turned_gets_the_stamp_at_its_shown_top_left(pool, tmp_path):
    src = _page(tmp_path, rotate=90)
    dst = _stamp(pool, src, tmp_path / "out.pdf", text="XXXX", font_size=40,
                 position_vertical="top", position_horizontal="left")  # fmt: skip
    image = _render(dst)
    assert image.size == (300, 400)  # shown upright: 300 wide, 400 tall
    dark = [(x, y) for x in range(image.width) for y in range(image.height)
            if image.getpixel((x, y))[0] < 100]  # fmt: skip
    assert dark, "the stamp is not drawn"
    assert max(x for x, _ in dark) < 150 and max(y for _, y in dark) < 100


def test_opacity_makes_black_text_grey(pool, tmp_path):
    dst = _stamp(pool, _page(tmp_path), tmp_path / "out.pdf", text="IIII", font_size=80,
                 font_name="Helvetica Bold", opacity=40)  # fmt: skip
    darkest = _render(dst).getextrema()[0][0]
    assert 140 <= darkest <= 165  # 60% of white shows through black


def test_below_hides_the_stamp_under_opaque_content_and_above_shows_it(pool, tmp_path):
    covered = _page(tmp_path, white_cover=True)
    below = _stamp(pool, covered, tmp_path / "below.pdf", text="IIII", font_size=80, layer="below")
    above = _stamp(pool, covered, tmp_path / "above.pdf", text="IIII", font_size=80)
    assert _render(below).getextrema()[0][0] > 250
    assert _render(above).getextrema()[0][0] < 30
    assert [w[0] for w in _words(below)[0]] == ["IIII"]  # still in the file, only hidden


def test_an_image_is_stamped_at_the_size_and_place_asked(pool, tmp_path):
    red = tmp_path / "red.png"
    pyvips.Image.black(100, 50).new_from_image([230, 20, 20]).copy(
        xres=72 / 25.4, yres=72 / 25.4
    ).write_to_file(str(red))
    dst = _stamp(pool, _page(tmp_path), tmp_path / "out.pdf", image_file=red, image="logo",
                 image_width=100, position_vertical="bottom", position_horizontal="left",
                 margin_vertical=0, margin_horizontal=0)  # fmt: skip
    image = _render(dst)
    red_pixel = image.getpixel((50, 275))
    assert red_pixel[0] > 200 and red_pixel[1] < 60  # red: bottom-left 100 x 50 pt
    assert image.getpixel((150, 275)) == (255, 255, 255)  # beyond its width
    assert image.getpixel((50, 200)) == (255, 255, 255)  # above its height


def test_text_and_image_together_are_refused():
    with pytest.raises(ValueError, match="text or image is needed"):
        WatermarkOptions(text="a", image="logo")


def test_an_encrypted_pdf_asks_to_decrypt_first(pool, tmp_path):
    with pytest.raises(PermanentError) as info:
        _stamp(pool, CORPUS / "pypdf-libreoffice-writer-password.pdf", tmp_path / "out.pdf",
               text="x")  # fmt: skip
    assert info.value.code == "INVALID_INPUT_FILE"


# -- on pictures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grey_photo(tmp_path_factory):
    """A 600 x 400 mid-grey jpg."""
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    pyvips.Image.black(600, 400).new_from_image([128, 128, 128]).write_to_file(str(path))
    return path


def _dark_box(path, threshold=60):
    """The bounding box (left, top, right, bottom) of the pixels darker than ``threshold``."""
    image = pyvips.Image.new_from_file(str(path)).extract_band(0)
    mask = (image < threshold).ifthenelse(255, 0).cast("uchar")
    left, top, width, height = mask.find_trim(threshold=0, background=[0])
    return left, top, left + width, top + height


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp"])
def test_text_on_a_picture_goes_where_the_position_says(pool, tmp_path, grey_photo, fmt):
    src = tmp_path / f"in.{fmt}"
    pyvips.Image.new_from_file(str(grey_photo)).write_to_file(str(src))
    dst = tmp_path / f"out.{fmt}"
    SandboxedEngine(WatermarkEngine(), pool).combine(
        [src], dst, fmt,
        WatermarkOptions(text="MARK", font_size=48, position_vertical="bottom",
                         position_horizontal="right", margin_vertical=20, margin_horizontal=30),
        lambda f: None,
    )  # fmt: skip
    out = pyvips.Image.new_from_file(str(dst))
    assert (out.width, out.height) == (600, 400)
    assert out.get("vips-loader").startswith({"jpg": "jpeg", "png": "png", "webp": "webp"}[fmt])
    left, top, right, bottom = _dark_box(dst)
    assert 600 - 30 - 8 <= right <= 600 - 30  # the ink ends near the right margin
    assert 400 - 20 - 16 <= bottom <= 400 - 20
    assert right - left > 100 and bottom - top > 25  # four capitals at 48 px


@pytest.mark.parametrize("logo_format", ["png", "bmp"])
def test_an_image_on_a_picture_at_half_opacity(pool, tmp_path, grey_photo, logo_format):
    from PIL import Image

    logo = tmp_path / f"logo.{logo_format}"
    Image.new("RGB", (50, 50), (0, 0, 255)).save(logo)
    dst = tmp_path / "out.jpg"
    SandboxedEngine(WatermarkEngine(), pool).combine(
        [grey_photo, logo], dst, "jpg",
        WatermarkOptions(image="logo", image_width=100, opacity=50,
                         position_vertical="top", position_horizontal="left",
                         margin_vertical=0, margin_horizontal=0),
        lambda f: None,
    )  # fmt: skip
    out = pyvips.Image.new_from_file(str(dst))
    red, green, blue = out.getpoint(50, 50)
    assert abs(red - 64) < 10 and abs(green - 64) < 10 and abs(blue - 191) < 10  # half each
    assert [round(v) for v in out.getpoint(150, 50)] == pytest.approx([128, 128, 128], abs=3)
