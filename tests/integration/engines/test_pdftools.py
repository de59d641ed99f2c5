"""The PDF family in the sandboxed helper: images -> pdf, pdf -> pdf (pages, PDF/A), split,
merge and optimize. Outputs are checked by parsing them (pikepdf for structure and XMP,
PDFium to render and read text), and damaged inputs end in clear errors."""

from __future__ import annotations

import pikepdf
import pypdfium2
import pytest
import pyvips

from appliance.engines.pdftools import (
    IMAGE_INPUTS,
    ImagePdfOptions,
    ImagesToPdfEngine,
    MergeEngine,
    MergeOptions,
    OptimizeEngine,
    OptimizeOptions,
    PdfPdfOptions,
    PdfToPdfEngine,
    RotateEngine,
    RotateOptions,
    SplitEngine,
    SplitOptions,
)
from appliance.engines.sandbox import SandboxedEngine
from appliance.errors import PermanentError
from tests.integration.engines.pdfa import pdfa_2b_problems

RED = [220, 30, 30]


def _nothing(fraction):
    pass


def _pages(path):
    with pikepdf.open(path) as pdf:
        return [(round(float(p.mediabox[2])), round(float(p.mediabox[3]))) for p in pdf.pages]


def _center_pixel(path, page=0):
    doc = pypdfium2.PdfDocument(str(path))
    image = doc[page].render(scale=1).to_pil().convert("RGB")
    pixel = image.getpixel((image.width // 2, image.height // 2))
    doc.close()
    return pixel


def _image(width=192, height=96):
    """A red picture with a blue square in one corner: the centre is red."""
    return (
        pyvips.Image.black(width, height)
        .new_from_image(RED)
        .draw_rect([20, 20, 200], 0, 0, 10, 10, fill=True)
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    made = {}
    for fmt in IMAGE_INPUTS:
        path = root / f"in.{fmt}"
        if fmt == "bmp":
            from PIL import Image

            Image.frombytes("RGB", (192, 96), _image().write_to_memory()).save(path, dpi=(96, 96))
        else:
            _image().copy(xres=96 / 25.4, yres=96 / 25.4).write_to_file(str(path))
        made[fmt] = path
    return made


@pytest.fixture(scope="module")
def three_pages(tmp_path_factory):
    """A PDF of three pages of different widths (100, 200, 300 pt), each with text."""
    root = tmp_path_factory.mktemp("three")
    out = root / "three.pdf"
    built = pikepdf.new()
    for n, width in enumerate((100, 200, 300), start=1):
        page = built.add_blank_page(page_size=(width, 150))
        page.obj.Resources = pikepdf.Dictionary(
            Font=pikepdf.Dictionary(
                F1=pikepdf.Dictionary(
                    Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont="/Helvetica"
                )
            )
        )
        page.obj.Contents = pikepdf.Stream(
            built, f"BT /F1 12 Tf 10 70 Td (Page {n}) Tj ET".encode()
        )
    built.save(out)
    return out


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "bad.pdf"
    path.write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nthis is not a pdf")
    return path


# -- images -> pdf ------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", IMAGE_INPUTS)
def test_each_image_format_becomes_a_one_page_pdf_sized_from_its_resolution(
    pool, images, tmp_path, fmt
):
    dst = tmp_path / "out.pdf"
    SandboxedEngine(ImagesToPdfEngine(), pool).convert(
        images[fmt], dst, fmt, "pdf", ImagePdfOptions(), _nothing
    )
    assert _pages(dst) == [(144, 72)]  # 192 x 96 px at 96 dpi = 2 x 1 inch
    red, green, blue = _center_pixel(dst)
    tolerance = 40 if fmt in ("jpg", "webp") else 2
    assert abs(red - RED[0]) <= tolerance and green < 80 and blue < 80
    with pikepdf.open(dst) as pdf:
        (image,) = pdf.pages[0].Resources.XObject.values()
        assert (image.Width, image.Height) == (192, 96)


def test_jpeg_data_is_embedded_without_re_encoding(pool, images, tmp_path):
    dst = tmp_path / "out.pdf"
    SandboxedEngine(ImagesToPdfEngine(), pool).convert(
        images["jpg"], dst, "jpg", "pdf", ImagePdfOptions(), _nothing
    )
    with pikepdf.open(dst) as pdf:
        (image,) = pdf.pages[0].Resources.XObject.values()
        assert image.Filter == pikepdf.Name.DCTDecode
        assert image.read_raw_bytes() == images["jpg"].read_bytes()


def test_transparency_is_kept_as_a_soft_mask(pool, tmp_path):
    src = tmp_path / "alpha.png"
    _image().bandjoin(128).write_to_file(str(src))
    dst = tmp_path / "out.pdf"
    SandboxedEngine(ImagesToPdfEngine(), pool).convert(
        src, dst, "png", "pdf", ImagePdfOptions(), _nothing
    )
    with pikepdf.open(dst) as pdf:
        (image,) = pdf.pages[0].Resources.XObject.values()
        assert image.SMask.Width == 192
        assert set(image.SMask.read_bytes()) == {128}


def test_every_page_of_a_multi_page_tiff_becomes_a_page(pool, tmp_path):
    src = tmp_path / "two.tiff"
    stacked = pyvips.Image.arrayjoin([_image(), _image()], across=1).copy(
        xres=96 / 25.4, yres=96 / 25.4
    )
    stacked.set_type(pyvips.GValue.gint_type, "page-height", 96)  # two 192 x 96 pages
    stacked.write_to_file(str(src))
    dst = tmp_path / "out.pdf"
    SandboxedEngine(ImagesToPdfEngine(), pool).convert(
        src, dst, "tiff", "pdf", ImagePdfOptions(), _nothing
    )
    assert _pages(dst) == [(144, 72), (144, 72)]


def test_damaged_image_is_invalid_input_and_a_pixel_bomb_hits_the_limit(pool, images, tmp_path):
    damaged = tmp_path / "cut.png"
    damaged.write_bytes(images["png"].read_bytes()[:60])
    with pytest.raises(PermanentError) as info:
        SandboxedEngine(ImagesToPdfEngine(), pool).convert(
            damaged, tmp_path / "o.pdf", "png", "pdf", ImagePdfOptions(), _nothing
        )
    assert info.value.code == "INVALID_INPUT_FILE"
    bomb = tmp_path / "bomb.png"
    pyvips.Image.black(20_000, 20_000).pngsave(str(bomb), compression=9, bitdepth=1)
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(PermanentError) as info:
        SandboxedEngine(ImagesToPdfEngine(), pool).convert(
            bomb, tmp_path / "b.pdf", "png", "pdf", ImagePdfOptions(), _nothing
        )
    assert info.value.code == "ENGINE_LIMIT"


# -- pdf -> pdf --------------------------------------------------------------------------------
def test_selected_pages_are_kept_in_order(pool, three_pages, tmp_path):
    dst = tmp_path / "out.pdf"
    SandboxedEngine(PdfToPdfEngine(), pool).convert(
        three_pages, dst, "pdf", "pdf", PdfPdfOptions(pages="1,3"), _nothing
    )
    assert _pages(dst) == [(100, 150), (300, 150)]


def test_pdf_a_output_keeps_the_pdf_a_2b_rules_an_independent_check_can_see(
    pool, three_pages, tmp_path
):
    dst = tmp_path / "archive.pdf"
    SandboxedEngine(PdfToPdfEngine(), pool).convert(
        three_pages, dst, "pdf", "pdf", PdfPdfOptions(pdf_a=True, pages="2-3"), _nothing
    )
    with pikepdf.open(dst) as pdf:
        meta = pdf.open_metadata()
        assert meta["pdfaid:part"] == "2"
        assert meta["pdfaid:conformance"] == "B"
        assert meta.pdfa_status == "2B"
        (intent,) = pdf.Root.OutputIntents
        assert str(intent.S) == "/GTS_PDFA1"
        assert intent.DestOutputProfile.N == 3
        assert len(pdf.pages) == 2
    assert pdfa_2b_problems(dst) == []  # the rules checked independently (pdfa.py)
    assert pdfa_2b_problems(three_pages)  # control: the input is no PDF/A
    doc = pypdfium2.PdfDocument(str(dst))
    assert "Page 2" in doc[0].get_textpage().get_text_bounded()
    doc.close()


# -- split and merge ---------------------------------------------------------------------------
def test_split_gives_one_pdf_per_page_in_order(pool, three_pages, tmp_path):
    outputs = SandboxedEngine(SplitEngine(), pool).convert(
        three_pages, tmp_path / "part.pdf", "pdf", "pdf", SplitOptions(), _nothing
    )
    assert [p.name for p in outputs] == ["part-1.pdf", "part-2.pdf", "part-3.pdf"]
    assert [_pages(p) for p in outputs] == [[(100, 150)], [(200, 150)], [(300, 150)]]


def test_rotate_turns_every_page_or_the_pages_given_and_adds_to_their_rotation(
    pool, three_pages, tmp_path
):
    engine = SandboxedEngine(RotateEngine(), pool)
    once, twice = tmp_path / "once.pdf", tmp_path / "twice.pdf"
    engine.convert(three_pages, once, "pdf", "pdf", RotateOptions(rotation=90), _nothing)
    engine.convert(once, twice, "pdf", "pdf", RotateOptions(rotation=180, pages="1,3"), _nothing)
    assert [_rotation(p) for p in (once, twice)] == [[90, 90, 90], [270, 90, 270]]
    assert _pages(twice) == _pages(three_pages)  # the media boxes are not touched


def test_rotate_absolute_sets_the_rotation_whatever_the_page_had(pool, three_pages, tmp_path):
    """Gotenberg 9's rotate: the angle replaces the page's rotation (0 straightens)."""
    engine = SandboxedEngine(RotateEngine(), pool)
    turned, set_, straight = (tmp_path / f"{n}.pdf" for n in ("turned", "set", "straight"))
    engine.convert(three_pages, turned, "pdf", "pdf", RotateOptions(rotation=90), _nothing)
    absolute = RotateOptions(rotation=90, pages="1,2", absolute=True)
    engine.convert(turned, set_, "pdf", "pdf", absolute, _nothing)
    zero = RotateOptions(rotation=0, pages="3", absolute=True)
    engine.convert(set_, straight, "pdf", "pdf", zero, _nothing)
    assert [_rotation(p) for p in (set_, straight)] == [[90, 90, 90], [90, 90, 0]]


def test_rotate_refuses_pages_outside_the_document(pool, three_pages, tmp_path):
    with pytest.raises(PermanentError) as info:
        SandboxedEngine(RotateEngine(), pool).convert(
            three_pages,
            tmp_path / "o.pdf",
            "pdf",
            "pdf",
            RotateOptions(rotation=90, pages="2-5"),
            _nothing,
        )
    assert info.value.code == "INVALID_OPTIONS"


def _rotation(path):
    with pikepdf.open(path) as pdf:
        return [int(p.obj.get("/Rotate", 0)) for p in pdf.pages]


def test_merge_keeps_the_inputs_order(pool, three_pages, images, tmp_path):
    picture = tmp_path / "picture.pdf"
    SandboxedEngine(ImagesToPdfEngine(), pool).convert(
        images["png"], picture, "png", "pdf", ImagePdfOptions(), _nothing
    )
    dst = tmp_path / "merged.pdf"
    SandboxedEngine(MergeEngine(), pool).combine(
        [picture, three_pages, picture], dst, "pdf", MergeOptions(), _nothing
    )
    assert _pages(dst) == [(144, 72), (100, 150), (200, 150), (300, 150), (144, 72)]


# -- optimize ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def heavy_pdf(pool, tmp_path_factory):
    """A 2-page PDF of a noisy 1500 x 1000 photo placed at 300 dpi (big, losslessly stored)."""
    root = tmp_path_factory.mktemp("heavy")
    photo = root / "photo.png"
    noise = pyvips.Image.gaussnoise(1500, 1000, mean=128, sigma=40).cast("uchar")
    noise.bandjoin([noise, noise]).copy(xres=300 / 25.4, yres=300 / 25.4).write_to_file(str(photo))
    single = root / "single.pdf"
    SandboxedEngine(ImagesToPdfEngine(), pool).convert(
        photo, single, "png", "pdf", ImagePdfOptions(), _nothing
    )
    two = root / "heavy.pdf"
    SandboxedEngine(MergeEngine(), pool).combine(
        [single, single], two, "pdf", MergeOptions(), _nothing
    )
    return two


def _image_dpi(path) -> list[float]:
    """The resolution each page's one image is placed at: its pixel width over the page's
    width in inches (the photo fills the page)."""
    out = []
    with pikepdf.open(path) as pdf:
        for page in pdf.pages:
            [image] = page.get_images().values()
            out.append(round(int(image.Width) / (float(page.mediabox[2]) / 72), 1))
    return out


# The profiles' image resolutions (Ghostscript's /ebook, /printer, /screen settings): the
# 300 dpi photo is brought down to them, or kept when it is within them.
PROFILE_DPI = {"web": 150, "print": 300, "max": 72}


@pytest.mark.parametrize("profile", ["web", "print", "max"])
def test_lossy_profiles_make_an_image_heavy_pdf_smaller_with_the_same_pages(
    pool, heavy_pdf, tmp_path, profile
):
    dst = tmp_path / f"{profile}.pdf"
    SandboxedEngine(OptimizeEngine(), pool).convert(
        heavy_pdf, dst, "pdf", "pdf", OptimizeOptions(profile=profile), _nothing
    )
    assert dst.stat().st_size < heavy_pdf.stat().st_size * 0.8
    assert _pages(dst) == _pages(heavy_pdf)
    assert _image_dpi(heavy_pdf) == [300.0, 300.0]
    assert _image_dpi(dst) == pytest.approx([PROFILE_DPI[profile]] * 2, abs=2)
    doc = pypdfium2.PdfDocument(str(dst))
    assert doc[1].render(scale=0.2).to_pil().size[0] > 10
    doc.close()


def test_web_profile_is_linearized_and_max_is_smallest(pool, heavy_pdf, tmp_path):
    sizes = {}
    for profile in ("web", "max"):
        dst = tmp_path / f"{profile}.pdf"
        SandboxedEngine(OptimizeEngine(), pool).convert(
            heavy_pdf, dst, "pdf", "pdf", OptimizeOptions(profile=profile), _nothing
        )
        sizes[profile] = dst.stat().st_size
        if profile == "web":
            with pikepdf.open(dst) as pdf:
                assert pdf.is_linearized
    assert sizes["max"] < sizes["web"]


def test_optimize_never_makes_a_file_larger(pool, three_pages, tmp_path):
    dst = tmp_path / "out.pdf"
    SandboxedEngine(OptimizeEngine(), pool).convert(
        three_pages, dst, "pdf", "pdf", OptimizeOptions(profile="archive"), _nothing
    )
    assert dst.stat().st_size <= three_pages.stat().st_size
    assert _pages(dst) == _pages(three_pages)


def test_jpg_and_png_optimize_to_smaller_images_of_the_same_size(pool, tmp_path):
    photo = pyvips.Image.gaussnoise(400, 300, mean=128, sigma=30).cast("uchar")
    photo = photo.bandjoin([photo, photo]).gaussblur(2)
    jpg, png = tmp_path / "in.jpg", tmp_path / "in.png"
    photo.jpegsave(str(jpg), Q=98)
    photo.pngsave(str(png), compression=0)
    for src, fmt in ((jpg, "jpg"), (png, "png")):
        dst = tmp_path / f"out.{fmt}"
        SandboxedEngine(OptimizeEngine(), pool).convert(
            src, dst, fmt, fmt, OptimizeOptions(profile="web"), _nothing
        )
        assert dst.stat().st_size < src.stat().st_size
        out = pyvips.Image.new_from_file(str(dst))
        assert (out.width, out.height) == (400, 300)


# -- damaged PDFs: every operation fails clearly -------------------------------------------------
@pytest.mark.parametrize(
    "engine, options",
    [
        (PdfToPdfEngine(), PdfPdfOptions(pages="1")),
        (PdfToPdfEngine(), PdfPdfOptions(pdf_a=True)),
        (SplitEngine(), SplitOptions()),
        (RotateEngine(), RotateOptions(rotation=90)),
        (OptimizeEngine(), OptimizeOptions(profile="web")),
        (MergeEngine(), MergeOptions()),
    ],
    ids=["pages", "pdf_a", "split", "rotate", "optimize", "merge"],
)
def test_a_corrupted_pdf_is_invalid_input(pool, corrupt, tmp_path, engine, options):
    with pytest.raises(PermanentError) as info:
        SandboxedEngine(engine, pool).convert(
            corrupt, tmp_path / "o.pdf", "pdf", "pdf", options, _nothing
        )
    assert info.value.code == "INVALID_INPUT_FILE"
    assert "PDF" in info.value.message or "pdf" in info.value.message
