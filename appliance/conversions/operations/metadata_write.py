"""``metadata/write``: each input PDF with the document information ``metadata`` gives
(Title, Author, Subject, Keywords, Creator, Producer, CreationDate, ModDate, Trapped; null
removes one), its XMP brought in line; by the sandboxed ``pdf-metadata-write`` engine."""

from __future__ import annotations

from appliance.conversions.operation import Formats
from appliance.conversions.operations.per_input import PerInputOperation


class MetadataWrite(PerInputOperation):
    name = "metadata/write"
    required = ("input", "metadata")
    formats = Formats(("pdf",), ("pdf",), "pdf-metadata-write")
    input_format = "pdf"
