"""Hostile file names and contents through the whole API: upload -> convert -> export -> download.

A name is only a label: it never becomes a path, it is stored and served in a safe form (no path
parts, no control or invisible formatting characters, NFC, bounded length), and the download's
Content-Disposition carries it safely. A file whose name says one type and whose content is
another is refused, unless the engine the name points to takes the real type as well.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
import pyvips

from tests.e2e.conftest import task
from tests.e2e.test_flow import convert_inline

JOB = {
    "tasks": {
        "up": {"operation": "import/upload"},
        "c": {"operation": "convert", "input": "up", "output_format": "webp"},
        "e": {"operation": "export/url", "input": "c"},
    }
}
ESCAPE = f"escaped-{uuid.uuid4().hex}"
NAMES = {
    "dot-dot": f"../../../../../tmp/{ESCAPE}.png",
    "backslash": f"..\\..\\..\\tmp\\{ESCAPE}.png",
    "rtl-override": "invoice\u202egnp.exe.png",
    "nul-adjacent": "shot\x00\x01\x1f.png",
    "very-long": "\u00e9" * 400 + ".png",
    "nfd": "cafe\u0301 menu.png",
    "emoji": "\U0001f4f7 holiday \U0001f3d6\ufe0f.png",
}


def _raw_upload(form: dict, data: bytes, filename: str) -> httpx.Response:
    """A multipart upload whose file name goes out byte for byte (UTF-8, control characters
    and all, as a hostile client would send it), not escaped the way httpx would."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in form["parameters"].items()
    )
    body += (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
            "\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return httpx.post(
        form["url"],
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )


def _disposition_name(disposition: str) -> str | None:
    """The name a browser saves as: RFC 6266 prefers filename* (UTF-8) to filename."""
    extended = re.search(r"filename\*=UTF-8''([^;\s]+)", disposition)
    if extended:
        return unquote(extended.group(1))
    plain = re.search(r'filename="([^"]*)"', disposition)
    return plain.group(1) if plain else None


def _check_name(name: str) -> None:
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert all(unicodedata.category(ch)[0] != "C" for ch in name), ascii(name)
    assert unicodedata.is_normalized("NFC", name)
    assert len(name) <= 200 and len(name.encode()) <= 240
    assert name.endswith(".webp")


@pytest.mark.parametrize("name", list(NAMES.values()), ids=list(NAMES))
def test_odd_upload_names_are_stored_and_served_safely(deployment, png_file, tmp_path, name):
    with deployment.client(deployment.key()) as api:
        job = api.post("/v2/jobs", json=JOB).json()["data"]
        r = _raw_upload(task(job, "up")["result"]["form"], png_file.read_bytes(), name)
        assert r.status_code == 201, r.text
        job = api.get(f"/sync/v2/jobs/{job['id']}").json()["data"]
        assert job["status"] == "finished", job
    stored = task(job, "up")["result"]["files"][0]["filename"]
    assert "/" not in stored and "\\" not in stored
    exported = task(job, "e")["result"]["files"][0]
    _check_name(exported["filename"])
    got = httpx.get(exported["url"], timeout=30)
    assert got.status_code == 200
    assert pyvips.Image.new_from_buffer(got.content, "").get("vips-loader") == "webpload_buffer"
    disposition = got.headers.get("content-disposition", "")
    assert disposition.isascii() and "\n" not in disposition and "\r" not in disposition
    served = _disposition_name(disposition)
    assert served == exported["filename"], disposition
    # nothing was written where the name pointed
    for ext in ("png", "webp"):
        assert not Path(f"/tmp/{ESCAPE}.{ext}").exists()
        assert not (deployment.data_dir.parent / f"{ESCAPE}.{ext}").exists()


def _png_bytes() -> bytes:
    return bytes(pyvips.Image.black(16, 16).write_to_buffer(".png"))


def test_image_named_as_another_image_type_converts_as_what_it_is(deployment):
    """libvips, the engine a .jpg goes to, reads PNG as well: a safe success."""
    with deployment.client(deployment.key()) as api:
        job = convert_inline(api, "really-a-png.jpg", _png_bytes(), "webp")
    assert job["status"] == "finished", job
    assert task(job, "e")["result"]["files"][0]["filename"] == "really-a-png.webp"


@pytest.mark.parametrize(
    ("filename", "output_format", "data"),
    [
        ("report.docx", "pdf", None),  # a PNG: LibreOffice does not take images
        ("song.mp3", "wav", b"%PDF-1.4\n" + b"0" * 200),
        ("notes.pdf", "png", b"just some text, not a PDF\n" * 10),
        ("sheet.xlsx", "csv", b"plain text pretending to be a workbook\n"),
    ],
)
def test_content_of_another_type_is_invalid_input(deployment, filename, output_format, data):
    with deployment.client(deployment.key()) as api:
        job = convert_inline(api, filename, data or _png_bytes(), output_format)
    assert job["status"] == "error", job
    failed = task(job, "c")
    assert failed["status"] == "error" and failed["code"] == "INVALID_INPUT_FILE", failed
