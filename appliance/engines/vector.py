"""SVG with librsvg (rsvg-convert): svg -> png, pdf. Other targets route on through libvips.

librsvg does not fetch remote resources, and the sandbox has no network anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.pixels import CSS_DPI, check_pixels, svg_size
from appliance.engines.tools import run_tool, tool_version


class SvgOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    width: Annotated[int, msgspec.Meta(ge=1, le=20000)] | None = None
    height: Annotated[int, msgspec.Meta(ge=1, le=20000)] | None = None
    pixel_density: Annotated[int, msgspec.Meta(ge=1, le=2400)] = 96  # dpi


def _check_size(src: Path, options: SvgOptions) -> None:
    """The pixel limit, on the size rsvg-convert gives the picture: the width and height
    options (one alone keeps the aspect ratio), else the declared size at ``pixel_density``.
    A size the SVG does not declare is left to librsvg (its own canvas limit, and the
    helper's memory limit, reported as ENGINE_LIMIT)."""
    declared = svg_size(src)
    if declared is None:
        return
    width, height = (side * options.pixel_density / CSS_DPI for side in declared)
    if options.width and options.height:
        width, height = options.width, options.height
    elif options.width:
        width, height = options.width, height * options.width / max(width, 1e-9)
    elif options.height:
        width, height = width * options.height / max(height, 1e-9), options.height
    check_pixels(width, height, "The SVG")


class SvgEngine:
    descriptor = Descriptor(
        id="rsvg",
        conversions=frozenset({("svg", "png"), ("svg", "pdf")}),
        options=SvgOptions,
        queue="light",
        version=lambda: tool_version("rsvg-convert"),
        family="svg",
        requires=("rsvg-convert",),
        packages=("librsvg2-bin",),
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: SvgOptions,
        progress: Progress,
    ) -> None:
        if dst_format == "png":
            _check_size(src, options)
        argv = [
            "rsvg-convert",
            "--format",
            dst_format,
            "--output",
            str(dst),
            "--dpi-x",
            str(options.pixel_density),
            "--dpi-y",
            str(options.pixel_density),
        ]
        if options.width:
            argv += ["--width", str(options.width)]
        if options.height:
            argv += ["--height", str(options.height)]
        if options.width and options.height:
            argv.append("--keep-aspect-ratio")
        run_tool([*argv, str(src)], what="SVG rendering")
        progress(1.0)
