"""The pixel limit every image route applies: an image or page past ``MAX_PIXELS`` is refused
before it is decoded or rendered (``ENGINE_LIMIT``), whichever engine meets it first (libvips,
PDFium, Pillow for PDF pages, Tesseract, librsvg), so the same picture fails the same way on
every route and never runs a helper out of memory halfway.

``svg_size`` reads the size an SVG declares (its root's width and height, else its viewBox),
as librsvg sizes its output, without rendering it.
"""

from __future__ import annotations

import re
from pathlib import Path

from appliance.errors import PermanentError

MAX_PIXELS = 100_000_000  # per image or page (10,000 x 10,000)
CSS_DPI = 96.0  # SVG user units (px) per inch
# SVG length units in px at 96 dpi
UNITS = {"": 1.0, "px": 1.0, "in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4, "pt": 4 / 3, "pc": 16.0}
_LENGTH = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z%]*)\s*")


def check_pixels(width: float, height: float, what: str = "The image") -> None:
    """ENGINE_LIMIT when a ``width`` x ``height`` image is past the limit."""
    if width * height > MAX_PIXELS:
        raise PermanentError(
            f"{what} has {int(width)} x {int(height)} pixels, more than the "
            f"{MAX_PIXELS // 1_000_000} megapixels an image may have here",
            code="ENGINE_LIMIT",
        )


def pillow_size(src: Path) -> tuple[int, int] | None:
    """An image's size from its header (Pillow decodes nothing before ``load``); None when
    Pillow cannot read it (the engine then reports the file as it finds it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(src) as image:
            return image.size
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError):
        return None
    except Image.DecompressionBombError:  # Pillow's own guard, for some images at twice ours
        return (MAX_PIXELS, 2)


def _length(text: str | None) -> float | None:
    """An absolute SVG length in px, or None (missing, a percentage, em or ex)."""
    match = _LENGTH.fullmatch(text or "")
    if not match or match.group(2) not in UNITS:
        return None
    return float(match.group(1)) * UNITS[match.group(2)]


def svg_size(src: Path) -> tuple[float, float] | None:
    """The SVG's width and height in px at 96 dpi, as its root element declares them (a
    dimension missing or relative comes from the viewBox); None if it declares neither."""
    from defusedxml.ElementTree import iterparse

    try:
        _, root = next(iterparse(str(src), events=("start",)))
    except Exception:  # not XML, or refused by defusedxml: librsvg reports it as it finds it
        return None
    width, height = _length(root.get("width")), _length(root.get("height"))
    try:
        box = [float(v) for v in re.split(r"[\s,]+", (root.get("viewBox") or "").strip()) if v]
    except ValueError:
        box = []
    if len(box) == 4 and box[2] > 0 and box[3] > 0:
        if width is None and height is None:
            width, height = box[2], box[3]
        elif width is None:
            width = box[2] * height / box[3]  # type: ignore[operator]
        elif height is None:
            height = box[3] * width / box[2]
    if width is None or height is None:
        return None
    return width, height
