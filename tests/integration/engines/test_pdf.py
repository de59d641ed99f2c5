"""PDF pages to images and text (PDFium) in the sandboxed helper, including one file per page."""

from __future__ import annotations

import subprocess
import zipfile
from xml.etree import ElementTree

import pytest
import pyvips
from PIL import Image

from appliance.conversions.work import run_hops
from appliance.engines.enabled import enabled_engines
from appliance.engines.office import OfficeEngine, OfficeOptions
from appliance.engines.pdf import PdfEngine, PdfOptions, page_numbers
from appliance.engines.registry import Registry
from appliance.engines.sandbox import SandboxedEngine, sandboxed
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


@pytest.fixture(scope="module")
def registry(pool):
    return Registry(sandboxed(enabled_engines(), pool))


def test_a_pdf_without_a_text_layer_has_no_text_found_and_its_docx_holds_the_scan(
    pool, registry, tmp_path
):
    """A scan: a page that is only a picture (written by Pillow, not by an engine here)."""
    scan = tmp_path / "scan.pdf"
    Image.new("RGB", (600, 800), "white").save(scan, format="PDF")
    hops = registry.route("pdf", "txt")
    with pytest.raises(PermanentError) as info:
        run_hops(hops, scan, tmp_path, registry.options_for(hops, {}), lambda f: None)
    assert info.value.code == "NO_TEXT_FOUND"
    assert "text layer" in info.value.message
    hops = registry.route("pdf", "docx")
    [docx] = run_hops(hops, scan, tmp_path, registry.options_for(hops, {}), lambda f: None)
    with zipfile.ZipFile(docx) as z:
        (picture,) = [z.read(n) for n in z.namelist() if n.startswith("word/media/")]
    image = pyvips.Image.new_from_buffer(picture, "")
    assert (image.width, image.height) == (600, 800)


def test_a_pdfs_text_reaches_docx_as_plain_paragraphs_not_markdown(pool, registry, tmp_path):
    source = tmp_path / "notes.txt"
    lines = ["# not a heading", "*not emphasis* and 2 * 3 = 6", "1. not a list [x](y)"]
    source.write_text("\n\n".join(lines) + "\n")
    pdf = tmp_path / "notes.pdf"
    SandboxedEngine(OfficeEngine(), pool).convert(
        source, pdf, "txt", "pdf", OfficeOptions(), lambda f: None
    )
    hops = registry.route("pdf", "docx")
    [docx] = run_hops(hops, pdf, tmp_path, registry.options_for(hops, {}), lambda f: None)
    with zipfile.ZipFile(docx) as z:
        body = ElementTree.fromstring(z.read("word/document.xml"))
    w = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
    paragraphs = ["".join(t.text or "" for t in p.iter(f"{w}t")) for p in body.iter(f"{w}p")]
    for line in lines:
        assert line in paragraphs, paragraphs
