"""``pdf/rotate-pages``: each input PDF with its pages (or the ``pages`` given) turned by
``rotation`` degrees clockwise (with ``absolute``: set to that rotation), by the sandboxed
``pdf-rotate`` engine."""

from __future__ import annotations

from appliance.conversions.operation import Formats
from appliance.conversions.operations.per_input import PerInputOperation


class RotatePages(PerInputOperation):
    name = "pdf/rotate-pages"
    required = ("input", "rotation")
    formats = Formats(("pdf",), ("pdf",), "pdf-rotate")
    input_format = "pdf"
