"""SVG with librsvg (rsvg-convert): svg -> png, pdf. Other targets route on through libvips.

librsvg does not fetch remote resources, and the sandbox has no network anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.tools import run_tool, tool_version


class SvgOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    width: Annotated[int, msgspec.Meta(ge=1, le=20000)] | None = None
    height: Annotated[int, msgspec.Meta(ge=1, le=20000)] | None = None
    pixel_density: Annotated[int, msgspec.Meta(ge=1, le=2400)] = 96  # dpi


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
