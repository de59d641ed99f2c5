"""PDF -> docx, odt, epub and html keeping the PDF's pictures among its text (PDFium + pandoc),
in the sandboxed helper, on PDFs written here byte by byte: their text, pictures and positions
are known exactly."""

from __future__ import annotations

import base64
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import pyvips

from appliance.engines.enabled import enabled_engines
from appliance.engines.pdfdocument import PdfDocumentEngine, PdfDocumentOptions
from appliance.engines.registry import Registry
from appliance.engines.sandbox import SandboxedEngine
from appliance.errors import PermanentError

# (kind, ...) per page: ("text", y, words) in 18-point Helvetica at the left margin,
# ("label", x, y, size, words), ("picture", x, y, width, height) in points, a picture being a
# 40 x 20 pixel red image drawn at that size, or ("ops", "...") content operators as they are
# (paths)
Page = list[tuple[object, ...]]
RED = bytes([255, 0, 0]) * (40 * 20)


def write_pdf(path: Path, pages: list[Page]) -> Path:
    """A PDF of US Letter pages with Helvetica text and RGB pictures where ``pages`` says."""
    objects: list[bytes] = [b"", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for page in pages:
        ops, xobjects = [], []
        for item in page:
            if item[0] == "text":
                _, y, words = item
                ops.append(f"BT /F1 18 Tf 72 {y} Td ({words}) Tj ET")
            elif item[0] == "label":
                _, x, y, size, words = item
                ops.append(f"BT /F1 {size} Tf {x} {y} Td ({words}) Tj ET")
            elif item[0] == "ops":
                ops.append(str(item[1]))
            else:
                _, x, y, w, h = item
                objects.append(
                    b"<< /Type /XObject /Subtype /Image /Width 40 /Height 20 /ColorSpace"
                    b" /DeviceRGB /BitsPerComponent 8 /Length %d >>\nstream\n"
                    % len(RED)
                    + RED
                    + b"\nendstream"
                )
                name = f"Im{len(xobjects)}"
                xobjects.append(f"/{name} {len(objects)} 0 R")
                ops.append(f"q {w} 0 0 {h} {x} {y} cm /{name} Do Q")
        content = "\n".join(ops).encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R"
            b" /Resources << /Font << /F1 3 0 R >> /XObject << %s >> >> >>"
            % (len(objects), " ".join(xobjects).encode())
        )
        kids.append(f"{len(objects)} 0 R")
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        " ".join(kids).encode(),
        len(kids),
    )
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


PICTURE_BETWEEN: list[Page] = [
    [
        ("text", 700, "Above the picture"),
        ("picture", 72, 500, 200, 100),
        ("text", 400, "Below the picture"),
    ],
    [("text", 700, "Second page")],
]


def _convert(pool, src: Path, dst: Path, fmt: str, pages: str | None = None) -> Path:
    SandboxedEngine(PdfDocumentEngine(), pool).convert(
        src, dst, "pdf", fmt, PdfDocumentOptions(pages=pages), lambda f: None
    )
    return dst


def _is_the_red_picture(data: bytes) -> None:
    image = pyvips.Image.new_from_buffer(data, "")
    assert (image.width, image.height) == (40, 20)
    assert image.getpoint(5, 5)[:3] == [255, 0, 0]


def test_pdf_to_documents_takes_the_picture_keeping_route():
    registry = Registry(enabled_engines())
    for target in ("docx", "odt", "epub", "html"):
        assert [h.engine.descriptor.id for h in registry.route("pdf", target)] == ["pdf-document"]
    assert [h.engine.descriptor.id for h in registry.route("pdf", "md")] == ["pdfium", "pandoc"]
    # a drawing is still a picture of it, not the text of its PDF (whose paths are dropped)
    assert [h.engine.descriptor.id for h in registry.route("svg", "docx")] == [
        "rsvg",
        "ocr-document",
    ]


def test_a_docx_holds_the_picture_between_the_text_above_and_below_it(pool, tmp_path):
    src = write_pdf(tmp_path / "in.pdf", PICTURE_BETWEEN)
    docx = _convert(pool, src, tmp_path / "out.docx", "docx")
    with zipfile.ZipFile(docx) as z:
        body = z.read("word/document.xml").decode()
        (media,) = [z.read(n) for n in z.namelist() if n.startswith("word/media/")]
    _is_the_red_picture(media)
    above, picture = body.index(">Above the picture<"), body.index("<w:drawing>")
    below, second = body.index(">Below the picture<"), body.index(">Second page<")
    page_break = body.index('<w:br w:type="page"/>')
    assert above < picture < below < page_break < second


@pytest.mark.parametrize("target", ["odt", "epub", "html"])
def test_other_documents_hold_the_picture_and_the_text(pool, tmp_path, target):
    src = write_pdf(tmp_path / "in.pdf", PICTURE_BETWEEN)
    out = _convert(pool, src, tmp_path / f"out.{target}", target)
    if target == "html":  # one file: the picture inside as a data: URL, between the texts
        page = out.read_text()
        (picture,) = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
        assert page.index("Above the picture") < page.index("<img") < page.index("Below")
        data = base64.b64decode(picture)
    else:
        media = {"odt": "Pictures/", "epub": "EPUB/media/"}[target]
        with zipfile.ZipFile(out) as z:
            (name,) = [n for n in z.namelist() if n.startswith(media)]
            data = z.read(name)
    _is_the_red_picture(data)
    read = ["pandoc", "--from", target, "--to", "plain", str(out)]  # an independent reader
    text = " ".join(subprocess.run(read, capture_output=True, text=True, check=True).stdout.split())
    assert "Above the picture" in text and "Below the picture" in text and "Second page" in text


def test_pictures_side_by_side_and_small_marks(pool, tmp_path):
    """Two pictures at one height both come before the text below them; a mark smaller than
    a dozen points (a bullet, a rule) is left out."""
    src = write_pdf(
        tmp_path / "in.pdf",
        [
            [
                ("text", 700, "Heading"),
                ("picture", 72, 500, 150, 100),
                ("picture", 300, 500, 150, 100),
                ("picture", 72, 300, 8, 8),
                ("text", 400, "Caption"),
            ]
        ],
    )
    docx = _convert(pool, src, tmp_path / "out.docx", "docx")
    with zipfile.ZipFile(docx) as z:
        body = z.read("word/document.xml").decode()
        media = [n for n in z.namelist() if n.startswith("word/media/")]
    assert len(media) == 2
    drawings = [m.start() for m in re.finditer("<w:drawing>", body)]
    assert body.index(">Heading<") < drawings[0] < drawings[1] < body.index(">Caption<")


def test_a_scan_without_text_becomes_a_document_of_its_pictures(pool, tmp_path):
    src = write_pdf(tmp_path / "scan.pdf", [[("picture", 0, 0, 612, 792)]] * 2)
    docx = _convert(pool, src, tmp_path / "out.docx", "docx")
    with zipfile.ZipFile(docx) as z:
        media = [z.read(n) for n in z.namelist() if n.startswith("word/media/")]
    assert len(media) == 2
    _is_the_red_picture(media[0])


def test_pages_selects_and_a_pdf_with_nothing_on_it_is_no_text_found(pool, tmp_path):
    src = write_pdf(tmp_path / "in.pdf", PICTURE_BETWEEN)
    docx = _convert(pool, src, tmp_path / "second.docx", "docx", pages="2")
    with zipfile.ZipFile(docx) as z:
        body = z.read("word/document.xml").decode()
        assert not [n for n in z.namelist() if n.startswith("word/media/")]
    assert ">Second page<" in body and "Above the picture" not in body
    blank = write_pdf(tmp_path / "blank.pdf", [[]])
    with pytest.raises(PermanentError) as caught:
        _convert(pool, blank, tmp_path / "blank.docx", "docx")
    assert caught.value.code == "NO_TEXT_FOUND"


def _body_and_media(docx: Path) -> tuple[str, list[bytes]]:
    with zipfile.ZipFile(docx) as z:
        body = z.read("word/document.xml").decode()
        media = [z.read(n) for n in sorted(z.namelist()) if n.startswith("word/media/")]
    return body, media


CHART: Page = [
    ("text", 700, "Above the chart"),
    # a shaded paragraph: a box mostly text is a background, its words stay text
    ("ops", "0.9 g 60 540 480 60 re f 0 g"),
    ("text", 575, "Shaded words on a grey box"),
    ("text", 550, "and a second line of them"),
    # three bars that touch their axis, a legend inside and labels just below
    ("ops", "1 0 0 rg 100 300 40 120 re f 160 300 40 150 re f 220 300 40 90 re f 0 g"),
    ("ops", "0 G 1 w 90 300 m 270 300 l S"),
    ("label", 210, 435, 8, "Legend"),
    ("label", 112, 293, 8, "Q1"),
    ("label", 172, 293, 8, "Q2"),
    ("label", 232, 293, 8, "Q3"),
    # a rule across the page is no drawing
    ("ops", "0 G 0.5 w 72 250 m 540 250 l S"),
    ("text", 200, "Below the chart"),
]


def test_a_drawing_becomes_a_picture_of_it_with_its_labels(pool, tmp_path):
    src = write_pdf(tmp_path / "chart.pdf", [CHART])
    body, media = _body_and_media(_convert(pool, src, tmp_path / "out.docx", "docx"))
    (picture,) = media  # the chart only: not the grey box, not the rule
    image = pyvips.Image.new_from_buffer(picture, "")
    # 150 dpi: the bars and their axis (182 x 151 points), the labels 7 points below them,
    # a point of margin round it all
    assert 375 <= image.width <= 390 and 325 <= image.height <= 340, (image.width, image.height)
    assert image.getpoint(image.width // 4, image.height // 2)[:3] == [255, 0, 0]  # a bar
    words = re.findall(r"<w:t[^>]*>([^<]*)</w:t>", body)
    assert "Shaded words on a grey box" in words and "and a second line of them" in words
    for label in ("Q1", "Q2", "Q3", "Legend"):  # drawn with the chart, not in the text
        assert not any(label in w for w in words), words
    above, drawing = body.index(">Above the chart<"), body.index("<w:drawing>")
    assert above < body.index(">Shaded words") < drawing < body.index(">Below the chart<")


def test_a_drawing_shows_what_its_clip_lets_through(pool, tmp_path):
    """A path that runs on past its clip (a plot's curve past its axes) is pictured as far as
    it shows on the page, not as far as it runs."""
    clipped = "q 100 100 200 100 re W n 0 0 1 rg 50 50 500 500 re f Q"
    src = write_pdf(tmp_path / "clip.pdf", [[("text", 700, "Title"), ("ops", clipped)]])
    _, (picture,) = _body_and_media(_convert(pool, src, tmp_path / "out.docx", "docx"))
    image = pyvips.Image.new_from_buffer(picture, "")
    # 202 x 102 points at 150 dpi (the clip and a point of margin round it)
    assert abs(image.width - 421) <= 3 and abs(image.height - 212) <= 3, image.size
    assert image.getpoint(image.width // 2, image.height // 2)[:3] == [0, 0, 255]


def test_a_pdf_drawn_with_paths_only_is_a_document_of_its_drawing(pool, tmp_path):
    src = write_pdf(tmp_path / "drawn.pdf", [[("ops", "0 1 0 rg 100 100 300 300 re f")]])
    _, media = _body_and_media(_convert(pool, src, tmp_path / "out.docx", "docx"))
    assert len(media) == 1


def test_a_picture_in_the_right_column_of_two_sits_in_that_column_s_text(pool, tmp_path):
    """Two columns read one after the other (PDFium's order, as the page's content has it):
    the picture in the right one comes after the whole left column, between the right
    column's lines above and below it, not between the left column's."""
    page: Page = [("label", 72, 700 - 14 * n, 10, f"Left line {n}") for n in range(30)]
    page += [("label", 330, 700 - 14 * n, 10, f"Right line {n}") for n in range(10)]
    page.append(("picture", 330, 420, 200, 100))
    page += [("label", 330, 400 - 14 * n, 10, f"Right line {n}") for n in range(10, 20)]
    src = write_pdf(tmp_path / "columns.pdf", [page])
    body, (picture,) = _body_and_media(_convert(pool, src, tmp_path / "out.docx", "docx"))
    _is_the_red_picture(picture)
    drawing = body.index("<w:drawing>")
    assert body.index(">Left line 29<") < body.index(">Right line 9<") < drawing
    assert drawing < body.index(">Right line 10<")


def test_an_rtf_holds_the_picture_between_the_texts(pool, tmp_path):
    src = write_pdf(tmp_path / "in.pdf", PICTURE_BETWEEN)
    rtf = _convert(pool, src, tmp_path / "out.rtf", "rtf").read_text()
    (picture,) = re.findall(r"\\pngblip[^ ]* ([0-9a-f]+)\}", rtf.replace("\n", ""))
    _is_the_red_picture(bytes.fromhex(picture))
    assert rtf.index("Above the picture") < rtf.index("\\pngblip") < rtf.index("Below the picture")
