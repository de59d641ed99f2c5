"""``import/upload``: the client posts the file to the form in the task's result."""

from __future__ import annotations

from appliance.conversions.operation import Errors, Operation, PlannedTask
from appliance.engines.registry import Registry


class ImportUpload(Operation):
    name = "import/upload"
    required = ()
    fields = frozenset({"filename"})
    file_from_client = True

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        task.output_format = None  # known when the file arrives
