"""``pdf/ocr``: each input PDF made searchable, an invisible text layer over its scanned pages
in the ``language`` given (Tesseract's names, "eng" by default; a list or "eng+deu" for
several), pages turned upright with ``auto_orient``; by the sandboxed ``ocrmypdf`` engine."""

from __future__ import annotations

from appliance.conversions.operation import Errors, Formats, PlannedTask
from appliance.conversions.operations.per_input import PerInputOperation
from appliance.engines.registry import Registry


class PdfOcr(PerInputOperation):
    name = "pdf/ocr"
    formats = Formats(("pdf",), ("pdf",), "ocrmypdf")
    input_format = "pdf"

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        super().check(task, formats, registry, errors)
        assert self.formats is not None and self.formats.engine
        # seconds per page: the queue (and hosts) its engine is deployed for, not light work
        task.queue = registry.engine(self.formats.engine).descriptor.queue
