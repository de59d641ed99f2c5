"""``import/base64``: the file comes inside the job's request, stored before the job is; with
virus scanning on, a worker scans it before the task ends."""

from __future__ import annotations

from appliance.conversions import scanning
from appliance.conversions.operation import Errors, Operation, PlannedTask, Progress
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import Outcome, Task
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

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        """With virus scanning on, the API stores the file and a worker ends the task here,
        once the file is found clean (``conversions.scanning``)."""
        return scanning.client_file(rt, task)
