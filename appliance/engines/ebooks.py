"""E-books with calibre's ``ebook-convert`` (queue `office`): epub, mobi, azw3, fb2, docx and pdf.

calibre is a separate program (GPL) run in the helper's sandbox, never imported. Its PDF output
renders through Qt WebEngine (Chromium), which needs an offscreen Qt platform and Chromium's own
sandbox turned off: it cannot create namespaces inside bubblewrap, and the helper's sandbox is
the boundary anyway. Pairs pandoc or LibreOffice also convert cost more here, so those engines
keep them and calibre serves the e-book formats.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from appliance.engines import LAYOUT_FONTS, Descriptor, Progress
from appliance.engines.tools import run_tool, tool_version

INPUTS = ("epub", "mobi", "azw3", "fb2", "docx", "pdf")
OUTPUTS = ("epub", "mobi", "azw3", "fb2", "docx", "pdf")
# Chromium inside bubblewrap: no nested sandbox, no GPU, one process for the renderer.
QT_ENV = {
    "QT_QPA_PLATFORM": "offscreen",
    "QTWEBENGINE_CHROMIUM_FLAGS": "--no-sandbox --disable-gpu",
    "QTWEBENGINE_DISABLE_SANDBOX": "1",
}


class EbookOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class CalibreEngine:
    descriptor = Descriptor(
        id="calibre",
        conversions=frozenset((a, b) for a in INPUTS for b in OUTPUTS if a != b),
        options=EbookOptions,
        queue="office",
        version=lambda: tool_version("ebook-convert"),
        family="ebooks",
        cost=3.0,  # slower to start than pandoc (1) or warm LibreOffice (2)
        requires=("ebook-convert",),
        packages=("calibre", *LAYOUT_FONTS),  # its PDF output lays out pages
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: EbookOptions,
        progress: Progress,
    ) -> None:
        run_tool(["ebook-convert", str(src), str(dst)], what="calibre", env=QT_ENV)
        progress(1.0)
