"""Thumbnails (the `thumbnail` task) of images, PDFs and videos, in the sandboxed helper.

Images go straight to libvips' thumbnail; a PDF's first page is rendered with PDFium; a
video gives one frame through ffmpeg (at ``timestamp``, or the most representative of its
first frames). Any other input the router can bring to one of those (docx -> pdf, svg -> png,
bmp -> png) is converted first by the worker (``thumbnail_route``), then thumbnailed here.

Not part of the format graph: the engine declares no conversion pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.images import ImageEngine, ImageOptions
from appliance.engines.registry import Hop, Registry
from appliance.engines.tools import run_tool
from appliance.errors import PermanentError

OUTPUTS = ("png", "jpg", "webp")
IMAGES = ("png", "jpg", "webp", "avif", "tiff", "gif")
VIDEOS = ("mp4", "webm", "mkv", "mov")
SOURCES = (*IMAGES, "pdf", *VIDEOS)  # what this engine thumbnails itself
DEFAULT_RENDER_PX = 1024  # long side of a PDF page rendered when no size is asked for
TIMESTAMP = r"^(\d+(\.\d+)?|\d{1,2}:\d{2}:\d{2}(\.\d+)?)$"  # seconds, or HH:MM:SS[.ms]


class ThumbnailOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """CloudConvert's thumbnail task options."""

    width: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None
    height: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None
    fit: Literal["max", "crop", "scale"] = "max"
    count: Annotated[int, msgspec.Meta(ge=1, le=1)] = 1  # one thumbnail per input file
    timestamp: Annotated[str, msgspec.Meta(pattern=TIMESTAMP)] | None = None  # videos


def thumbnail_route(registry: Registry, src: str) -> list[Hop] | None:
    """Conversions that bring ``src`` to a format thumbnailed here: [] if it already is one,
    the cheapest route to one otherwise, None if there is none."""
    if src in SOURCES:
        return []
    best: tuple[float, int, list[Hop]] | None = None
    for target in SOURCES:
        hops = registry.route(src, target)
        if hops:
            key = (sum(h.cost for h in hops), len(hops), hops)
            if best is None or key[:2] < best[:2]:
                best = key
    return best[2] if best else None


class ThumbnailEngine:
    descriptor = Descriptor(
        id="thumbnail",
        conversions=frozenset(),
        options=ThumbnailOptions,
        queue="light",
        version=lambda: f"{ImageEngine.descriptor.version()}+thumbnail-1",
        requires=("ffmpeg",),
    )

    def __init__(self) -> None:
        self._images = ImageEngine()

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: ThumbnailOptions,
        progress: Progress,
    ) -> None:
        if dst_format not in OUTPUTS or src_format not in SOURCES:
            raise PermanentError(
                f"No thumbnail from {src_format} to {dst_format}", code="INVALID_CONVERSION_TYPE"
            )
        image, image_format = src, src_format
        if src_format == "pdf":
            image, image_format = _first_page(src, dst.with_name("page.png"), options), "png"
        elif src_format in VIDEOS:
            image, image_format = _frame(src, dst.with_name("frame.png"), options), "png"
        progress(0.5)
        # strip: a thumbnail carries no camera data
        sizing = ImageOptions(
            width=options.width, height=options.height, fit=options.fit, strip=True
        )
        self._images.convert(image, dst, image_format, dst_format, sizing, progress)
        progress(1.0)


def _first_page(src: Path, out: Path, options: ThumbnailOptions) -> Path:
    """Page 1 rendered large enough for the requested box (never bomb-sized)."""
    from appliance.engines.pdf import _LOCK, MAX_PIXELS, _pdfium

    pdfium = _pdfium()
    with _LOCK:
        try:
            doc = pdfium.PdfDocument(str(src))
        except pdfium.PdfiumError as exc:
            raise PermanentError(
                f"The PDF could not be opened: {exc}", code="INVALID_INPUT_FILE"
            ) from exc
        try:
            if len(doc) == 0:
                raise PermanentError("The PDF has no pages", code="INVALID_INPUT_FILE")
            page = doc[0]
            width, height = page.get_size()  # points
            wanted = [
                size / side
                for size, side in ((options.width, width), (options.height, height))
                if size
            ]
            scale = max(wanted) if wanted else DEFAULT_RENDER_PX / max(width, height, 1)
            scale = min(scale, (MAX_PIXELS / max(width * height, 1)) ** 0.5)
            page.render(scale=scale).to_pil().save(out, format="PNG")
        finally:
            doc.close()
    return out


def _frame(src: Path, out: Path, options: ThumbnailOptions) -> Path:
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if options.timestamp:
        argv += ["-ss", options.timestamp, "-i", str(src)]
    else:  # the most representative of the first 60 frames, not a black first frame
        argv += ["-i", str(src), "-vf", "thumbnail=60"]
    run_tool([*argv, "-frames:v", "1", "-an", str(out)], what="Frame extraction")
    if not out.is_file() or out.stat().st_size == 0:
        raise PermanentError("The video has no frame at that timestamp", code="INVALID_INPUT_FILE")
    return out
