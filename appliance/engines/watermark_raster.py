"""``watermark`` on raster images (png, jpg, webp) with libvips, in the sandboxed helper: the
same options as on a PDF, with sizes, margins and font sizes in pixels. Text is set by Pango
in the font fontconfig finds for the name (Nimbus Sans for Helvetica and Arial, ...).
``layer`` below has nothing to go under in a flat picture: the stamp goes on top.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.engines import Progress
from appliance.engines.images import FAIL_ON, vips_module
from appliance.engines.pixels import MAX_PIXELS
from appliance.errors import PermanentError

if TYPE_CHECKING:
    from appliance.engines.watermark import WatermarkOptions

FORMATS = ("png", "jpg", "webp")


def _load(vips: Any, path: Path, what: str) -> Any:
    try:
        image = vips.Image.new_from_file(str(path), access="sequential", fail_on=FAIL_ON)
    except vips.Error as exc:
        raise PermanentError(f"{what} could not be read", code="INVALID_INPUT_FILE") from exc
    if image.width * image.height > MAX_PIXELS:
        raise PermanentError(f"{what} has more than {MAX_PIXELS} pixels", code="ENGINE_LIMIT")
    return image


def _rgba(vips: Any, image: Any) -> Any:
    """``image`` as 8-bit sRGB with an alpha band."""
    image = image.colourspace("srgb") if image.interpretation != "srgb" else image
    image = image.cast("uchar") if image.format != "uchar" else image
    return image if image.hasalpha() else image.bandjoin(255)


def _pango_font(name: str, size: int) -> str:
    """A Pango description for one of CloudConvert's font names."""
    family = name
    for style in ("Bold", "Italic", "Oblique", "BoldOblique"):
        family = family.replace(f" {style}", "")
    bold = " Bold" if "Bold" in name or name in ("Arial Black", "Impact") else ""
    slant = " Italic" if "Italic" in name or "Oblique" in name else ""
    return f"{family}{bold}{slant} {size}"  # points at 72 dpi: pixels


def _text_stamp(vips: Any, o: WatermarkOptions) -> Any:
    assert o.text is not None
    align = {"left": "low", "center": "centre", "right": "high"}[o.font_align]
    mask = vips.Image.text(
        o.text.replace("&", "&amp;").replace("<", "&lt;"),
        font=_pango_font(o.font_name, o.font_size),
        dpi=72,
        align=align,
    )
    if o.font_width_percent != 100:
        mask = mask.resize(o.font_width_percent / 100, vscale=1.0)
    red, green, blue = (int(o.font_color[i : i + 2], 16) for i in (1, 3, 5))
    ink = mask.new_from_image([red, green, blue]).copy(interpretation="srgb")
    return ink.bandjoin(mask)


def _image_stamp(vips: Any, path: Path, o: WatermarkOptions, base_width: int, work: Path) -> Any:
    if path.read_bytes()[:2] == b"BM":  # libvips here has no BMP loader: Pillow decodes it
        path = _bmp_as_png(path, work)
    stamp = _rgba(vips, _load(vips, path, "The watermark image"))
    ratio = stamp.height / stamp.width
    width: float = stamp.width
    height: float = stamp.height
    if o.image_width_percent is not None:
        width = base_width * o.image_width_percent / 100
        height = width * ratio
    elif o.image_width is not None or o.image_height is not None:
        width = o.image_width or (o.image_height or 0) / ratio
        height = o.image_height or width * ratio
    if (round(width), round(height)) != (stamp.width, stamp.height):
        stamp = stamp.resize(max(width, 1) / stamp.width, vscale=max(height, 1) / stamp.height)
    return stamp


def _bmp_as_png(path: Path, work: Path) -> Path:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    png = work / "stamp.png"  # beside the output: the one directory the engine may write
    try:
        with Image.open(path) as image:
            image.save(png, format="PNG")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PermanentError(
            "The watermark image could not be read", code="INVALID_INPUT_FILE"
        ) from exc
    return png


def stamp_raster(
    src: Path, dst: Path, fmt: str, o: WatermarkOptions, image: Path | None, progress: Progress
) -> None:
    """Writes ``src`` with the stamp to ``dst`` in the same format."""
    vips = vips_module()
    base = _load(vips, src, "The image")
    had_alpha = base.hasalpha()
    try:
        canvas = _rgba(vips, base)
        stamp = (
            _text_stamp(vips, o)
            if image is None
            else _image_stamp(vips, image, o, base.width, dst.parent)
        )
        if o.rotation % 360:
            stamp = stamp.similarity(angle=-o.rotation, background=[0, 0, 0, 0])
        if o.opacity < 100:
            stamp = stamp * [1, 1, 1, o.opacity / 100]
        x, y = _position(canvas.width, canvas.height, stamp.width, stamp.height, o)
        out = canvas.composite2(stamp.cast("uchar"), "over", x=x, y=y)
        out = out if had_alpha else out.flatten()
        progress(0.8)
        if fmt == "jpg":
            out.jpegsave(str(dst), Q=92)
        else:
            out.write_to_file(str(dst))
    except vips.Error as exc:
        raise PermanentError(
            f"The watermark could not be applied: {exc.message.strip()}",
            code="INVALID_INPUT_FILE",
        ) from exc


def _position(width: int, height: int, w: int, h: int, o: WatermarkOptions) -> tuple[int, int]:
    x = {"left": o.margin_horizontal, "center": (width - w) / 2,
         "right": width - o.margin_horizontal - w}[o.position_horizontal]  # fmt: skip
    y = {"top": o.margin_vertical, "center": (height - h) / 2,
         "bottom": height - o.margin_vertical - h}[o.position_vertical]  # fmt: skip
    return math.floor(x), math.floor(y)
