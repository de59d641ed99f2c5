"""Document operations through the API, as a client drives them: merge (each input routed to
PDF first), optimize, pdf/split-pages, pdf/rotate-pages, PDF/A of an existing PDF, an e-book
over two engines, and the text of a scanned page through OCR. Outputs are downloaded and
parsed."""

from __future__ import annotations

import io
import struct
import subprocess
import zipfile

import httpx
import pikepdf
import pytest
import pyvips

from tests.e2e.conftest import base64_import, downloads, run_job, task
from tests.integration.engines.pdfa import pdfa_2b_problems


def _page_sizes(data: bytes) -> list[tuple[int, int]]:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return [(round(float(p.mediabox[2])), round(float(p.mediabox[3]))) for p in pdf.pages]


def _pdf(widths: tuple[int, ...]) -> bytes:
    pdf = pikepdf.new()
    for width in widths:
        pdf.add_blank_page(page_size=(width, 150))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def _png(width: int = 192, height: int = 96) -> bytes:
    image = pyvips.Image.black(width, height).new_from_image([200, 40, 40])
    return image.copy(xres=96 / 25.4, yres=96 / 25.4).pngsave_buffer()


def test_merge_routes_a_picture_and_a_document_to_pdf_and_keeps_the_order(deployment, tmp_path):
    md = tmp_path / "letter.md"
    md.write_text("# Letter\n\nOne page of text.\n")
    docx = tmp_path / "letter.docx"
    subprocess.run(["pandoc", "-o", str(docx), str(md)], check=True)
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "picture": base64_import("picture.png", _png()),
                "letter": base64_import("letter.docx", docx.read_bytes()),
                "pages": base64_import("pages.pdf", _pdf((100, 200))),
                "m": {
                    "operation": "merge",
                    "input": ["picture", "letter", "pages"],
                    "output_format": "pdf",
                    "filename": "bundle.pdf",
                },
                "e": {"operation": "export/url", "input": "m"},
            },
        )
        assert job["status"] == "finished", job
        merge = task(job, "m")
        assert merge["engine"] == "pdf-merge"
        assert [h["engine"] for h in merge["result"]["route"]] == ["image-pdf", "libreoffice"]
        ((name, data),) = downloads(job)
    assert name == "bundle.pdf"
    sizes = _page_sizes(data)
    assert len(sizes) == 4
    assert sizes[0] == (144, 72)  # the picture, 2 x 1 inch
    assert sizes[1][0] > 500  # the letter: a Letter or A4 page
    assert sizes[2:] == [(100, 150), (200, 150)]
    rows = deployment.sql("SELECT queue FROM tasks WHERE name = 'm' ORDER BY created_at DESC")
    assert rows[0]["queue"] == "office"  # docx -> pdf needs LibreOffice


def test_merge_of_a_corrupted_pdf_fails_the_task_with_a_clear_code(deployment):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "good": base64_import("good.pdf", _pdf((100,))),
                "bad": base64_import("bad.pdf", b"%PDF-1.7\n1 0 obj << /Pages 2 0 R >> garbage"),
                "m": {"operation": "merge", "input": ["good", "bad"], "output_format": "pdf"},
                "e": {"operation": "export/url", "input": "m"},
            },
        )
    assert job["status"] == "error"
    assert task(job, "m")["code"] == "INVALID_INPUT_FILE"
    assert "PDF" in task(job, "m")["message"]


def test_optimize_makes_a_pdf_smaller_with_the_same_pages(deployment, tmp_path):
    noise = pyvips.Image.gaussnoise(900, 600, mean=128, sigma=40).cast("uchar")
    photo = noise.bandjoin([noise, noise]).copy(xres=300 / 25.4, yres=300 / 25.4)
    with deployment.client(deployment.key()) as api:
        to_pdf = run_job(
            api,
            {
                "in": base64_import("photo.png", photo.pngsave_buffer()),
                "c": {"operation": "convert", "input": "in", "output_format": "pdf"},
                "e": {"operation": "export/url", "input": "c"},
            },
        )
        assert to_pdf["status"] == "finished", to_pdf
        ((_, heavy),) = downloads(to_pdf)
        job = run_job(
            api,
            {
                "in": base64_import("scan.pdf", heavy),
                "o": {"operation": "optimize", "input": "in", "profile": "web"},
                "e": {"operation": "export/url", "input": "o"},
            },
        )
        assert job["status"] == "finished", job
        assert task(job, "o")["engine"] == "optimize"
        ((name, data),) = downloads(job)
    assert name == "scan.pdf"
    assert len(data) < len(heavy) * 0.8
    assert _page_sizes(data) == _page_sizes(heavy) == [(216, 144)]


def test_optimize_refuses_an_unknown_profile_at_job_creation(deployment):
    with deployment.client(deployment.key()) as api:
        r = api.post(
            "/v2/jobs",
            json={
                "tasks": {
                    "in": base64_import("a.pdf", _pdf((100,))),
                    "o": {"operation": "optimize", "input": "in", "profile": "tiny"},
                }
            },
        )
    assert r.status_code == 422
    assert "tasks.o.profile" in r.json()["errors"]


def test_split_pages_gives_one_pdf_per_page(deployment):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("report.pdf", _pdf((100, 200, 300))),
                "s": {"operation": "pdf/split-pages", "input": "in"},
                "e": {"operation": "export/url", "input": "s"},
            },
        )
        assert job["status"] == "finished", job
        files = downloads(job)
    assert [name for name, _ in files] == ["report-1.pdf", "report-2.pdf", "report-3.pdf"]
    assert [_page_sizes(data) for _, data in files] == [[(100, 150)], [(200, 150)], [(300, 150)]]


def _rotations(data: bytes) -> list[int]:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return [int(p.obj.get("/Rotate", 0)) for p in pdf.pages]


def test_rotate_pages_turns_the_pages_asked_and_keeps_the_name(deployment):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("scan.pdf", _pdf((100, 200, 300))),
                "r": {"operation": "pdf/rotate-pages", "input": "in", "rotation": 90},
                "r2": {
                    "operation": "pdf/rotate-pages",
                    "input": "r",
                    "rotation": -90,
                    "pages": "2",
                },
                "e": {"operation": "export/url", "input": ["r", "r2"]},
            },
        )
        assert job["status"] == "finished", job
        files = downloads(job)
    assert [name for name, _ in files] == ["scan.pdf", "scan.pdf"]
    assert [_rotations(data) for _, data in files] == [[90, 90, 90], [90, 0, 90]]
    assert _page_sizes(files[0][1]) == [(100, 150), (200, 150), (300, 150)]


def test_rotate_pages_refuses_a_rotation_that_is_not_a_quarter_turn(deployment):
    with deployment.client(deployment.key()) as api:
        r = api.post(
            "/v2/jobs",
            json={
                "tasks": {
                    "in": base64_import("scan.pdf", _pdf((100,))),
                    "r": {"operation": "pdf/rotate-pages", "input": "in", "rotation": 45},
                }
            },
        )
    assert r.status_code == 422, r.text
    assert "tasks.r.rotation" in r.json()["errors"]


def test_pdf_to_pdf_a_through_convert(deployment, tmp_path):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("plain.pdf", _pdf((300, 300))),
                "c": {"operation": "convert", "input": "in", "output_format": "pdf", "pdf_a": True},
                "e": {"operation": "export/url", "input": "c"},
            },
        )
        assert job["status"] == "finished", job
        ((_, data),) = downloads(job)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert pdf.open_metadata().pdfa_status == "2B"
        assert len(pdf.pages) == 2
    archived = tmp_path / "archived.pdf"
    archived.write_bytes(data)
    assert pdfa_2b_problems(archived) == []  # checked independently of the XMP's claim


def test_markdown_to_mobi_goes_through_two_engines_on_the_office_queue(deployment):
    md = b"# Heron\n\nThe heron waited by the quiet river.\n"
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("story.md", md),
                "c": {"operation": "convert", "input": "in", "output_format": "mobi"},
                "e": {"operation": "export/url", "input": "c"},
            },
        )
        assert job["status"] == "finished", job
        route = task(job, "c")["result"]["route"]
        assert len(route) == 2
        assert route[0]["engine"] == "pandoc" and route[0]["from"] == "md"
        assert (route[1]["engine"], route[1]["to"]) == ("calibre", "mobi")
        ((name, data),) = downloads(job)
    assert name == "story.mobi"
    assert data[60:68] == b"BOOKMOBI"
    assert "The heron waited by the quiet river." in _mobi_text(data)
    rows = deployment.sql("SELECT queue FROM tasks WHERE name = 'c' ORDER BY created_at DESC")
    assert rows[0]["queue"] == "office"


def _palmdoc(record: bytes) -> bytes:
    """PalmDoc's LZ77 undone (the MOBI format's usual text compression)."""
    out, i = bytearray(), 0
    while i < len(record):
        c = record[i]
        i += 1
        if c == 0 or 9 <= c <= 0x7F:
            out.append(c)
        elif 1 <= c <= 8:
            out += record[i : i + c]
            i += c
        elif c >= 0xC0:
            out += bytes((0x20, c ^ 0x80))
        else:  # 0x80-0xBF: a distance and length pair in two bytes
            pair = (c << 8 | record[i]) & 0x3FFF
            i += 1
            distance, length = pair >> 3, (pair & 7) + 3
            for _ in range(length):
                out.append(out[-distance])
    return bytes(out)


def _without_trailing_entries(record: bytes, flags: int) -> bytes:
    """A text record less the entries the MOBI header's extra flags say trail it: one per
    flag bit above the lowest, each ending in its size (a varint read backwards), then, for
    the lowest bit, the multibyte overlap (its length in the low two bits of its last byte)."""
    end = len(record)
    for bit in range(1, 16):
        if flags >> bit & 1:
            size = 0
            for byte in record[max(0, end - 4) : end]:
                size = 0 if byte & 0x80 else size
                size = size << 7 | (byte & 0x7F)
            end -= size
    if flags & 1:
        end -= (record[end - 1] & 3) + 1
    return record[:end]


def _mobi_text(data: bytes) -> str:
    """A MOBI book's text, read from its Palm database records, not by calibre."""
    count = struct.unpack(">H", data[76:78])[0]
    offsets = [struct.unpack(">I", data[78 + 8 * n : 82 + 8 * n])[0] for n in range(count)]
    offsets.append(len(data))
    header = data[offsets[0] : offsets[1]]
    compression, _, _, records = struct.unpack(">HHIH", header[:10])
    extra_flags = struct.unpack(">H", header[0xF2:0xF4])[0] if len(header) > 0xF4 else 0
    assert compression in (1, 2), compression  # none or PalmDoc (not HUFF/CDIC)
    text = b""
    for n in range(1, records + 1):
        record = _without_trailing_entries(data[offsets[n] : offsets[n + 1]], extra_flags)
        text += _palmdoc(record) if compression == 2 else record
    return text.decode("utf-8", "replace")


SCANNED_WORDS = "Invoice number seven paid in full"


def _scan(words: str) -> bytes:
    """A picture of black words (none: a blank page) on white, as scanned at 300 dpi."""
    ink = (
        pyvips.Image.text(words, dpi=300, font="sans 24") if words else pyvips.Image.black(900, 100)
    )
    page = (255 - ink).cast("uchar")
    return page.embed(60, 60, page.width + 120, page.height + 120, extend="white").pngsave_buffer()


def test_text_of_a_scanned_page_comes_through_ocr_on_the_office_queue(deployment):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("scan.png", _scan(SCANNED_WORDS)),
                "c": {"operation": "convert", "input": "in", "output_format": "txt"},
                "e": {"operation": "export/url", "input": "c"},
            },
        )
        assert job["status"] == "finished", job
        convert = task(job, "c")
        assert convert["engine"] == "tesseract"
        assert convert["result"]["route"] == [{"from": "png", "to": "txt", "engine": "tesseract"}]
        ((name, data),) = downloads(job)
    assert name == "scan.txt"
    assert data.decode().split() == SCANNED_WORDS.split()
    rows = deployment.sql("SELECT queue FROM tasks WHERE name = 'c' ORDER BY created_at DESC")
    assert rows[0]["queue"] == "office"


def test_a_scanned_page_to_docx_holds_the_picture_and_its_text(deployment):
    scan = _scan(SCANNED_WORDS)
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("scan.png", scan),
                "c": {"operation": "convert", "input": "in", "output_format": "docx"},
                "e": {"operation": "export/url", "input": "c"},
            },
        )
        assert job["status"] == "finished", job
        assert task(job, "c")["engine"] == "ocr-document"
        ((name, data),) = downloads(job)
    assert name == "scan.docx"
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        media = [z.read(n) for n in z.namelist() if n.startswith("word/media/")]
    assert media == [scan]
    read = ["pandoc", "--from", "docx", "--to", "plain"]  # an independent reader
    text = subprocess.run(read, input=data, capture_output=True, check=True).stdout.decode()
    assert " ".join(SCANNED_WORDS.split()) in " ".join(text.split())


def test_ocr_of_a_page_without_text_fails_the_task_clearly(deployment):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("blank.png", _scan("")),
                "c": {"operation": "convert", "input": "in", "output_format": "txt"},
            },
        )
    assert job["status"] == "error"
    assert task(job, "c")["code"] == "NO_TEXT_FOUND"
    assert task(job, "c")["message"] == "No text was found in the image"


def test_ocr_language_that_is_not_installed_is_422(deployment):
    with deployment.client(deployment.key()) as api:
        r = api.post(
            "/v2/jobs",
            json={
                "tasks": {
                    "in": base64_import("scan.png", _scan(SCANNED_WORDS)),
                    "c": {
                        "operation": "convert",
                        "input": "in",
                        "output_format": "txt",
                        "language": "klingon",
                    },
                }
            },
        )
    assert r.status_code == 422, r.text
    assert "language 'klingon' is not installed; installed: eng" in r.text


def test_single_task_routes_merge_and_optimize_chain_by_task_id(deployment):
    with deployment.client(deployment.key()) as api:
        first = api.post("/v2/import/base64", json=base64_import("a.pdf", _pdf((100,)))).json()[
            "data"
        ]
        second = api.post("/v2/import/base64", json=base64_import("b.png", _png())).json()["data"]
        merged = api.post(
            "/v2/merge", json={"input": [first["id"], second["id"]], "output_format": "pdf"}
        )
        assert merged.status_code == 201, merged.text
        small = api.post(
            "/v2/optimize", json={"input": merged.json()["data"]["id"], "profile": "max"}
        )
        assert small.status_code == 201, small.text
        exp = api.post("/v2/export/url", json={"input": [small.json()["data"]["id"]]})
        done = api.get(f"/sync/v2/tasks/{exp.json()['data']['id']}").json()["data"]
        assert done["status"] == "finished", done
        (file,) = done["result"]["files"]
        assert file["filename"] == "a.pdf"
        assert _page_sizes(httpx.get(file["url"], timeout=60).content) == [(100, 150), (144, 72)]


CORRUPT = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer garbage"


@pytest.mark.parametrize(
    "operation",
    [
        {"operation": "optimize", "profile": "web"},
        {"operation": "pdf/split-pages"},
        {"operation": "pdf/rotate-pages", "rotation": 180},
        {"operation": "convert", "output_format": "pdf", "pdf_a": True},
        {"operation": "convert", "output_format": "pdf", "pages": "1"},
    ],
    ids=["optimize", "split", "rotate", "pdf_a", "pages"],
)
def test_a_corrupted_pdf_ends_each_pdf_operation_with_invalid_input(deployment, operation):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("broken.pdf", CORRUPT),
                "t": {**operation, "input": "in"},
                "e": {"operation": "export/url", "input": "t"},
            },
        )
    assert job["status"] == "error"
    assert task(job, "t")["code"] == "INVALID_INPUT_FILE"
    assert "could not be opened" in task(job, "t")["message"]
