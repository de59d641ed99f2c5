"""PDF pages to images and text (PDFium) in the sandboxed helper, including one file per page."""

from __future__ import annotations

import subprocess

import pytest
import pyvips

from appliance.engines.office import OfficeEngine, OfficeOptions
from appliance.engines.pdf import PdfEngine, PdfOptions, page_numbers
from appliance.engines.sandbox import SandboxedEngine
from appliance.errors import PermanentError


@pytest.fixture(scope="module")
def two_pages(pool, tmp_path_factory):
    root = tmp_path_factory.mktemp("pdf")
    md = root / "deck.md"
    md.write_text("# First slide\n\nAlpha text.\n\n# Second slide\n\nBeta text.\n")
    pptx = root / "deck.pptx"
    subprocess.run(["pandoc", "-o", str(pptx), str(md)], check=True)
    pdf = root / "deck.pdf"
    SandboxedEngine(OfficeEngine(), pool).convert(
        pptx, pdf, "pptx", "pdf", OfficeOptions(), lambda f: None
    )
    return pdf


def _convert(pool, src, dst, fmt, options=None):
    return SandboxedEngine(PdfEngine(), pool).convert(
        src, dst, "pdf", fmt, options or PdfOptions(), lambda f: None
    )


def test_every_page_becomes_an_image(pool, two_pages, tmp_path):
    outputs = _convert(pool, two_pages, tmp_path / "p.png", "png", PdfOptions(pixel_density=72))
    assert [p.name for p in outputs] == ["p-1.png", "p-2.png"]
    sizes = {
        (pyvips.Image.new_from_file(str(p)).width, pyvips.Image.new_from_file(str(p)).height)
        for p in outputs
    }
    assert len(sizes) == 1 and next(iter(sizes))[0] > 100


def test_one_selected_page_is_one_file_and_density_scales_it(pool, two_pages, tmp_path):
    low = _convert(
        pool, two_pages, tmp_path / "low.jpg", "jpg", PdfOptions(pages="2", pixel_density=72)
    )
    high = _convert(
        pool, two_pages, tmp_path / "high.jpg", "jpg", PdfOptions(pages="2", pixel_density=144)
    )
    assert low is None and high is None
    w_low = pyvips.Image.new_from_file(str(tmp_path / "low.jpg")).width
    w_high = pyvips.Image.new_from_file(str(tmp_path / "high.jpg")).width
    assert abs(w_high - 2 * w_low) <= 2


def test_text_of_the_pages(pool, two_pages, tmp_path):
    _convert(pool, two_pages, tmp_path / "t.txt", "txt")
    text = (tmp_path / "t.txt").read_text()
    assert "Alpha" in text and "Beta" in text and "\f" in text


def test_pages_outside_the_document_and_corrupt_pdfs_fail_clearly(pool, two_pages, tmp_path):
    with pytest.raises(PermanentError) as info:
        _convert(pool, two_pages, tmp_path / "x.png", "png", PdfOptions(pages="3"))
    assert info.value.code == "INVALID_OPTIONS"
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.7\n" + b"garbage" * 100)
    with pytest.raises(PermanentError) as info:
        _convert(pool, bad, tmp_path / "y.png", "png")
    assert info.value.code == "INVALID_INPUT_FILE"


def test_page_specs():
    assert page_numbers(None, 3) == [0, 1, 2]
    assert page_numbers("1-2,2,3", 3) == [0, 1, 2]
    with pytest.raises(PermanentError):
        page_numbers("0", 3)
