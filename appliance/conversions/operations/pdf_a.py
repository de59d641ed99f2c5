"""``pdf/a``: each input PDF as PDF/A (``conformance_level`` 1b, 2b or 3b; 2b by default):
fonts embedded, sRGB output intent, XMP that claims it; by the sandboxed ``pdf-a`` engine
(Ghostscript)."""

from __future__ import annotations

from appliance.conversions.operation import Formats
from appliance.conversions.operations.per_input import PerInputOperation


class PdfA(PerInputOperation):
    name = "pdf/a"
    formats = Formats(("pdf",), ("pdf",), "pdf-a")
    input_format = "pdf"
