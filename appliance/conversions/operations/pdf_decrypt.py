"""``pdf/decrypt``: each input PDF without its encryption, opened with ``password`` (its open
or owner password; none for a PDF locked by an owner password only); by the sandboxed
``pdf-decrypt`` engine. The password is sealed while the task waits and dropped when it
ends."""

from __future__ import annotations

from appliance.conversions.operation import Formats
from appliance.conversions.operations.per_input import PerInputOperation


class PdfDecrypt(PerInputOperation):
    name = "pdf/decrypt"
    formats = Formats(("pdf",), ("pdf",), "pdf-decrypt")
    input_format = "pdf"
    secret_fields = frozenset({"password"})
