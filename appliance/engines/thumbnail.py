"""Thumbnails (the `thumbnail` task) of images, PDFs and videos, in the sandboxed helper.

Images go straight to libvips' thumbnail; a PDF's first page is rendered with PDFium; a
video gives one frame through ffmpeg (at ``timestamp``, or the most representative of its
first frames). Any other input the router can bring to one of those (docx -> pdf, svg -> png,
bmp -> png) is converted first by the worker (``thumbnail_route``), then thumbnailed here.

``count`` > 1 (CloudConvert's option) gives the first ``count`` pages of a PDF (fewer if it
has fewer), or ``count`` frames of a video, one from the middle of each of ``count`` equal
parts of it (from ``timestamp`` on, if given). An image gives one thumbnail whatever the count.

Not part of the format graph: the engine declares no conversion pairs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.images import ImageEngine, ImageOptions
from appliance.engines.media import media_duration
from appliance.engines.pixels import MAX_PIXELS
from appliance.engines.registry import Hop, Registry
from appliance.engines.tools import run_tool
from appliance.errors import PermanentError

OUTPUTS = ("png", "jpg", "webp")
IMAGES = ("png", "jpg", "webp", "avif", "tiff", "gif")
VIDEOS = ("mp4", "webm", "mkv", "mov")
SOURCES = (*IMAGES, "pdf", *VIDEOS)  # what this engine thumbnails itself
DEFAULT_RENDER_PX = 1024  # long side of a PDF page rendered when no size is asked for
MAX_COUNT = 100  # thumbnails of one input file
TIMESTAMP = r"^(\d+(\.\d+)?|\d{1,2}:\d{2}:\d{2}(\.\d+)?)$"  # seconds, or HH:MM:SS[.ms]


class ThumbnailOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """CloudConvert's thumbnail task options."""

    width: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None
    height: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None
    fit: Literal["max", "crop", "scale"] = "max"
    # thumbnails per input file: pages of a PDF, frames of a video (an image gives one)
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] = 1
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
        version=lambda: f"{ImageEngine.descriptor.version()}+thumbnail-2",
        family="media",
        requires=("ffmpeg", "ffprobe"),
        packages=("ffmpeg",),
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
    ) -> list[Path] | None:
        """One thumbnail at ``dst``, or several next to it (``dst``'s stem + ``-1``, ``-2``...)
        returned in order."""
        if dst_format not in OUTPUTS or src_format not in SOURCES:
            raise PermanentError(
                f"No thumbnail from {src_format} to {dst_format}", code="INVALID_CONVERSION_TYPE"
            )
        images, image_format = [src], src_format
        if src_format == "pdf":
            images, image_format = _pages(src, dst.parent, options), "png"
        elif src_format in VIDEOS:
            images, image_format = _frames(src, dst.parent, options, progress), "png"
        progress(0.5)
        outputs = (
            [dst]
            if len(images) == 1
            else [dst.with_name(f"{dst.stem}-{n}{dst.suffix}") for n in range(1, len(images) + 1)]
        )
        # strip: a thumbnail carries no camera data
        sizing = ImageOptions(
            width=options.width, height=options.height, fit=options.fit, strip=True
        )
        for n, (image, out) in enumerate(zip(images, outputs, strict=True), start=1):
            self._images.convert(image, out, image_format, dst_format, sizing, lambda f: None)
            progress(0.5 + 0.5 * n / len(outputs))
        return None if len(outputs) == 1 else outputs


def _pages(src: Path, work: Path, options: ThumbnailOptions) -> list[Path]:
    """The first ``count`` pages (as many as there are, if fewer), as PNG files in ``work``."""
    from appliance.engines.pdf import open_pdfium

    with open_pdfium(src) as doc:
        if len(doc) == 0:
            raise PermanentError("The PDF has no pages", code="INVALID_INPUT_FILE")
        pages = [work / f"page-{n}.png" for n in range(1, min(options.count, len(doc)) + 1)]
        for index, out in enumerate(pages):
            _render(doc[index], out, options)
    return pages


def _render(page: Any, out: Path, options: ThumbnailOptions) -> None:
    """A page rendered large enough for the requested box (never bomb-sized)."""
    width, height = page.get_size()  # points
    wanted = [
        size / side for size, side in ((options.width, width), (options.height, height)) if size
    ]
    scale = max(wanted) if wanted else DEFAULT_RENDER_PX / max(width, height, 1)
    scale = min(scale, (MAX_PIXELS / max(width * height, 1)) ** 0.5)
    page.render(scale=scale).to_pil().save(out, format="PNG")


def _frames(src: Path, work: Path, options: ThumbnailOptions, progress: Progress) -> list[Path]:
    """One frame (at ``timestamp`` or the most representative of the first ones), or ``count``
    frames from the middles of equal parts of the video after ``timestamp``."""
    if options.count == 1:
        return [_frame(src, work / "frame-1.png", options.timestamp)]
    duration = media_duration(src)
    if not duration:
        raise PermanentError(
            "The video's duration is unknown: more than one thumbnail cannot be spread over it",
            code="INVALID_INPUT_FILE",
        )
    start = _seconds(options.timestamp) if options.timestamp else 0.0
    if start >= duration:
        raise PermanentError("The video has no frame at that timestamp", code="INVALID_INPUT_FILE")
    part = (duration - start) / options.count
    frames = []
    for n in range(1, options.count + 1):
        at = f"{start + (n - 0.5) * part:.3f}"
        frames.append(_frame(src, work / f"frame-{n}.png", at))
        progress(0.5 * n / options.count)
    return frames


def _seconds(timestamp: str) -> float:
    """``TIMESTAMP`` (seconds, or HH:MM:SS[.ms]) in seconds."""
    seconds = 0.0
    for part in timestamp.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def _frame(src: Path, out: Path, timestamp: str | None) -> Path:
    argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if timestamp:
        argv += ["-ss", timestamp, "-i", str(src)]
    else:  # the most representative of the first 60 frames, not a black first frame
        argv += ["-i", str(src), "-vf", "thumbnail=60"]
    run_tool([*argv, "-frames:v", "1", "-an", str(out)], what="Frame extraction")
    if not out.is_file() or out.stat().st_size == 0:
        raise PermanentError("The video has no frame at that timestamp", code="INVALID_INPUT_FILE")
    return out
