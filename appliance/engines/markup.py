"""Markup and documents with pandoc: md, gfm, html, rst, docx, odt, epub, latex, org, txt."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.formats import TEXT, as_utf8
from appliance.engines.textboxes import lift_text_boxes
from appliance.engines.tools import run_tool, tool_version

# Drops pictures linked by URL: pandoc would fetch them (see the filter's comment).
OFFLINE_FILTER = Path(__file__).with_name("markup_offline.lua")
# Writers that embed a document's pictures, fetching those it links by URL.
EMBEDDING_WRITERS = frozenset({"docx", "odt", "epub"})
# Readers whose pictures come from their own container (the JSON detour would lose them);
# pandoc's docx and odt readers keep no picture linked by URL, so nothing is fetched.
CONTAINERS = frozenset({"docx", "odt", "epub"})

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
    "txt": "json",  # read here, as plain paragraphs (write_text_document)
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


@functools.cache
def api_version() -> list[int]:
    """The pandoc-types version this pandoc's JSON carries (a JSON document must name it)."""
    done = run_tool(["pandoc", "--from", "markdown", "--to", "json"], what="pandoc")
    return list(json.loads(done.stdout)["pandoc-api-version"])


def _inlines(line: str) -> list[dict[str, Any]]:
    inlines: list[dict[str, Any]] = []
    for word in line.split():
        if inlines:
            inlines.append({"t": "Space"})
        inlines.append({"t": "Str", "c": word})
    return inlines


def paragraphs(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """One paragraph per line, as LibreOffice reads a text file (a PDF's text has no other
    paragraphs); blank lines and form feeds (a PDF's page ends) make none."""
    for raw in lines:
        for piece in raw.split("\f"):
            words = _inlines(piece)
            if words:
                yield {"t": "Para", "c": words}


def picture_block(name: str, width: str = "100%") -> dict[str, Any]:
    """A paragraph of the picture ``name`` (relative to pandoc's resource path), ``width`` of
    the text's width."""
    attr = ["", [], [["width", width]]]
    return {"t": "Para", "c": [{"t": "Image", "c": [attr, [], [name, ""]]}]}


def write_pictured_document(
    blocks: list[dict[str, Any]],
    dst: Path,
    dst_format: str,
    work: Path,
    pictures: Path,
    title: str,
) -> None:
    """``blocks`` written by pandoc as ``dst_format`` (a ``WRITERS`` key, or rtf) to ``dst``,
    the pictures they name read from ``pictures``: docx, odt and epub hold them in their
    container, html as ``data:`` URLs (one self-contained file, titled ``title``), rtf as hex.
    The JSON document goes to ``work``."""
    document = work / "document.json"
    document.write_text(
        json.dumps({"pandoc-api-version": api_version(), "meta": {}, "blocks": blocks}),
        encoding="utf-8",
    )
    writer = WRITERS.get(dst_format, dst_format)
    argv = ["pandoc", "--from", "json", "--to", writer, "--output", str(dst)]
    argv += ["--resource-path", str(pictures), "--standalone"]
    if dst_format == "html":  # the pictures inside the page (pandoc 2.17's flag)
        argv += ["--self-contained", "--metadata", f"pagetitle={title}"]
    run_tool([*argv, str(document)], what="pandoc")


def write_text_document(src: Path, dst: Path) -> None:
    """The UTF-8 text at ``src`` as a pandoc JSON document at ``dst``: a paragraph per line,
    every character as it is (no markup is read)."""
    with open(src, encoding="utf-8-sig", errors="replace", newline=None) as fh:
        blocks = list(paragraphs(fh))
    with open(dst, "w", encoding="utf-8") as out:
        json.dump({"pandoc-api-version": api_version(), "meta": {}, "blocks": blocks}, out)


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
        # Their pictures (in the container) and math do not survive into standalone html, so
        # routes through it lose them: on to pdf or images, LibreOffice or calibre do better.
        pair_costs={(src, "html"): 1.9 for src in ("docx", "odt", "epub", "latex")},
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
        if src_format in TEXT:  # pandoc reads only UTF-8 (UTF-16 as Latin-1, garbled)
            src = as_utf8(src, dst.with_name(f"utf8-{src.name}"))
        if src_format == "docx":  # this pandoc drops text boxes: their text moves to the body
            src = lift_text_boxes(src, dst.with_name(f"lifted-{src.name}"))
        if src_format == "txt":
            # Plain text is not markdown: its lines go to pandoc as they are, never parsed
            # (a PDF's text read as markdown took pandoc past 2 GB). Nothing in it links a
            # picture, so it needs no offline detour either.
            plain = dst.with_name(dst.name + ".json")
            write_text_document(src, plain)
            self._pandoc(plain, dst, "json", WRITERS[dst_format], options, None, src.parent)
        elif dst_format in EMBEDDING_WRITERS and src_format not in CONTAINERS:
            # Pandoc fetches a document's linked pictures for these writers before any filter
            # runs: the document goes through pandoc's own JSON first, pictures linked by URL
            # dropped (markup_offline.lua), so the writer finds nothing to fetch.
            plain = dst.with_name(dst.name + ".json")
            self._pandoc(src, plain, READERS[src_format], "json", options, OFFLINE_FILTER)
            self._pandoc(plain, dst, "json", WRITERS[dst_format], options, None, src.parent)
        else:
            self._pandoc(src, dst, READERS[src_format], WRITERS[dst_format], options, None)
        progress(1.0)

    def _pandoc(
        self,
        src: Path,
        dst: Path,
        reader: str,
        writer: str,
        options: MarkupOptions,
        lua_filter: Path | None,
        resources: Path | None = None,
    ) -> None:
        """One pandoc run; pictures named by a relative path are looked up in ``resources``
        (default: beside ``src``)."""
        argv = [
            *("pandoc", "--from", reader, "--to", writer, "--output", str(dst)),
            *("--resource-path", str(resources or src.parent)),
        ]  # not --sandbox: pandoc 2.17's blocks its own data files (docx, epub writers)
        if lua_filter is not None:
            argv += ["--lua-filter", str(lua_filter)]
        if options.standalone:
            argv.append("--standalone")
        if options.table_of_contents:
            argv.append("--toc")
        run_tool([*argv, str(src)], what="pandoc")
