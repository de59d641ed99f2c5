"""Gotenberg 9's routes driven over HTTP (httpx, as a Gotenberg 9 client sends them) against a
real deployment: /forms/pdf/merge, split and select, a pipe of stages, a LibreOffice
conversion with stages, metadata written and read back under Gotenberg 9's names, an
unavailable op answering 501. Outputs are opened with pikepdf and read with pdftotext."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path

import httpx
import pikepdf
import pytest
from PIL import Image

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "real"
DOCX = CORPUS / "gotenberg-pages_12.docx"  # 12 pages
PDF = CORPUS / "gotenberg-pages_3.pdf"  # 3 pages: "Page 1", "Page 2", "Page 3"

pytestmark = pytest.mark.parametrize("deployment", ["local"], indirect=True)
# A first LibreOffice conversion starts its listener: room for it on a loaded machine
DEPLOYMENT_ENV = {"APPLIANCE_SYNC_TIMEOUT_SECONDS": "120"}


def pdf_text(data: bytes) -> str:
    """The PDF's text as poppler's pdftotext reads it (a reader independent of the engines)."""
    done = subprocess.run(["pdftotext", "-", "-"], input=data, capture_output=True, check=True)
    return done.stdout.decode()


def page_texts(data: bytes) -> list[str]:
    return [t.strip() for t in pdf_text(data).split("\f") if t.strip()]


@pytest.fixture
def post(deployment):
    key = deployment.key()

    def send(path: str, files: list[tuple[str, tuple[str, bytes]]], **data: str) -> httpx.Response:
        return httpx.post(
            f"{deployment.url}/forms/{path}",
            files=files,
            data=data,
            auth=("any-user", key),
            timeout=180,
        )

    return send


def pdfs(*names: str) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (name, PDF.read_bytes())) for name in names]


def test_merge_joins_the_pdfs_in_the_order_of_their_names(post):
    r = post("pdf/merge", pdfs("2-annex.pdf", "1-report.pdf"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    with pikepdf.open(io.BytesIO(r.content)) as pdf:
        assert len(pdf.pages) == 6
    assert page_texts(r.content) == ["Page 1", "Page 2", "Page 3"] * 2


def test_split_every_page_answers_a_zip_and_select_keeps_the_order_listed(post):
    r = post("pdf/split", pdfs("report.pdf"), every="1")
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        parts = [archive.read(n) for n in sorted(archive.namelist())]
    assert [page_texts(p) for p in parts] == [["Page 1"], ["Page 2"], ["Page 3"]]
    r = post("pdf/select", pdfs("report.pdf"), pages="3,1")
    assert r.status_code == 200, r.text
    assert page_texts(r.content) == ["Page 3", "Page 1"]


def test_pipe_runs_its_stages_in_order(post):
    stages = [
        {"op": "select", "pages": "1-2"},
        {"op": "stamp-text", "text": "DRAFT", "x": 72, "y": 72, "fontSize": 24},
        {"op": "rotate", "angle": 90, "pages": "2"},
    ]
    r = post("pdf/pipe", pdfs("report.pdf"), stages=json.dumps(stages))
    assert r.status_code == 200, r.text
    with pikepdf.open(io.BytesIO(r.content)) as pdf:
        assert [int(p.obj.get("/Rotate", 0)) for p in pdf.pages] == [0, 90]
    texts = page_texts(r.content)
    assert len(texts) == 2 and all("DRAFT" in t for t in texts)
    assert "Page 1" in texts[0] and "Page 2" in texts[1]


def test_rotate_sets_the_angle_whatever_the_page_had(post):
    turned = post("pdf/rotate", pdfs("report.pdf"), angle="90")
    assert turned.status_code == 200, turned.text
    again = post("pdf/rotate", [("files", ("turned.pdf", turned.content))], angle="90")
    with pikepdf.open(io.BytesIO(again.content)) as pdf:
        assert [int(p.obj.get("/Rotate", 0)) for p in pdf.pages] == [90, 90, 90]


def test_libreoffice_runs_the_stages_on_its_pdfs(post):
    stages = [{"op": "select", "pages": "2-3"}, {"op": "stamp-text", "text": "CONFIDENTIAL"}]
    r = post(
        "libreoffice/convert",
        [("files", ("d.docx", DOCX.read_bytes()))],
        stages=json.dumps(stages),
        nativePages="1-4",  # Gotenberg 9's name of nativePageRanges: the conversion's own
    )
    assert r.status_code == 200, r.text
    with pikepdf.open(io.BytesIO(r.content)) as pdf:
        assert len(pdf.pages) == 2
    assert all("CONFIDENTIAL" in t for t in page_texts(r.content))


def test_set_metadata_then_read_it_back_under_gotenberg_9_s_names(post):
    written = post("pdf/set-metadata", pdfs("report.pdf"), title="Annual report", author="Ada")
    assert written.status_code == 200, written.text
    with pikepdf.open(io.BytesIO(written.content)) as pdf:
        assert str(pdf.docinfo["/Title"]) == "Annual report"
    read = post("pdf/metadata", [("files", ("report.pdf", written.content))])
    assert read.status_code == 200, read.text
    found = read.json()["report.pdf"]
    assert found["title"] == "Annual report" and found["author"] == "Ada"
    assert "PageCount" not in found  # Gotenberg 9's names only


def test_a_stage_nothing_here_does_answers_501_naming_it(post):
    stages = [{"op": "merge"}, {"op": "sign", "certificate": "cert.pem"}]
    r = post("pdf/pipe", pdfs("a.pdf", "b.pdf"), stages=json.dumps(stages))
    assert r.status_code == 501
    assert r.headers["content-type"].startswith("text/plain")
    assert "'sign' stage" in r.text


def test_a_malformed_stage_list_is_a_400_in_gotenberg_s_shape(post):
    r = post("pdf/pipe", pdfs("a.pdf"), stages='[{"op": "rotate", "angle": 45}]')
    assert r.status_code == 400
    assert r.text == (
        "Invalid form data: stage 1 ('rotate') field 'angle' is invalid (got 45, want a"
        " multiple of 90)"
    )


def _images_drawn(page: pikepdf.Page) -> int:
    """The image XObjects a page draws, in its forms too (the stamp is a form XObject)."""
    found, todo = 0, [page.obj.get("/Resources", pikepdf.Dictionary())]
    while todo:
        xobjects = todo.pop().get("/XObject", pikepdf.Dictionary())
        for xobject in xobjects.values():
            if xobject.get("/Subtype") == "/Image":
                found += 1
            elif xobject.get("/Subtype") == "/Form":
                todo.append(xobject.get("/Resources", pikepdf.Dictionary()))
    return found


def test_chromium_page_stamped_with_an_image_the_stage_names(post):
    logo = io.BytesIO()
    Image.new("RGB", (40, 20), (0, 90, 200)).save(logo, "PNG")
    stages = [{"op": "stamp-image", "image": "logo.png", "x": 36, "y": 36, "width": 80}]
    files = [
        ("files", ("index.html", b"<html><body><h1>Invoice</h1></body></html>")),
        ("files", ("logo.png", logo.getvalue())),  # named by the stage: not an asset
    ]
    r = post("chromium/convert/html", files, stages=json.dumps(stages))
    assert r.status_code == 200, r.text
    with pikepdf.open(io.BytesIO(r.content)) as pdf:
        assert len(pdf.pages) == 1 and _images_drawn(pdf.pages[0]) == 1
    assert "Invoice" in pdf_text(r.content)


def test_attach_embeds_the_named_file_under_its_own_name(post):
    files = [*pdfs("report.pdf"), ("files", ("notes.txt", b"remember the annex"))]
    r = post("pdf/pipe", files, stages=json.dumps([{"op": "attach", "file": "notes.txt"}]))
    assert r.status_code == 200, r.text
    with pikepdf.open(io.BytesIO(r.content)) as pdf:
        assert list(pdf.attachments) == ["notes.txt"] and len(pdf.pages) == 3
        assert pdf.attachments["notes.txt"].get_file().read_bytes() == b"remember the annex"
