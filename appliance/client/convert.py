"""``appliance convert``: one job per file (import/upload, convert, export/url), several files
at once, each with its own progress bar through upload, conversion and download.

A job's progress is read from ``GET /v2/jobs/{id}`` every ``POLL_SECONDS``: the convert task's
``percent``. Ctrl-C cancels every job this run made that has not ended (its waiting and
processing tasks, ``POST /v2/tasks/{id}/cancel``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)

from appliance.client.api import ApiClient, ApiError

POLL_SECONDS = 0.5
ENDED = ("finished", "error")


@dataclass
class Request:
    """What to do with every file: the target format, the convert task's options, where the
    outputs go and whether they may replace existing files."""

    output_format: str
    options: dict[str, Any]
    out_dir: Path
    overwrite: bool = False
    tag: str = "cli"


@dataclass
class FileResult:
    input: str
    job_id: str | None = None
    status: str = "waiting"
    outputs: list[str] = field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
    # the HTTP status of a refused request (0: none, or no answer), for the exit code
    http_status: int = 0

    def fail(self, code: str, message: str, http_status: int = 0) -> FileResult:
        self.status, self.error_code, self.error_message = "error", code, message
        self.http_status = http_status
        return self


def job_tasks(request: Request) -> dict[str, Any]:
    convert = {"operation": "convert", "input": "up", "output_format": request.output_format}
    return {
        "up": {"operation": "import/upload"},
        "c": convert | request.options,
        "e": {"operation": "export/url", "input": "c"},
    }


class Bar:
    """One file's row: its phase in words and a bar (bytes while moving files, percent while
    converting)."""

    def __init__(self, progress: Progress, name: str) -> None:
        self._progress, self._name = progress, name
        self._id: TaskID = progress.add_task(f"{name}: waiting", total=None)

    def phase(self, words: str, total: float | None, completed: float = 0) -> None:
        self._progress.update(
            self._id, description=f"{self._name}: {words}", total=total, completed=completed
        )

    def advance(self, n: float) -> None:
        self._progress.advance(self._id, n)

    def at(self, completed: float) -> None:
        self._progress.update(self._id, completed=completed)


class Converter:
    def __init__(self, api: ApiClient, request: Request, stop: threading.Event) -> None:
        self.api, self.request, self.stop = api, request, stop
        self.jobs: list[str] = []  # every job made, for cancellation
        self._lock = threading.Lock()

    def run(self, path: Path, bar: Bar) -> FileResult:
        result = FileResult(str(path))
        try:
            return self._run(path, bar, result)
        except ApiError as exc:
            return result.fail(exc.code, exc.message, exc.status)

    def _run(self, path: Path, bar: Bar, result: FileResult) -> FileResult:
        job = self.api.create_job(job_tasks(self.request), self.request.tag)
        result.job_id = job["id"]
        with self._lock:
            self.jobs.append(job["id"])
        size = path.stat().st_size
        bar.phase(f"uploading {filesize.decimal(size)}", size)
        self.api.upload(task_named(job, "up")["result"]["form"], path, bar.advance)
        bar.phase("converting", 100)
        job = self._until_ended(job["id"], bar)
        result.status = job["status"]
        if job["status"] != "finished":
            code, message = failure(job)
            return result.fail(code, message)
        result.outputs = self._download(task_named(job, "e")["result"]["files"], bar)
        bar.phase("done", 1, 1)
        return result

    def _until_ended(self, job_id: str, bar: Bar) -> dict[str, Any]:
        while True:
            job = self.api.job(job_id)
            if job["status"] in ENDED:
                return job
            if self.stop.is_set():
                raise ApiError("CANCELLED", "Interrupted: the job was cancelled")
            bar.at(task_named(job, "c").get("percent") or 0)
            time.sleep(POLL_SECONDS)

    def _download(self, files: list[dict[str, Any]], bar: Bar) -> list[str]:
        out: list[str] = []
        for f in files:
            dest = self.request.out_dir / Path(f["filename"]).name
            if dest.exists() and not self.request.overwrite:
                raise ApiError("OUTPUT_EXISTS", f"{dest} exists (--overwrite replaces it)")
            size = f.get("size")
            bar.phase(f"downloading {dest.name} {filesize.decimal(size or 0)}", size)
            self.api.download(f["url"], dest, bar.advance)
            out.append(str(dest))
        return out

    def cancel_all(self) -> int:
        """Cancel what has not ended of every job made; how many jobs were cancelled."""
        cancelled = 0
        for job_id in list(self.jobs):
            try:
                job = self.api.job(job_id)
            except ApiError:
                continue  # gone meanwhile
            done = [self._cancel(t) for t in job["tasks"] if t["status"] not in ENDED]
            cancelled += any(done)
        return cancelled

    def _cancel(self, task: dict[str, Any]) -> bool:
        try:
            self.api.cancel_task(task["id"])
            return True
        except ApiError:
            return False  # ended meanwhile (a task after a cancelled one fails with it)


def task_named(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in job["tasks"] if t["name"] == name)


def failure(job: dict[str, Any]) -> tuple[str, str]:
    """The code and message of the task whose failure ended the job (the first failed task
    that is not only failing because its input did)."""
    failed = [t for t in job["tasks"] if t["status"] == "error"]
    first = next((t for t in failed if t.get("code") != "INPUT_TASK_FAILED"), None)
    first = first or (failed[0] if failed else {})
    return first.get("code") or "JOB_FAILED", first.get("message") or "The job failed"


def convert_all(
    converter: Converter, paths: list[Path], parallel: int, console: Console, quiet: bool
) -> list[FileResult]:
    """Convert every file, ``parallel`` at once; the results in the order of ``paths``."""
    results: list[FileResult | None] = [None] * len(paths)
    slots = threading.Semaphore(parallel)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )

    def one(i: int, path: Path, bar: Bar) -> None:
        with slots:
            results[i] = converter.run(path, bar)

    with progress:
        threads = [
            threading.Thread(target=one, args=(i, p, Bar(progress, p.name)), daemon=True)
            for i, p in enumerate(paths)
        ]
        for t in threads:
            t.start()
        wait_all(threads)
    return [
        r or FileResult(str(p)).fail("CANCELLED", "Interrupted")
        for r, p in zip(results, paths, strict=True)
    ]


def wait_all(threads: list[threading.Thread], tick: Callable[[], None] = lambda: None) -> None:
    """Join in short steps, so that Ctrl-C (KeyboardInterrupt) reaches the main thread."""
    for t in threads:
        while t.is_alive():
            t.join(0.2)
            tick()
