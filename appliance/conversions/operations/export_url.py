"""``export/url``: signed, expiring download URLs for the input tasks' files."""

from __future__ import annotations

from appliance.conversions.operation import Errors, Operation, PlannedTask, Progress
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import InputFile, Outcome, OutFile, Task
from appliance.engines.registry import Registry
from appliance.storage import object_key


class ExportUrl(Operation):
    name = "export/url"
    fields = frozenset({"input", "inline", "archive_multiple_files"})
    inline = True  # no engine, no file transfer: runs at once where its input ended

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        if not task.depends_on:
            errors.add(f"{task.key}.input", "export/url needs at least one input task")

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        return self.urls(rt, task.input_files())

    def urls(self, rt: Runtime, inputs: list[InputFile]) -> Outcome:
        ttl = rt.settings.url_ttl_seconds
        files = [
            OutFile(
                f.sha256,
                f.size,
                f.filename,
                rt.storage.download_url(object_key(f.sha256), f.filename, ttl),
            )
            for f in inputs
        ]
        listed = [{"filename": f.filename, "size": f.size, "url": f.url} for f in files]
        return Outcome({"files": listed}, files)
