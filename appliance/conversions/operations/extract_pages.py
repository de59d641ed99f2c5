"""``pdf/extract-pages``: each input PDF with only the ``pages`` given ("1-3,5"), in that
order, by the sandboxed ``pdf-extract`` engine."""

from __future__ import annotations

from appliance.conversions.operation import Formats
from appliance.conversions.operations.per_input import PerInputOperation


class ExtractPages(PerInputOperation):
    name = "pdf/extract-pages"
    required = ("input", "pages")
    formats = Formats(("pdf",), ("pdf",), "pdf-extract")
    input_format = "pdf"
