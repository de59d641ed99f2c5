"""The 100-megapixel limit holds on every image route, whichever engine meets the picture
first (libvips, img2pdf's Pillow, Tesseract, librsvg): the same ENGINE_LIMIT with the same
words, never a libvips message, and never a sandbox path. Run through the sandboxed helpers
along the routes the registry plans, as workers run them."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips

from appliance.conversions.work import run_hops
from appliance.engines.enabled import enabled_engines
from appliance.engines.pixels import MAX_PIXELS
from appliance.engines.registry import Registry
from appliance.engines.sandbox import sandboxed
from appliance.errors import PermanentError

WIDTH, HEIGHT = 12_000, 10_000  # 120 megapixels


@pytest.fixture(scope="module")
def registry(pool):
    return Registry(sandboxed(enabled_engines(), pool))


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    root = tmp_path_factory.mktemp("huge")
    black = pyvips.Image.black(WIDTH, HEIGHT)
    files = {}
    for fmt in ("png", "gif", "tiff"):
        files[fmt] = root / f"huge.{fmt}"
        black.write_to_file(str(files[fmt]))
    files["svg"] = root / "huge.svg"
    files["svg"].write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}">'
        '<rect width="100%" height="100%"/></svg>'
    )
    return files


def _convert(registry, src: Path, src_fmt: str, dst_fmt: str, work: Path) -> list[Path]:
    hops = registry.route(src_fmt, dst_fmt)
    assert hops is not None
    options = registry.options_for(hops, {})
    return run_hops(hops, src, work, options, lambda f: None)


@pytest.mark.parametrize(
    ("src_fmt", "dst_fmt"),
    [
        ("png", "webp"),
        ("png", "jpg"),
        ("png", "pdf"),
        ("png", "txt"),  # OCR
        ("gif", "png"),
        ("tiff", "avif"),
        ("svg", "png"),
        ("svg", "webp"),
    ],
)
def test_an_image_past_the_pixel_limit_fails_the_same_way_on_every_route(
    registry, huge, tmp_path, src_fmt, dst_fmt
):
    with pytest.raises(PermanentError) as info:
        _convert(registry, huge[src_fmt], src_fmt, dst_fmt, tmp_path)
    assert info.value.code == "ENGINE_LIMIT", info.value.message
    assert f"{MAX_PIXELS // 1_000_000} megapixels" in info.value.message
    assert "/job" not in info.value.message and "vips" not in info.value.message.lower()


def test_svg_size_follows_the_width_option(registry, huge, tmp_path):
    """Asked for 2000 px wide, the same huge SVG is 2000 x 1667 px: within the limit."""
    hops = registry.route("svg", "png")
    options = registry.options_for(hops, {"width": 2000})
    [out] = run_hops(hops, huge["svg"], tmp_path, options, lambda f: None)
    image = pyvips.Image.new_from_file(str(out))
    assert (image.width, image.height) == (2000, 1667)


@pytest.mark.parametrize(("fmt", "side"), [("webp", 16383), ("avif", 16384)])
def test_a_side_longer_than_the_target_format_holds_is_an_engine_limit(
    registry, tmp_path, fmt, side
):
    src = tmp_path / "wide.png"
    pyvips.Image.black(side + 1, 8).write_to_file(str(src))
    with pytest.raises(PermanentError) as info:
        _convert(registry, src, "png", fmt, tmp_path)
    assert info.value.code == "ENGINE_LIMIT"
    assert f"at most {side} pixels a side" in info.value.message


def test_a_broken_image_names_the_reason_without_the_sandbox_path(registry, tmp_path):
    src = tmp_path / "broken.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(PermanentError) as info:
        _convert(registry, src, "png", "webp", tmp_path)
    assert info.value.code == "INVALID_INPUT_FILE"
    assert "/job" not in info.value.message and "unable to call" not in info.value.message
