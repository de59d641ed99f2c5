"""``capture-website``: a web page as PDF or a screenshot (png, jpg, webp), rendered by the
sandboxed Chromium engine, whose every request the worker fetches through the address guard
(conversions/browse.py): no private, loopback, link-local or metadata address, redirects and
DNS rebinding included, unless the operator allows private addresses. Its other fields are the
chromium engine's options (page size, margins, waits, header and footer, screenshot size)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from appliance.conversions.browse import GuardedFetcher
from appliance.conversions.files import safe_filename
from appliance.conversions.operation import (
    Errors,
    Formats,
    Operation,
    PlannedTask,
    Progress,
    check_options,
    input_queue,
)
from appliance.conversions.operations.convert import normalize_out
from appliance.conversions.operations.import_url import request_headers, url_path
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import Outcome, Task
from appliance.conversions.work import check_output, keep
from appliance.engines import outside
from appliance.engines.chromium import OUTPUTS, WEBSITE
from appliance.engines.registry import Registry
from appliance.security import sealing


class CaptureWebsite(Operation):
    name = "capture-website"
    required = ("url", "output_format")
    fields = frozenset(
        {"url", "output_format", "filename", "headers", "engine", "engine_version", "timeout"}
        | {sealing.SEALED}  # where the headers are, once sealed
    )
    formats = Formats((WEBSITE,), OUTPUTS, "chromium")
    # Request headers often carry credentials (Authorization, cookies): sealed while the
    # task may run, never shown in its JSON, dropped when it ends (as import/url's).
    secret_fields = frozenset({"headers"})

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        p, key = task.payload, task.key
        if url_path(p.get("url")) is None:
            errors.add(f"{key}.url", "must be an http:// or https:// URL")
        task.output_format = normalize_out(p)
        if task.output_format not in OUTPUTS:
            errors.add(f"{key}.output_format", f"must be one of {', '.join(OUTPUTS)}")
        if task.depends_on:
            errors.add(f"{key}.input", "capture-website takes no input task")
        check_options(self, task, registry, errors)
        task.queue = input_queue(registry, self, WEBSITE, [])  # its engine's: office

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        p, s = task.payload, rt.settings
        out_fmt = p["output_format"]
        options = self.options(rt.registry, p)
        fetcher = GuardedFetcher(
            p["url"],
            allow_private=s.allow_private_urls,
            timeout=s.fetch_timeout_seconds,
            headers=request_headers(rt, task),
        )
        engine = rt.registry.engine("chromium")
        with tempfile.TemporaryDirectory(dir=rt.work_root()) as tmp:
            src, dst = Path(tmp) / f"page.{WEBSITE}", Path(tmp) / f"capture.{out_fmt}"
            src.write_text(p["url"])
            with outside.fetching(fetcher):
                engine.convert(src, dst, WEBSITE, out_fmt, options, progress)
            check_output("chromium", out_fmt, dst)
            name = safe_filename(p.get("filename") or f"{urlsplit(p['url']).hostname}.{out_fmt}")
            kept = keep(rt, task, dst, name)
        outcome = Outcome.of_files([kept])
        outcome.engine = ("chromium", engine.descriptor.version())
        return outcome
