"""Hostile inputs end in a clear task error (or a harmless result), inside the sandbox, within
the timeout, with the helper replaced if it died. A first set; issue 3 lists more."""

from __future__ import annotations

import subprocess
import time

import pytest
import pyvips

from appliance.engines.images import ImageEngine, ImageOptions
from appliance.engines.markup import MarkupOptions, PandocEngine
from appliance.engines.media import FfmpegEngine, MediaOptions
from appliance.engines.sandbox import SandboxedEngine
from appliance.engines.vector import SvgEngine, SvgOptions
from appliance.errors import PermanentError

CLEAR_CODES = {
    "INVALID_INPUT_FILE",
    "ENGINE_TIMEOUT",
    "ENGINE_CRASHED",
    "ENGINE_LIMIT",
    "CONVERSION_FAILED",
}


def _expect_clear_error(engine, pool, src, dst, src_fmt, dst_fmt, options):
    start = time.monotonic()
    with pytest.raises(PermanentError) as info:
        SandboxedEngine(engine, pool).convert(src, dst, src_fmt, dst_fmt, options, lambda f: None)
    assert info.value.code in CLEAR_CODES, info.value.code
    assert time.monotonic() - start < 20
    return info.value


def test_svg_with_external_entity_and_remote_href_does_not_leak_or_fetch(pool, tmp_path):
    src = tmp_path / "evil.svg"
    src.write_text(
        '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
        ' width="50" height="50"><text y="20">&xxe;</text>'
        '<image xlink:href="http://169.254.169.254/latest/meta-data" width="10" height="10"/>'
        "</svg>"
    )
    dst = tmp_path / "out.png"
    start = time.monotonic()
    try:
        SandboxedEngine(SvgEngine(), pool).convert(
            src, dst, "svg", "png", SvgOptions(), lambda f: None
        )
    except PermanentError as exc:
        assert exc.code in CLEAR_CODES
    assert time.monotonic() - start < 20  # no hanging on the unreachable address


@pytest.mark.parametrize(
    ("engine", "fmt", "target", "options"),
    [
        (ImageEngine(), "png", "webp", ImageOptions()),
        (ImageEngine(), "jpg", "png", ImageOptions()),
        (PandocEngine(), "docx", "html", MarkupOptions()),
        (FfmpegEngine(), "mp4", "webm", MediaOptions()),
    ],
)
def test_truncated_files_fail_clearly(pool, tmp_path, engine, fmt, target, options):
    full = tmp_path / f"full.{fmt}"
    if fmt in ("png", "jpg"):
        pyvips.Image.xyz(400, 300).extract_band(0).cast("uchar").write_to_file(str(full))
    elif fmt == "docx":
        md = tmp_path / "a.md"
        md.write_text("# hello\n\n" + "text " * 2000)
        subprocess.run(["pandoc", "-o", str(full), str(md)], check=True)
    else:
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=d=1:s=160x120",
                "-pix_fmt",
                "yuv420p",
                str(full),
            ],
            check=True,
        )
    data = full.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: len(data) // 3])
    _expect_clear_error(engine, pool, cut, tmp_path / f"o.{target}", fmt, target, options)


def test_image_claiming_huge_dimensions_is_refused(pool, tmp_path):
    """A tiny PNG whose header claims 60000 x 60000 pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    row = b"\x00" + b"\x00" * 60000
    idat = zlib.compress(row * 64, 9)  # only the first rows exist
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )
    src = tmp_path / "bomb.png"
    src.write_bytes(png)
    _expect_clear_error(
        ImageEngine(), pool, src, tmp_path / "o.tiff", "png", "tiff", ImageOptions()
    )
