"""thumbnail (also several per file), archive and metadata (of every input) tasks, and data
conversions, through the HTTP API: files go in as base64 imports, results are downloaded and
opened (pyvips, zipfile, tarfile, openpyxl, PDFium) or read from the task result."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import httpx
import openpyxl
import pypdfium2
import pytest
import pyvips

from appliance.engines.pdftools import ImagePdfOptions, ImagesToPdfEngine
from tests.e2e.conftest import base64_import, downloads, run_job, task
from tests.integration.engines.pdfa import pdfa_problems

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200">'
    '<rect width="400" height="200" fill="#36c"/></svg>'
)


def _download(job: dict, name: str = "e") -> list[bytes]:
    return [data for _, data in downloads(job, name, timeout=30)]


def _thumbnail_job(api, filename: str, data: bytes, **options) -> dict:
    return run_job(
        api,
        {
            "in": base64_import(filename, data),
            "t": {"operation": "thumbnail", "input": "in", **options},
            "e": {"operation": "export/url", "input": "t"},
        },
    )


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("ops-in")
    (root / "in.svg").write_text(SVG)
    svg = str(root / "in.svg")
    subprocess.run(["rsvg-convert", "-f", "pdf", "-o", str(root / "two.pdf"), svg, svg], check=True)
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:d=1"),
            *("-pix_fmt", "yuv420p", str(root / "clip.mp4")),
        ],
        check=True,
    )
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=2", str(root / "a.mp3")],
        check=True,
    )
    (root / "letter.md").write_text("# Dear reader\n\nA page to look at.\n")
    subprocess.run(["pandoc", "-o", str(root / "letter.docx"), str(root / "letter.md")], check=True)
    pyvips.Image.black(300, 150).write_to_file(str(root / "dark.png"))
    return {p.name: p.read_bytes() for p in root.iterdir()}


def test_thumbnail_of_a_png(deployment, samples):
    with deployment.client(deployment.key()) as api:
        job = _thumbnail_job(api, "dark.png", samples["dark.png"], output_format="webp", width=90)
        assert job["status"] == "finished", job
        assert task(job, "t")["result"]["files"][0]["filename"] == "dark.webp"
        image = pyvips.Image.new_from_buffer(_download(job)[0], "")
        assert (image.width, image.height) == (90, 45)


def test_thumbnail_of_a_pdf_is_its_first_page(deployment, samples):
    with deployment.client(deployment.key()) as api:
        job = _thumbnail_job(
            api,
            "two.pdf",
            samples["two.pdf"],
            output_format="png",
            width=100,
            height=100,
            fit="crop",
        )
        assert job["status"] == "finished", job
        files = _download(job)
        assert len(files) == 1
        image = pyvips.Image.new_from_buffer(files[0], "")
        assert (image.width, image.height) == (100, 100)
        assert image.getpoint(50, 50)[:3] == pytest.approx([0x33, 0x66, 0xCC], abs=3)


def test_thumbnail_of_a_docx_goes_through_libreoffice(deployment, samples):
    with deployment.client(deployment.key()) as api:
        job = _thumbnail_job(
            api, "letter.docx", samples["letter.docx"], output_format="jpg", width=120
        )
        assert job["status"] == "finished", job
        route = task(job, "t")["result"]["route"]
        assert [h["engine"] for h in route] == ["libreoffice", "thumbnail"]
        image = pyvips.Image.new_from_buffer(_download(job)[0], "")
        assert image.width == 120 and image.height > 120  # a portrait page
    rows = deployment.sql("SELECT queue FROM tasks WHERE name = 't' ORDER BY created_at DESC")
    assert rows[0]["queue"] == "office"


def test_thumbnail_of_a_video_is_a_frame(deployment, samples):
    with deployment.client(deployment.key()) as api:
        job = _thumbnail_job(
            api,
            "clip.mp4",
            samples["clip.mp4"],
            output_format="jpg",
            height=60,
            timestamp="00:00:00.5",
        )
        assert job["status"] == "finished", job
        image = pyvips.Image.new_from_buffer(_download(job)[0], "")
        assert (image.width, image.height) == (80, 60)
    rows = deployment.sql("SELECT queue FROM tasks WHERE name = 't' ORDER BY created_at DESC")
    assert rows[0]["queue"] == "media"


def test_thumbnail_count_gives_pages_of_a_pdf_and_frames_of_a_video(deployment, samples):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "pdf": base64_import("two.pdf", samples["two.pdf"]),
                "video": base64_import("clip.mp4", samples["clip.mp4"]),
                "tp": {
                    "operation": "thumbnail",
                    "input": "pdf",
                    "output_format": "png",
                    "width": 50,
                    "count": 3,
                },
                "tv": {
                    "operation": "thumbnail",
                    "input": "video",
                    "output_format": "jpg",
                    "height": 30,
                    "count": 2,
                },
                "e": {"operation": "export/url", "input": ["tp", "tv"]},
            },
        )
        assert job["status"] == "finished", job
        names = [f["filename"] for f in task(job, "e")["result"]["files"]]
        assert names == ["two-1.png", "two-2.png", "clip-1.jpg", "clip-2.jpg"]
        sizes = [pyvips.Image.new_from_buffer(data, "") for data in _download(job)]
        assert [(i.width, i.height) for i in sizes] == [(50, 25), (50, 25), (40, 30), (40, 30)]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"output_format": "gif"}, "tasks.t.output_format"),
        ({"output_format": "png", "fit": "stretch"}, "tasks.t.fit"),
        ({"output_format": "png", "width": 0}, "tasks.t.width"),
        ({"output_format": "png", "count": 101}, "tasks.t.count"),
    ],
)
def test_bad_thumbnail_options_are_422(deployment, options, field):
    with deployment.client(deployment.key()) as api:
        r = api.post(
            "/v2/jobs",
            json={
                "tasks": {
                    "in": base64_import("a.png", b"x"),
                    "t": {"operation": "thumbnail", "input": "in", **options},
                }
            },
        )
        assert r.status_code == 422, r.text
        assert field in r.json()["errors"]


def test_thumbnail_of_audio_is_refused_at_creation(deployment):
    with deployment.client(deployment.key()) as api:
        r = api.post(
            "/v2/jobs",
            json={
                "tasks": {
                    "in": base64_import("a.mp3", b"x"),
                    "t": {"operation": "thumbnail", "input": "in", "output_format": "png"},
                }
            },
        )
        assert r.status_code == 422, r.text
        assert "no thumbnail can be made from mp3" in r.json()["errors"]["tasks.t.input"][0]


def _archive_job(api, fmt: str) -> dict:
    return run_job(
        api,
        {
            "one": base64_import("notes.txt", b"first file\n"),
            "two": base64_import("../../etc/notes.txt", b"second file\n"),
            "three": base64_import("data.bin", bytes(range(256)) * 1000),
            "a": {"operation": "archive", "input": ["one", "two", "three"], "output_format": fmt},
            "e": {"operation": "export/url", "input": "a"},
        },
    )


WANT = {
    "notes.txt": b"first file\n",
    "notes-2.txt": b"second file\n",
    "data.bin": bytes(range(256)) * 1000,
}


def test_archive_zip_holds_every_file_under_a_safe_name(deployment):
    with deployment.client(deployment.key()) as api:
        job = _archive_job(api, "zip")
        assert job["status"] == "finished", job
        assert task(job, "a")["result"]["files"][0]["filename"] == "archive.zip"
        with zipfile.ZipFile(io.BytesIO(_download(job)[0])) as z:
            assert z.namelist() == list(WANT)
            assert z.testzip() is None
            assert {n: z.read(n) for n in z.namelist()} == WANT


def test_archive_tar_gz_holds_every_file_under_a_safe_name(deployment):
    with deployment.client(deployment.key()) as api:
        job = _archive_job(api, "tar.gz")
        assert job["status"] == "finished", job
        with tarfile.open(fileobj=io.BytesIO(_download(job)[0]), mode="r:gz") as tar:
            members = tar.getmembers()
            assert [m.name for m in members] == list(WANT)
            assert all(m.isfile() and m.mode == 0o644 for m in members)
            assert {m.name: tar.extractfile(m).read() for m in members} == WANT


def test_archive_to_rar_is_422(deployment):
    with deployment.client(deployment.key()) as api:
        r = api.post(
            "/v2/jobs",
            json={
                "tasks": {
                    "in": base64_import("a.txt", b"x"),
                    "a": {"operation": "archive", "input": "in", "output_format": "rar"},
                }
            },
        )
        assert r.status_code == 422 and "tasks.a.output_format" in r.json()["errors"]


def test_metadata_of_an_image_a_pdf_and_audio(deployment, samples):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "img": base64_import("dark.png", samples["dark.png"]),
                "pdf": base64_import("two.pdf", samples["two.pdf"]),
                "mp3": base64_import("a.mp3", samples["a.mp3"]),
                "m1": {"operation": "metadata", "input": "img"},
                "m2": {"operation": "metadata", "input": "pdf"},
                "m3": {"operation": "metadata", "input": "mp3"},
            },
        )
        assert job["status"] == "finished", job
        image = task(job, "m1")["result"]["metadata"]
        assert (image["FileType"], image["ImageWidth"], image["ImageHeight"]) == ("PNG", 300, 150)
        assert image["FileName"] == "dark.png" and image["FileSize"] == len(samples["dark.png"])
        pdf = task(job, "m2")["result"]["metadata"]
        assert pdf["PageCount"] == 2
        audio = task(job, "m3")["result"]["metadata"]
        assert audio["Duration"] == pytest.approx(2.0, abs=0.1)
        assert audio["Streams"][0]["Type"] == "audio"


def test_metadata_reads_every_input_and_keeps_the_first_as_metadata(deployment, samples):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "img": base64_import("dark.png", samples["dark.png"]),
                "pdf": base64_import("two.pdf", samples["two.pdf"]),
                "mp3": base64_import("a.mp3", samples["a.mp3"]),
                "m": {"operation": "metadata", "input": ["img", "pdf", "mp3"]},
            },
        )
        assert job["status"] == "finished", job
        result = task(job, "m")["result"]
    files = result["files"]
    assert [(f["filename"], f["size"]) for f in files] == [
        (name, len(samples[name])) for name in ("dark.png", "two.pdf", "a.mp3")
    ]
    assert [f["metadata"]["FileName"] for f in files] == ["dark.png", "two.pdf", "a.mp3"]
    assert files[0]["metadata"]["ImageWidth"] == 300
    assert files[1]["metadata"]["PageCount"] == 2
    assert files[2]["metadata"]["Duration"] == pytest.approx(2.0, abs=0.1)
    assert result["metadata"] == files[0]["metadata"]  # CloudConvert's shape: one record


def test_metadata_of_a_bad_input_among_good_ones_fails_the_task(deployment, samples):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "img": base64_import("dark.png", samples["dark.png"]),
                "bad": base64_import("cut.png", samples["dark.png"][:60]),
                "m": {"operation": "metadata", "input": ["img", "bad"]},
            },
        )
    assert job["status"] == "error"
    assert task(job, "m")["code"] == "INVALID_INPUT_FILE"


def test_metadata_single_task_route(deployment, samples):
    with deployment.client(deployment.key()) as api:
        imp = api.post("/v2/import/base64", json=base64_import("dark.png", samples["dark.png"]))
        assert imp.status_code == 201, imp.text
        meta = api.post("/v2/metadata", json={"input": imp.json()["data"]["id"]})
        assert meta.status_code == 201, meta.text
        done = api.get(f"/sync/v2/tasks/{meta.json()['data']['id']}").json()["data"]
        assert done["status"] == "finished", done
        assert done["result"]["metadata"]["ImageWidth"] == 300
        assert [f["metadata"] for f in done["result"]["files"]] == [done["result"]["metadata"]]


def test_csv_to_xlsx_runs_the_data_engine(deployment):
    csv = b'city,people\nOslo,709000\n"Bergen, NO",291000\n'
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("cities.csv", csv),
                "c": {"operation": "convert", "input": "in", "output_format": "xlsx"},
                "e": {"operation": "export/url", "input": "c"},
            },
        )
        assert job["status"] == "finished", job
        assert task(job, "c")["engine"] == "data"
        book = openpyxl.load_workbook(io.BytesIO(_download(job)[0]), read_only=True)
        rows = [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
        assert rows == [["city", "people"], ["Oslo", 709000], ["Bergen, NO", 291000]]


def test_json_to_pdf_routes_through_the_data_engine_then_libreoffice(deployment):
    records = [{"item": "Teapot", "price": 12.5, "code": "007"}, {"item": "Kettle", "price": 30}]
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("prices.json", json.dumps(records).encode()),
                "c": {"operation": "convert", "input": "in", "output_format": "pdf"},
                "e": {"operation": "export/url", "input": "c"},
            },
        )
        assert job["status"] == "finished", job
        route = task(job, "c")["result"]["route"]
        assert [(h["to"], h["engine"]) for h in route] == [("ods", "data"), ("pdf", "libreoffice")]
        pdf = pypdfium2.PdfDocument(_download(job)[0])
        text = pdf[0].get_textpage().get_text_bounded()
        assert "Teapot" in text and "Kettle" in text
        assert "007" in text and "12.5" in text  # text stays text, numbers stay numbers


@pytest.mark.parametrize(
    ("filename", "content", "target", "says"),
    [
        ("broken.csv", b'a,b\n1,"never closed\n', "json", "not a readable table"),
        ("broken.json", b'[{"a": 1}, {"a": ', "csv", "not a readable table"),
        # zip containers are checked before any engine opens them
        ("broken.xlsx", b"PK\x03\x04" + b"\0" * 300, "csv", "not a sound zip container"),
    ],
)
def test_malformed_data_fails_with_invalid_input(deployment, filename, content, target, says):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import(filename, content),
                "c": {"operation": "convert", "input": "in", "output_format": target},
            },
        )
        assert job["status"] == "error", job
        failed = task(job, "c")
        assert failed["code"] == "INVALID_INPUT_FILE", failed
        assert says in failed["message"]


# -- CloudConvert's PDF tasks ---------------------------------------------------------------------
CORPUS = Path(__file__).parents[3] / "shared" / "corpus" / "real"
THREE_PAGES = "gotenberg-pages_3.pdf"  # "Page 1" .. "Page 3"


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory):
    """A real three-page PDF, a scan (a picture of words, no text) and a red logo."""
    root = tmp_path_factory.mktemp("pdf-tasks")
    ink = pyvips.Image.text("Lighthouse keepers log", dpi=300, font="sans 24")
    page = (
        (255 - ink).cast("uchar").embed(60, 60, ink.width + 120, ink.height + 120, extend="white")
    )
    page.copy(xres=300 / 25.4, yres=300 / 25.4).write_to_file(str(root / "scan.png"))
    ImagesToPdfEngine().convert(
        root / "scan.png", root / "scan.pdf", "png", "pdf", ImagePdfOptions(), lambda f: None
    )
    pyvips.Image.black(100, 50).new_from_image([230, 20, 20]).write_to_file(str(root / "logo.png"))
    return {
        THREE_PAGES: (CORPUS / THREE_PAGES).read_bytes(),
        "scan.pdf": (root / "scan.pdf").read_bytes(),
        "logo.png": (root / "logo.png").read_bytes(),
    }


def _poppler(tool: str, data: bytes, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "check.pdf"
    path.write_bytes(data)
    out = ["-"] if tool == "pdftotext" else []  # to stdout
    return subprocess.run([tool, *args, str(path), *out], capture_output=True, text=True)


def _pdf_task_job(api, pdfs, name, **fields) -> dict:
    return run_job(
        api,
        {
            "in": base64_import(name, pdfs[name]),
            "t": {"input": "in", **fields},
            "e": {"operation": "export/url", "input": "t"},
        },
    )


def test_extract_pages_gives_the_pages_asked_for(deployment, pdfs, tmp_path):
    with deployment.client(deployment.key()) as api:
        job = _pdf_task_job(api, pdfs, THREE_PAGES, operation="pdf/extract-pages", pages="3,1")
    assert job["status"] == "finished", job
    [(name, data)] = downloads(job)
    assert name == THREE_PAGES
    assert _poppler("pdftotext", data, tmp_path).stdout.split() == ["Page", "3", "Page", "1"]


def test_pdf_a_3b_passes_the_checks_of_its_part(deployment, pdfs, tmp_path):
    with deployment.client(deployment.key()) as api:
        job = _pdf_task_job(api, pdfs, THREE_PAGES, operation="pdf/a", conformance_level="3b")
    assert job["status"] == "finished", job
    out = tmp_path / "a.pdf"
    out.write_bytes(_download(job)[0])
    assert pdfa_problems(out, 3) == []


def test_pdf_ocr_makes_a_scan_searchable(deployment, pdfs, tmp_path):
    assert _poppler("pdftotext", pdfs["scan.pdf"], tmp_path).stdout.split() == []  # control
    with deployment.client(deployment.key()) as api:
        job = _pdf_task_job(api, pdfs, "scan.pdf", operation="pdf/ocr", language=["eng"])
    assert job["status"] == "finished", job
    assert task(job, "t")["engine"] == "ocrmypdf"
    text = _poppler("pdftotext", _download(job)[0], tmp_path).stdout.split()
    assert text == ["Lighthouse", "keepers", "log"]


def test_encrypt_then_decrypt_with_passwords_never_shown(deployment, pdfs, tmp_path):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import(THREE_PAGES, pdfs[THREE_PAGES]),
                "lock": {"operation": "pdf/encrypt", "input": "in", "set_password": "s3cret pw",
                         "allow_print": False},
                "unlock": {"operation": "pdf/decrypt", "input": "lock", "password": "s3cret pw"},
                "e": {"operation": "export/url", "input": ["lock", "unlock"]},
            },
        )  # fmt: skip
        assert job["status"] == "finished", job
        shown = api.get(f"/v2/jobs/{job['id']}").text
    assert "s3cret" not in json.dumps(job) and "s3cret" not in shown
    locked, unlocked = _download(job)
    assert _poppler("pdfinfo", locked, tmp_path).returncode != 0  # needs the password
    info = _poppler("pdfinfo", locked, tmp_path, "-upw", "s3cret pw").stdout
    assert "print:no" in info and "AES-256" in info
    text = _poppler("pdftotext", unlocked, tmp_path).stdout.split()
    assert text == ["Page", "1", "Page", "2", "Page", "3"]


def test_embed_attaches_files_of_other_tasks_under_their_names(deployment, pdfs, tmp_path):
    note, table = b"a note\n", b"a,b\n1,2\n"
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import(THREE_PAGES, pdfs[THREE_PAGES]),
                "note": base64_import("note.txt", note),
                "table": base64_import("note.txt", table),  # the same name: numbered
                "t": {"operation": "pdf/embed", "input": "in", "attachments": ["note", "table"]},
                "e": {"operation": "export/url", "input": "t"},
            },
        )
        assert job["status"] == "finished", job
        assert task(job, "t")["engine"] == "pdf-embed"
    (data,) = _download(job)
    path = tmp_path / "embedded.pdf"
    path.write_bytes(data)
    listed = subprocess.run(["pdfdetach", "-list", str(path)], capture_output=True, text=True)
    numbers = dict(line.split(": ")[::-1] for line in listed.stdout.splitlines()[1:])
    assert sorted(numbers) == ["note-2.txt", "note.txt"]
    for name, content in (("note.txt", note), ("note-2.txt", table)):
        saved = tmp_path / name
        subprocess.run(
            ["pdfdetach", "-save", numbers[name], "-o", str(saved), str(path)], check=True
        )
        assert saved.read_bytes() == content
    assert _poppler("pdftotext", data, tmp_path).stdout.split() == [
        "Page",
        "1",
        "Page",
        "2",
        "Page",
        "3",
    ]


def test_decrypt_with_a_wrong_password_fails_with_invalid_password(deployment, pdfs):
    locked = (CORPUS / "pypdf-libreoffice-writer-password.pdf").read_bytes()
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("locked.pdf", locked),
                "t": {"operation": "pdf/decrypt", "input": "in", "password": "guess"},
            },
        )
    assert job["status"] == "error"
    assert task(job, "t")["code"] == "INVALID_PASSWORD"


def test_watermark_with_text_and_with_an_image_task(deployment, pdfs, tmp_path):
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import(THREE_PAGES, pdfs[THREE_PAGES]),
                "logo": base64_import("logo.png", pdfs["logo.png"]),
                "text": {"operation": "watermark", "input": "in", "text": "CONFIDENTIAL",
                         "pages": "2", "font_size": 30},
                "image": {"operation": "watermark", "input": "in", "image": "logo",
                          "image_width": 200, "opacity": 100},
                "e": {"operation": "export/url", "input": ["text", "image"]},
            },
        )  # fmt: skip
    assert job["status"] == "finished", job
    stamped, with_logo = _download(job)
    pages = _poppler("pdftotext", stamped, tmp_path).stdout.split("\f")
    assert ["CONFIDENTIAL" in p for p in pages[:3]] == [False, True, False]
    doc = pypdfium2.PdfDocument(with_logo)
    image = doc[0].render(scale=1).to_pil().convert("RGB")
    red = image.getpixel((image.width // 2, image.height // 2))  # centred by default
    doc.close()
    assert red[0] > 200 and red[1] < 60


def test_watermark_on_a_jpg_makes_a_jpg_with_the_text(deployment, pdfs):
    photo = pyvips.Image.black(400, 300).new_from_image([200, 200, 200]).jpegsave_buffer()
    with deployment.client(deployment.key()) as api:
        job = run_job(
            api,
            {
                "in": base64_import("photo.jpg", photo),
                "t": {"operation": "watermark", "input": "in", "text": "SAMPLE", "font_size": 60,
                      "font_color": "#000000"},
                "e": {"operation": "export/url", "input": "t"},
            },
        )  # fmt: skip
    assert job["status"] == "finished", job
    [(name, data)] = downloads(job)
    out = pyvips.Image.new_from_buffer(data, "")
    assert name == "photo.jpg" and out.get("vips-loader") == "jpegload_buffer"
    assert (out.width, out.height) == (400, 300)
    assert out.extract_band(0).min() < 60 and out.getpoint(5, 5)[0] > 190  # ink in the middle


def test_metadata_write_sets_the_document_information(deployment, pdfs, tmp_path):
    with deployment.client(deployment.key()) as api:
        job = _pdf_task_job(
            api, pdfs, THREE_PAGES, operation="metadata/write",
            metadata={"Title": "Annual report", "Author": "Finance"},
        )  # fmt: skip
    assert job["status"] == "finished", job
    info = _poppler("pdfinfo", _download(job)[0], tmp_path).stdout
    assert "Annual report" in info and "Finance" in info


def test_bad_pdf_task_fields_are_422_naming_the_field(deployment, pdfs):
    with deployment.client(deployment.key()) as api:
        r = api.post(
            "/v2/jobs",
            json={
                "tasks": {
                    "in": base64_import(THREE_PAGES, pdfs[THREE_PAGES]),
                    "w": {"operation": "watermark", "input": "in", "text": "x", "opacity": 101},
                    "a": {"operation": "pdf/a", "input": "in", "conformance_level": "4b"},
                    "p": {"operation": "pdf/encrypt", "input": "in"},
                }
            },
        )
    assert r.status_code == 422, r.text
    assert {"tasks.w.opacity", "tasks.a.conformance_level", "tasks.p.set_password"} <= set(
        r.json()["errors"]
    )


def test_extract_pages_single_task_route(deployment, pdfs, tmp_path):
    with deployment.client(deployment.key()) as api:
        imp = api.post("/v2/import/base64", json=base64_import(THREE_PAGES, pdfs[THREE_PAGES]))
        assert imp.status_code == 201, imp.text
        t = api.post(
            "/v2/pdf/extract-pages", json={"input": imp.json()["data"]["id"], "pages": "2"}
        )
        assert t.status_code == 201, t.text
        done = api.get(f"/sync/v2/tasks/{t.json()['data']['id']}").json()["data"]
        assert done["status"] == "finished", done
        exp = api.post("/v2/export/url", json={"input": done["id"]})
        assert exp.status_code == 201, exp.text
        exported = api.get(f"/sync/v2/tasks/{exp.json()['data']['id']}").json()["data"]
    data = httpx.get(exported["result"]["files"][0]["url"], timeout=30).content
    assert _poppler("pdftotext", data, tmp_path).stdout.split() == ["Page", "2"]
