"""The form reader: values kept, each file part spooled on its own in the order it came,
header.html and footer.html also kept as text; malformed or oversized forms refused in
Gotenberg's words."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from appliance.api.gotenberg.fields import GotenbergError
from appliance.api.gotenberg.form import FormReader
from appliance.conversions.files import Spool


def body(files: list[tuple[str, tuple[str, bytes]]], data: dict[str, str]) -> tuple[str, bytes]:
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.headers["content-type"], request.read()


async def chunks(data: bytes, size: int = 7):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def read(ctype: str, data: bytes, tmp_path: Path, limit: int = 1 << 20) -> FormReader:
    reader = FormReader(ctype, lambda: Spool(tmp_path, limit))
    asyncio.run(reader.read(chunks(data)))
    return reader


def test_values_and_files_are_read_in_order(tmp_path):
    files = [("files", ("b.pdf", b"B" * 100)), ("files", ("footer.html", b"<p>f</p>"))]
    ctype, data = body(files, {"merge": "true", "metadata": '{"a": 1}'})
    reader = read(ctype, data, tmp_path)
    try:
        assert reader.form.values == {"merge": "true", "metadata": '{"a": 1}'}
        assert [(f.name, f.field) for f in reader.form.files] == [
            ("b.pdf", "files"),
            ("footer.html", "files"),
        ]
        assert reader.spools[0].path.read_bytes() == b"B" * 100
        assert reader.form.texts == {"footer.html": "<p>f</p>"}
    finally:
        reader.close()
    assert not any(s.path.exists() for s in reader.spools)


def test_a_file_past_the_limit_is_413(tmp_path):
    ctype, data = body([("f", ("a.pdf", b"x" * 500))], {})
    with pytest.raises(GotenbergError) as err:
        read(ctype, data, tmp_path, limit=100)
    assert err.value.status == 413


def test_a_cut_off_body_is_malformed(tmp_path):
    ctype, data = body([("f", ("a.pdf", b"x" * 500))], {})
    with pytest.raises(GotenbergError, match="Malformed body") as err:
        read(ctype, data[:-30], tmp_path)
    assert err.value.status == 400


def test_another_content_type_is_415():
    with pytest.raises(GotenbergError) as err:
        FormReader("application/json", lambda: Spool(Path("/tmp"), 1))
    assert err.value.status == 415
