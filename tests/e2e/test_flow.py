"""The whole client flow over HTTP: create, upload, wait, download."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pikepdf
import pyvips

from tests.e2e.conftest import base64_import, run_job, task, upload

JOB = {
    "tasks": {
        "up": {"operation": "import/upload"},
        "c": {"operation": "convert", "input": "up", "output_format": "webp", "width": 200},
        "e": {"operation": "export/url", "input": "c"},
    },
    "tag": "flow",
}


def test_upload_convert_export_download(deployment, png_file, tmp_path):
    with deployment.client(deployment.key()) as api:
        r = api.post("/v2/jobs", json=JOB)
        assert r.status_code == 201, r.text
        job = r.json()["data"]
        assert [t["name"] for t in job["tasks"]] == ["up", "c", "e"]
        assert job["tag"] == "flow" and job["status"] == "waiting"
        up = upload(task(job, "up")["result"]["form"], png_file)
        assert up.status_code == 201, up.text
        r = api.get(f"/sync/v2/jobs/{job['id']}")
        job = r.json()["data"]
        assert job["status"] == "finished", job
        files = task(job, "e")["result"]["files"]
        assert files[0]["filename"] == "photo.webp"
        body = httpx.get(files[0]["url"], timeout=30)
        assert body.status_code == 200
        out = tmp_path / "o.webp"
        out.write_bytes(body.content)
        img = pyvips.Image.new_from_file(str(out))
        assert (img.width, img.height) == (200, 150)
        assert len(body.content) == files[0]["size"]


def test_wait_route_and_task_sync_route_block_until_the_end(deployment, png_file):
    with deployment.client(deployment.key()) as api:
        job = api.post("/v2/jobs", json=JOB).json()["data"]
        upload(task(job, "up")["result"]["form"], png_file)
        conv = api.get(f"/sync/v2/tasks/{task(job, 'c')['id']}").json()["data"]
        assert conv["status"] == "finished" and conv["percent"] == 100
        assert api.get(f"/v2/jobs/{job['id']}/wait").json()["data"]["status"] == "finished"


def test_single_task_routes_chain_by_task_id(deployment, png_file):
    with deployment.client(deployment.key()) as api:
        up = api.post("/v2/import/upload", json={})
        assert up.status_code == 201, up.text
        up = up.json()["data"]
        assert upload(up["result"]["form"], png_file).status_code == 201
        conv = api.post(
            "/v2/convert", json={"input": up["id"], "output_format": "jpg", "quality": 70}
        )
        assert conv.status_code == 201, conv.text
        conv = conv.json()["data"]
        exp = api.post("/v2/export/url", json={"input": [conv["id"]]}).json()["data"]
        exp = api.get(f"/sync/v2/tasks/{exp['id']}").json()["data"]
        assert exp["status"] == "finished", exp
        assert exp["result"]["files"][0]["filename"] == "photo.jpg"
        jpg = pyvips.Image.new_from_buffer(httpx.get(exp["result"]["files"][0]["url"]).content, "")
        png = pyvips.Image.new_from_file(str(png_file))
        assert (jpg.get("vips-loader"), jpg.width, jpg.height) == (
            "jpegload_buffer",
            png.width,
            png.height,
        )


def convert_inline(api, filename: str, data: bytes, output_format: str, **options) -> dict:
    """A job that imports ``data`` as base64, converts it and exports the result; returns the
    job once it has ended (sync API). The job must be accepted."""
    return run_job(
        api,
        {
            "in": base64_import(filename, data),
            "c": {"operation": "convert", "input": "in", "output_format": output_format, **options},
            "e": {"operation": "export/url", "input": "c"},
        },
    )


def _downloaded(job: dict, tmp_path: Path) -> list[Path]:
    """The export task's files, downloaded into ``tmp_path`` under their names."""
    out = []
    for f in task(job, "e")["result"]["files"]:
        r = httpx.get(f["url"], timeout=30)
        assert r.status_code == 200 and len(r.content) == f["size"]
        out.append(tmp_path / f["filename"])
        out[-1].write_bytes(r.content)
    return out


def _pdf_text(path: Path) -> list[str]:
    """Each page's text as pdftotext reads it, whitespace collapsed."""
    with pikepdf.open(path) as pdf:
        count = len(pdf.pages)
    pages = []
    for n in range(1, count + 1):
        text = subprocess.run(
            ["pdftotext", "-f", str(n), "-l", str(n), str(path), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pages.append(" ".join(text.split()))
    return pages


def _probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _last_convert_queue(deployment) -> str:
    rows = deployment.sql(
        "SELECT queue FROM tasks WHERE name = 'c' AND operation = 'convert'"
        " ORDER BY created_at DESC LIMIT 1"
    )
    return rows[0]["queue"]


def test_multi_hop_route_svg_to_webp_through_two_engines(deployment, tmp_path):
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="50">'
        '<rect width="100" height="50" fill="#36c"/></svg>'
    )
    with deployment.client(deployment.key()) as api:
        job = convert_inline(api, "logo.svg", svg.encode(), "webp")
        assert job["status"] == "finished", job
        conv = task(job, "c")
        assert [h["engine"] for h in conv["result"]["route"]] == ["rsvg", "vips"]
        assert conv["engine"] == "rsvg+vips"
        webp = _downloaded(job, tmp_path)[0]
        image = pyvips.Image.new_from_file(str(webp))
        assert (image.width, image.height) == (100, 50)
        pixel = image.getpoint(50, 25)[:3]
        assert all(abs(v - want) <= 3 for v, want in zip(pixel, (0x33, 0x66, 0xCC), strict=True))


def test_audio_conversion_runs_on_the_media_queue(deployment, tmp_path):
    wav = tmp_path / "tone.wav"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1", str(wav)], check=True
    )
    with deployment.client(deployment.key()) as api:
        job = convert_inline(api, "tone.wav", wav.read_bytes(), "mp3", audio_bitrate=96)
        assert job["status"] == "finished", job
        assert task(job, "c")["result"]["files"][0]["filename"] == "tone.mp3"
        probe = _probe(_downloaded(job, tmp_path)[0])
        [stream] = probe["streams"]
        assert stream["codec_name"] == "mp3" and stream["sample_rate"] == "44100"
        assert abs(float(probe["format"]["duration"]) - 1.0) < 0.1
        assert abs(int(stream["bit_rate"]) - 96000) <= 8000
    assert _last_convert_queue(deployment) == "media"


def test_docx_to_pdf_runs_warm_libreoffice_on_the_office_queue(deployment, tmp_path):
    md = tmp_path / "letter.md"
    md.write_text("# Dear reader\n\nThis became a PDF.\n")
    docx = tmp_path / "letter.docx"
    subprocess.run(["pandoc", "-o", str(docx), str(md)], check=True)
    with deployment.client(deployment.key()) as api:
        job = convert_inline(api, "letter.docx", docx.read_bytes(), "pdf")
        assert job["status"] == "finished", job
        assert task(job, "c")["engine"] == "libreoffice"
        [pdf] = _downloaded(job, tmp_path)
        assert _pdf_text(pdf) == ["Dear reader This became a PDF."]
    assert _last_convert_queue(deployment) == "office"


def test_markdown_to_pdf_routes_through_pandoc_then_chromium(deployment, tmp_path):
    md = b"# Report\n\nRouted over two engines.\n"
    with deployment.client(deployment.key()) as api:
        job = convert_inline(api, "report.md", md, "pdf")
        assert job["status"] == "finished", job
        route = task(job, "c")["result"]["route"]
        assert [(h["from"], h["to"], h["engine"]) for h in route] == [
            ("md", "html", "pandoc"),
            ("html", "pdf", "chromium"),
        ]
        assert task(job, "c")["result"]["files"][0]["filename"] == "report.pdf"
        [pdf] = _downloaded(job, tmp_path)
        assert _pdf_text(pdf) == ["Report Routed over two engines."]


def test_slides_to_png_gives_one_file_per_page(deployment, tmp_path):
    md = tmp_path / "deck.md"
    md.write_text("# One\n\nFirst.\n\n# Two\n\nSecond.\n")
    pptx = tmp_path / "deck.pptx"
    subprocess.run(["pandoc", "-o", str(pptx), str(md)], check=True)
    with deployment.client(deployment.key()) as api:
        job = convert_inline(api, "deck.pptx", pptx.read_bytes(), "png", pixel_density=50)
        assert job["status"] == "finished", job
        conv = task(job, "c")
        assert [h["engine"] for h in conv["result"]["route"]] == ["libreoffice", "pdfium"]
        files = task(job, "e")["result"]["files"]
        assert [f["filename"] for f in files] == ["deck-1.png", "deck-2.png"]
        pages = [pyvips.Image.new_from_file(str(p)) for p in _downloaded(job, tmp_path)]
        # pandoc's slides are 10 x 5.625 inches (16:9): 500 x 282 px at 50 dpi
        assert [(p.width, p.height) for p in pages] == [(500, 282)] * 2
        assert (pages[0] - pages[1]).abs().max() > 0  # two slides, not one twice


def test_uploaded_office_document_moves_to_the_office_queue_once_named(deployment, tmp_path):
    """An upload names its file only when it arrives: its convert starts on `light` and is
    moved to the route's queue before it is enqueued (LibreOffice never runs on `light`)."""
    md = tmp_path / "memo.md"
    md.write_text("# Memo\n\nUploaded, then converted.\n")
    docx = tmp_path / "memo.docx"
    subprocess.run(["pandoc", "-o", str(docx), str(md)], check=True)
    job_spec = {
        "tasks": {
            "up": {"operation": "import/upload"},
            "c": {"operation": "convert", "input": "up", "output_format": "pdf"},
            "e": {"operation": "export/url", "input": "c"},
        }
    }
    with deployment.client(deployment.key()) as api:
        job = api.post("/v2/jobs", json=job_spec).json()["data"]
        assert _last_convert_queue(deployment) == "light"
        assert upload(task(job, "up")["result"]["form"], docx).status_code == 201
        job = api.get(f"/sync/v2/jobs/{job['id']}").json()["data"]
        assert job["status"] == "finished", job
        assert task(job, "c")["engine"] == "libreoffice"
    assert _last_convert_queue(deployment) == "office"
