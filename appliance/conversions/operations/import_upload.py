"""``import/upload``: the client posts the file to the form in the task's result; with virus
scanning on, a worker scans it before the task ends."""

from __future__ import annotations

from appliance.conversions import scanning
from appliance.conversions.operation import Errors, Operation, PlannedTask, Progress
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import Outcome, Task
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

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        """With virus scanning on, the API stores the file and a worker ends the task here,
        once the file is found clean (``conversions.scanning``)."""
        return scanning.client_file(rt, task)
