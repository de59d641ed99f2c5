"""``import/url``: a worker downloads the file (``fetch``: size limit, no internal addresses)."""

from __future__ import annotations

from urllib.parse import urlsplit

from appliance.conversions.fetch import fetch
from appliance.conversions.files import Spool, safe_filename
from appliance.conversions.operation import Errors, Operation, PlannedTask, Progress
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import Outcome, Task
from appliance.conversions.work import extension_of, keep
from appliance.engines.registry import Registry
from appliance.metrics import UPLOAD_BYTES


class ImportUrl(Operation):
    name = "import/url"
    required = ("url",)
    fields = frozenset({"url", "filename", "headers"})

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        url = task.payload.get("url", "")
        path = urlsplit(url).path if isinstance(url, str) else None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            errors.add(f"{task.key}.url", "must be an http:// or https:// URL")
        task.output_format = extension_of(task.payload.get("filename")) or extension_of(path)

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        p, s = task.payload, rt.settings
        with Spool(s.data_path / "tmp", s.max_upload_bytes) as spool:
            name = fetch(
                p["url"],
                spool,
                allow_private=s.allow_private_urls,
                timeout=s.fetch_timeout_seconds,
                headers=p.get("headers") or None,
            )
            sha = spool.finish()
            UPLOAD_BYTES.labels("url").inc(spool.size)
            progress(0.8)
            filename = safe_filename(p.get("filename") or name)
            return Outcome.of_files([keep(rt, task, spool.path, filename, (sha, spool.size))])
