"""``import/url``: a worker downloads the file (``fetch``: size limit, no internal addresses)."""

from __future__ import annotations

from urllib.parse import urlsplit

from appliance.conversions.fetch import fetch
from appliance.conversions.files import safe_filename, spool_for
from appliance.conversions.operation import Errors, Operation, PlannedTask, Progress
from appliance.conversions.runtime import Runtime
from appliance.conversions.scanning import check_download
from appliance.conversions.task import Outcome, Task
from appliance.conversions.work import extension_of, keep_spool
from appliance.engines.registry import Registry
from appliance.metrics import UPLOAD_BYTES
from appliance.security import sealing


def url_path(url: object) -> str | None:
    """The path of an http(s) URL with a host and a valid port; None for anything else
    (``urlsplit`` raises on a bad bracketed host, ``port`` on a bad port)."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        valid = valid and (parts.port is None or parts.port > 0)
    except ValueError:
        return None
    return parts.path if valid else None


class ImportUrl(Operation):
    name = "import/url"
    required = ("url",)
    fields = frozenset({"url", "filename", "headers"})
    # Request headers often carry credentials (Authorization, cookies): sealed while the
    # task may run, never shown in its JSON, dropped when it ends (security/sealing.py).
    secret_fields = frozenset({"headers"})

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        url = task.payload.get("url", "")
        path = url_path(url)
        if path is None:
            errors.add(f"{task.key}.url", "must be an http:// or https:// URL")
        task.output_format = extension_of(task.payload.get("filename")) or extension_of(path)

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        p, s = task.payload, rt.settings
        with spool_for(rt.storage, s, task.user_id, s.max_upload_bytes) as spool:
            name = fetch(
                p["url"],
                spool,
                allow_private=s.allow_private_urls,
                timeout=s.fetch_timeout_seconds,
                headers=request_headers(rt, task),
            )
            progress(0.8)
            sha = spool.finish()
            UPLOAD_BYTES.labels("url").inc(spool.size)
            filename = safe_filename(p.get("filename") or name)
            check_download(rt, task, spool, filename)
            return Outcome.of_files([keep_spool(rt, task, spool, sha, filename)])


def request_headers(rt: Runtime, task: Task) -> dict[str, str] | None:
    """The headers the client asked for, opened from the task's sealed field; none when it
    asked for none."""
    if sealing.SEALED not in task.payload:
        return None
    key = sealing.derive_key(rt.settings.signing_key())
    return sealing.unseal(task.payload, key, str(task.id)).get("headers") or None
