"""``import/base64``: the file comes inside the job's request, stored before the job is."""

from __future__ import annotations

from appliance.conversions.operation import Errors, Operation, PlannedTask
from appliance.conversions.work import extension_of
from appliance.engines.registry import Registry


class ImportBase64(Operation):
    name = "import/base64"
    required = ("file", "filename")
    fields = frozenset({"file", "filename"})
    file_from_client = True
    body_file = "file"

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        task.output_format = extension_of(task.payload.get("filename"))
