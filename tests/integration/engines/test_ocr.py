"""The OCR engine (Tesseract) beyond its format pairs (those are in test_matrix): every page of
a TIFF, an image without text, an image it cannot decode, languages that are not installed,
and the routes that reach text from images through it, run end to end in sandboxed helpers."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pikepdf
import pytest
import pyvips

from appliance.conversions.work import run_hops
from appliance.engines.doctor import check_engine
from appliance.engines.enabled import enabled_engines
from appliance.engines.ocr import OcrEngine, OcrOptions, PdfOcrEngine, PdfOcrOptions
from appliance.engines.pdftools import ImagePdfOptions, ImagesToPdfEngine
from appliance.engines.registry import Registry
from appliance.engines.sandbox import SandboxedEngine, sandboxed
from appliance.errors import InvalidData, PermanentError
from tests.integration.engines.corpus import CORPUS
from tests.integration.engines.test_matrix import OCR_WORDS, text_image


def _ocr(pool, src, dst, fmt, options=None):
    SandboxedEngine(OcrEngine(), pool).convert(
        src, dst, fmt, "txt", options or OcrOptions(), lambda f: None
    )
    return dst.read_text()


def test_every_page_of_a_tiff_is_read_with_pages_separated_by_a_form_feed(pool, tmp_path):
    first, second = text_image("First page here"), text_image("Second page there")
    width, height = max(first.width, second.width), max(first.height, second.height)
    pages = [p.gravity("north-west", width, height, extend="white") for p in (first, second)]
    tiff = tmp_path / "two.tiff"
    pages_tall = pyvips.Image.arrayjoin(pages, across=1).copy()
    pages_tall.set_type(pyvips.GValue.gint_type, "page-height", height)  # one TIFF page each
    pages_tall.write_to_file(str(tiff))
    text = _ocr(pool, tiff, tmp_path / "out.txt", "tiff")
    assert [page.split() for page in text.split("\f")] == [
        ["First", "page", "here"],
        ["Second", "page", "there"],
    ]


def test_an_image_without_text_is_a_no_text_found_error(pool, tmp_path):
    blank = tmp_path / "blank.png"
    pyvips.Image.black(600, 300).invert().cast("uchar").write_to_file(str(blank))
    with pytest.raises(PermanentError) as info:
        _ocr(pool, blank, tmp_path / "out.txt", "png")
    assert info.value.code == "NO_TEXT_FOUND"
    assert info.value.message == "No text was found in the image"


def test_a_tiff_it_cannot_decode_is_an_input_error_not_an_empty_page(pool, tmp_path):
    # Float samples: Tesseract exits 0 with no text and says why only on stderr.
    floats = tmp_path / "float.tiff"
    (text_image(OCR_WORDS).cast("float") / 255).write_to_file(str(floats))
    with pytest.raises(PermanentError) as info:
        _ocr(pool, floats, tmp_path / "out.txt", "tiff")
    assert info.value.code == "INVALID_INPUT_FILE"
    assert "could not be read" in info.value.message


def test_a_tiff_leptonica_cannot_decode_is_read_through_pillow(pool, tmp_path):
    """Old-style JPEG in TIFF (scanners, fax software): Tesseract's leptonica lacks it."""
    ojpeg = CORPUS / "libvips-ojpeg-strip.tiff"  # a picture without words
    alone = subprocess.run(["tesseract", str(ojpeg), "-"], capture_output=True, text=True)
    assert "old style jpeg format is not supported" in alone.stderr  # control
    with pytest.raises(PermanentError) as info:
        _ocr(pool, ojpeg, tmp_path / "out.txt", "tiff")
    assert info.value.code == "NO_TEXT_FOUND"  # read, and found without words


def test_a_language_that_is_not_installed_is_a_422_naming_the_installed_ones():
    registry = Registry(enabled_engines())
    with pytest.raises(InvalidData) as info:
        registry.plan("png", "txt", {"language": "eng+xyz"})
    assert "language 'xyz' is not installed; installed: eng" in info.value.message
    with pytest.raises(InvalidData) as info:
        registry.plan("png", "txt", {"language": "../../tmp/eng"})
    assert "language" in info.value.errors
    _, options = registry.plan("png", "txt", {})
    assert options == OcrOptions(language="eng")


def test_the_helper_refuses_a_language_it_has_not_as_invalid_options(pool, tmp_path):
    """The API host may lack Tesseract (no check there): the helper checks again."""
    src = tmp_path / "words.png"
    text_image(OCR_WORDS).write_to_file(str(src))
    helper = pool.helper()
    job = helper.job_dir()
    shutil.copy(src, job / "input.png")
    inside = f"/job/{job.relative_to(helper.workdir)}"
    request = {
        "engine": "tesseract",
        "src": f"{inside}/input.png",
        "dst": f"{inside}/output.txt",
        "src_format": "png",
        "dst_format": "txt",
        "options": {"language": "deu"},
    }
    with pytest.raises(PermanentError) as info:
        helper.call(request, lambda f: None)
    assert info.value.code == "INVALID_OPTIONS"
    assert "language 'deu' is not installed" in info.value.message
    assert not (job / "output.txt").exists()


def test_images_reach_text_formats_through_ocr(pool, tmp_path):
    registry = Registry(sandboxed(enabled_engines(), pool))
    engines = {
        (src, target): [h.engine.descriptor.id for h in registry.route(src, target) or []]
        for src, target in (("png", "txt"), ("jpg", "txt"), ("png", "md"), ("avif", "txt"))
    }
    assert engines == {
        ("png", "txt"): ["tesseract"],  # not png -> pdf -> txt, which finds no text
        ("jpg", "txt"): ["tesseract"],
        ("png", "md"): ["tesseract", "pandoc"],
        ("avif", "txt"): ["vips", "tesseract"],  # Tesseract cannot read AVIF itself
    }
    assert registry.route("png", "pdf")[0].engine.descriptor.id == "image-pdf"  # unchanged
    src = tmp_path / "words.png"
    text_image(OCR_WORDS).write_to_file(str(src))
    hops, options = registry.plan("png", "md", {})
    (md,) = run_hops(hops, src, tmp_path, options, lambda f: None)
    assert md.read_text().split() == OCR_WORDS.split()


# -- pictures -> documents holding them ---------------------------------------------------------
def _document(pool, tmp_path, src, fmt, target):
    registry = Registry(sandboxed(enabled_engines(), pool))
    hops, options = registry.plan(fmt, target, {})
    assert [h.engine.descriptor.id for h in hops] == ["ocr-document"]
    (out,) = run_hops(hops, src, tmp_path / target, options, lambda f: None)
    return out


def _docx_parts(docx):
    """(the body's words, the pictures' bytes) of a docx, read from its XML and media."""
    with zipfile.ZipFile(docx) as z:
        body = z.read("word/document.xml").decode()
        media = [z.read(n) for n in z.namelist() if n.startswith("word/media/")]
    words = " ".join(re.findall(r"<w:t(?: [^>]*)?>([^<]*)</w:t>", body)).split()
    return words, media


def test_a_picture_to_docx_holds_the_picture_and_then_its_text(pool, tmp_path):
    src = tmp_path / "words.png"
    text_image(OCR_WORDS).write_to_file(str(src))
    (tmp_path / "docx").mkdir()
    words, media = _docx_parts(_document(pool, tmp_path, src, "png", "docx"))
    assert words == OCR_WORDS.split()
    assert media == [src.read_bytes()]  # the png itself, not a copy re-encoded


def test_a_picture_without_words_becomes_a_document_of_the_picture(pool, tmp_path):
    blank = tmp_path / "blank.gif"
    pyvips.Image.black(600, 300).invert().cast("uchar").write_to_file(str(blank))
    for target in ("docx", "odt", "epub", "html", "rtf"):
        (tmp_path / target).mkdir()
        out = _document(pool, tmp_path, blank, "gif", target)
        if target == "html":  # one file: the picture inside as a data: URL
            (picture,) = re.findall(r'<img src="data:image/png;base64,([^"]+)"', out.read_text())
            data = base64.b64decode(picture)
        elif target == "rtf":  # the picture as hex in a \pict group
            (picture,) = re.findall(r"\\pngblip[^ ]* ([0-9a-f]+)\}", out.read_text())
            data = bytes.fromhex(picture)
        else:
            media = {"docx": "word/media/", "odt": "Pictures/", "epub": "EPUB/media/"}[target]
            with zipfile.ZipFile(out) as z:
                (name,) = [n for n in z.namelist() if n.startswith(media)]
                data = z.read(name)
        image = pyvips.Image.new_from_buffer(data, "")  # the GIF's frame, as PNG
        assert (image.width, image.height) == (600, 300), target


def test_every_page_of_a_tiff_is_a_picture_followed_by_its_text(pool, tmp_path):
    first, second = text_image("First page here"), text_image("Second page there")
    width, height = max(first.width, second.width), max(first.height, second.height)
    pages = [p.gravity("north-west", width, height, extend="white") for p in (first, second)]
    tiff = tmp_path / "two.tiff"
    pages_tall = pyvips.Image.arrayjoin(pages, across=1).copy()
    pages_tall.set_type(pyvips.GValue.gint_type, "page-height", height)
    pages_tall.write_to_file(str(tiff))
    (tmp_path / "docx").mkdir()
    docx = _document(pool, tmp_path, tiff, "tiff", "docx")
    with zipfile.ZipFile(docx) as z:
        body = z.read("word/document.xml").decode()
    pictures = [m.start() for m in re.finditer(r"<w:drawing>", body)]
    first_text, second_text = body.index(">First page here<"), body.index(">Second page there<")
    assert len(pictures) == 2
    assert pictures[0] < first_text < pictures[1] < second_text


def test_doctor_reports_tesseract_with_its_languages():
    check = check_engine(OcrEngine())
    assert check.ok, check.detail
    assert check.detail.startswith("tesseract 5.") and "(eng)" in check.detail
    assert "6 conversions; queue office" in check.detail


# -- pdf/ocr: a searchable PDF ------------------------------------------------------------------
def _scanned_pdf(tmp_path, words, angle=0):
    """A PDF whose only page is a picture of ``words`` (no text layer), turned by ``angle``."""
    image = text_image(words)
    if angle:
        image = image.rotate(angle, background=[255])
    png = tmp_path / "scan.png"
    image.copy(xres=300 / 25.4, yres=300 / 25.4).write_to_file(str(png))
    pdf = tmp_path / "scan.pdf"
    ImagesToPdfEngine().convert(png, pdf, "png", "pdf", ImagePdfOptions(), lambda f: None)
    return pdf


def _pdftotext(path):
    done = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_pdf_ocr_gives_a_text_layer_pdftotext_reads(pool, tmp_path):
    src = _scanned_pdf(tmp_path, OCR_WORDS)
    assert _pdftotext(src) == []  # control: a picture only
    dst = tmp_path / "out.pdf"
    SandboxedEngine(PdfOcrEngine(), pool).convert(
        src, dst, "pdf", "pdf", PdfOcrOptions(language=["eng"]), lambda f: None
    )
    assert _pdftotext(dst) == OCR_WORDS.split()
    # the page image is kept as it was: the same size, still one image
    with pikepdf.open(src) as before, pikepdf.open(dst) as after:
        assert after.pages[0].mediabox == before.pages[0].mediabox
        assert len(after.pages[0].get_images()) == 1


PARAGRAPH = [
    OCR_WORDS,
    "Pack my box with five dozen liquor jugs",
    "How vexingly quick daft zebras jump",
    "The five boxing wizards jump quickly",
    "Sphinx of black quartz judge my vow",
]


def test_pdf_ocr_auto_orient_reads_a_page_scanned_upside_down(pool, tmp_path):
    src = _scanned_pdf(tmp_path, "\n".join(PARAGRAPH * 3), angle=180)  # 15 lines of text
    dst = tmp_path / "out.pdf"
    SandboxedEngine(PdfOcrEngine(), pool).convert(
        src, dst, "pdf", "pdf", PdfOcrOptions(auto_orient=True), lambda f: None
    )
    assert _pdftotext(dst) == " ".join(PARAGRAPH * 3).split()
    with pikepdf.open(dst) as pdf:
        assert int(pdf.pages[0].obj.get("/Rotate", 0)) % 360 == 180


def test_pdf_ocr_keeps_pages_that_have_text(pool, tmp_path):
    src = Path(__file__).parents[4] / "shared" / "corpus" / "real" / "gotenberg-pages_3.pdf"
    dst = tmp_path / "out.pdf"
    SandboxedEngine(PdfOcrEngine(), pool).convert(
        src, dst, "pdf", "pdf", PdfOcrOptions(), lambda f: None
    )
    assert _pdftotext(dst) == _pdftotext(src) == ["Page", "1", "Page", "2", "Page", "3"]


def test_pdf_ocr_language_not_installed_is_refused():
    with pytest.raises(ValueError, match="language 'xxx' is not installed"):
        PdfOcrOptions(language=["eng", "xxx"])


def test_pdf_ocr_reads_a_real_photographed_notice(pool, tmp_path):
    photo = Path(__file__).parents[4] / "shared" / "corpus" / "real" / "textract-raw_text.jpg"
    src = tmp_path / "notice.pdf"
    ImagesToPdfEngine().convert(photo, src, "jpg", "pdf", ImagePdfOptions(), lambda f: None)
    assert _pdftotext(src) == []  # control: the page is the photo only
    dst = tmp_path / "out.pdf"
    SandboxedEngine(PdfOcrEngine(), pool).convert(
        src, dst, "pdf", "pdf", PdfOcrOptions(language="eng"), lambda f: None
    )
    text = " ".join(_pdftotext(dst))
    assert "THIS IS A TEST OF THE NATIONAL EMERGENCY ALERT SYSTEM" in text


def test_a_webp_tesseracts_own_reader_refuses_is_read(pool, tmp_path):
    """libvips' big-height.webp (13 x 169, sound): leptonica returned no picture for it, and
    the conversion failed as INVALID_INPUT_FILE; read through Pillow it has no text."""
    with pytest.raises(PermanentError) as info:
        SandboxedEngine(OcrEngine(), pool).convert(
            CORPUS / "libvips-big-height.webp",
            tmp_path / "out.txt",
            "webp",
            "txt",
            OcrOptions(),
            lambda f: None,
        )
    assert info.value.code == "NO_TEXT_FOUND"


def test_a_picture_to_doc_is_its_docx_made_a_doc_with_the_picture_in_it(pool, tmp_path):
    """Word 97 from a picture: the docx above (the picture, then its words), written as doc
    by LibreOffice, not the words alone."""
    src = tmp_path / "words.png"
    text_image(OCR_WORDS).write_to_file(str(src))
    registry = Registry(sandboxed(enabled_engines(), pool))
    hops, options = registry.plan("png", "doc", {})
    assert [h.engine.descriptor.id for h in hops] == ["ocr-document", "libreoffice"]
    (doc,) = run_hops(hops, src, tmp_path, options, lambda f: None)
    data = doc.read_bytes()
    assert data.startswith(b"\xd0\xcf\x11\xe0")  # an OLE compound file, as Word 97 writes
    picture = data[data.index(b"\x89PNG\r\n\x1a\n") :]  # the picture, kept as PNG
    source = pyvips.Image.new_from_file(str(src))
    assert int.from_bytes(picture[16:20], "big") == source.width  # its IHDR's width
    assert int.from_bytes(picture[20:24], "big") == source.height
    assert OCR_WORDS.split()[0].encode("utf-16-le") in data or OCR_WORDS.split()[0].encode() in data
