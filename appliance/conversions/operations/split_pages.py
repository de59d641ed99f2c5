"""``pdf/split-pages``: one PDF per page of each input PDF."""

from __future__ import annotations

from appliance.conversions.operation import Formats
from appliance.conversions.operations.per_input import PerInputOperation


class SplitPages(PerInputOperation):
    name = "pdf/split-pages"
    formats = Formats(("pdf",), ("pdf",), "pdf-split")
    input_format = "pdf"
    takes_options = False  # CloudConvert's split takes none; other fields are ignored
