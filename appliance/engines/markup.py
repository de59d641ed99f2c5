"""Markup and documents with pandoc: md, gfm, html, rst, docx, odt, epub, latex, org, txt."""

from __future__ import annotations

from pathlib import Path

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.tools import run_tool, tool_version

# format -> pandoc's reader / writer name (None: pandoc cannot do that direction)
READERS = {
    "md": "markdown",
    "gfm": "gfm",
    "html": "html",
    "rst": "rst",
    "docx": "docx",
    "odt": "odt",
    "epub": "epub",
    "latex": "latex",
    "org": "org",
    "txt": "markdown",
}
WRITERS = {
    "md": "markdown",
    "gfm": "gfm",
    "html": "html5",
    "rst": "rst",
    "docx": "docx",
    "odt": "odt",
    "epub": "epub3",
    "latex": "latex",
    "org": "org",
    "txt": "plain",
}


class MarkupOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    standalone: bool = True  # a whole document (html with <head>, latex with preamble)
    table_of_contents: bool = False


class PandocEngine:
    descriptor = Descriptor(
        id="pandoc",
        conversions=frozenset((a, b) for a in READERS for b in WRITERS if a != b),
        options=MarkupOptions,
        queue="light",
        version=lambda: tool_version("pandoc"),
        family="markup",
        requires=("pandoc",),
        packages=("pandoc",),
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: MarkupOptions,
        progress: Progress,
    ) -> None:
        argv = [
            "pandoc",
            "--from",
            READERS[src_format],
            "--to",
            WRITERS[dst_format],
            "--output",
            str(dst),
            "--resource-path",
            str(src.parent),
        ]  # not --sandbox: pandoc 2.17's blocks its own data files (docx, epub writers)
        if options.standalone:
            argv.append("--standalone")
        if options.table_of_contents:
            argv.append("--toc")
        run_tool([*argv, str(src)], what="pandoc")
        progress(1.0)
