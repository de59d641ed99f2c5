"""``pdf/flatten``: each input PDF with its form fields and annotations drawn into its pages
and removed, by the sandboxed ``pdf-flatten`` engine. Not one of CloudConvert's operations:
Gotenberg's flatten route runs it, and a job may name it like any other."""

from __future__ import annotations

from appliance.conversions.operation import Formats
from appliance.conversions.operations.per_input import PerInputOperation


class PdfFlatten(PerInputOperation):
    name = "pdf/flatten"
    formats = Formats(("pdf",), ("pdf",), "pdf-flatten")
    input_format = "pdf"
