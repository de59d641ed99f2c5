"""Runs one task on a worker: claim it in Postgres, hold a lease, do the work, record the end.

The claim (``status`` waiting -> processing, ``attempts`` + 1) is atomic, so a duplicate
message is harmless. The lease is renewed while the task runs; if the worker dies the lease
lapses and the reconciler puts the task back. Retryable failures run again with exponential
backoff until ``task_max_attempts``; permanent failures fail the task and its dependents.
Knows no queue: tasks made ready go to the ``Dispatcher`` it is given.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import redis

from appliance import logs
from appliance.conversions.events import announce
from appliance.conversions.lifecycle import ImportRouting, count_job_end, files_of, released
from appliance.conversions.operation import Operation, Progress
from appliance.conversions.operations.enabled import OPERATIONS
from appliance.conversions.operations.export_url import ExportUrl
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import InputFile, Outcome, Ready, Task
from appliance.db.queries import tasks as task_rows
from appliance.engines import cputime, deadline
from appliance.errors import ApplianceError, PermanentError, RetryableError
from appliance.metrics import TASK_DURATION, TASKS_ENDED, TASKS_IN_PROGRESS, preset

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 0.5  # how often a running task's progress may be written
HAND_BACK_SECONDS = 1.0  # a worker out of disk: its wait before a task goes back, and its delay


class TaskRunner:
    def __init__(self, rt: Runtime, operations: Mapping[str, Operation] = OPERATIONS) -> None:
        self.rt = rt
        self.operations = dict(operations)  # the enabled ones, by name
        preset(operations=list(operations))
        # Until when this worker takes no task: its disk was full (monotonic; shared by the
        # process's threads, a float written whole).
        self._full_until = 0.0

    def run(self, task_id: str, queue: str) -> None:
        """Run the task, then any it made ready that run inline (``Operation.inline``)."""
        ids = (logs.task_id.set(task_id), logs.job_id.set(None))
        try:
            if time.monotonic() < self._full_until:
                self._hand_back(task_id, queue)
                return
            task = self._claim(task_id)
            if task is None:
                self._too_early(task_id, queue)
                return
            if task.job_id is not None:
                logs.job_id.set(str(task.job_id))
            start = time.perf_counter()
            with TASKS_IN_PROGRESS.labels(queue).track_inprogress():
                status, inline = self._attempt(task)
            TASK_DURATION.labels(task.operation).observe(time.perf_counter() - start)
            TASKS_ENDED.labels(task.operation, status).inc()
        finally:
            logs.task_id.reset(ids[0])
            logs.job_id.reset(ids[1])
        for ready in inline:
            try:
                self.run(str(ready.task_id), ready.queue)
            except Exception:  # the task stays ready: the reconciler enqueues it
                log.exception("task %s could not run after its input", ready.task_id)

    def _attempt(self, task: Task) -> tuple[str, list[Ready]]:
        """Run the claimed task once; its status afterwards (finished, error or retry), and
        the tasks it made ready that this worker runs next."""
        try:
            with _Lease(self.rt, task.id, task.attempts) as lease:
                try:
                    outcome = self._run_within_timeout(task, lease.progress)
                except Exception as exc:
                    if not isinstance(exc, ApplianceError) and _disk_full(exc):
                        # this host's disk (its data directory): another worker may have room,
                        # and this one takes no task for a while (it would fail them all fast,
                        # retries included, and spend their attempts)
                        if pause := self.rt.settings.no_space_pause_seconds:
                            self._full_until = time.monotonic() + pause
                        raise RetryableError(
                            "The worker's disk is full (no space left on device)",
                            code="NO_SPACE",
                        ) from exc
                    raise
        except RetryableError as exc:
            log.warning(
                "task %s attempt %s failed, retryable: %s",
                task.id,
                task.attempts,
                exc,
                exc_info=exc.__cause__ is not None,
            )
            return self._retry_or_fail(task, exc), []
        except ApplianceError as exc:
            log.info("task %s failed: %s %s", task.id, exc.code, exc.message)
            self._fail(task, exc.code, exc.message)
            return "error", []
        except Exception as exc:
            log.exception("task %s attempt %s crashed", task.id, task.attempts)
            error = RetryableError(f"Internal error: {type(exc).__name__}", code="INTERNAL_ERROR")
            return self._retry_or_fail(task, error), []
        return "finished", self._finish(task, outcome)

    def _run_within_timeout(self, task: Task, progress: Progress) -> Outcome:
        """The operation's run, every engine run of it bounded by what the task's own
        ``timeout`` leaves; a failure once that has passed is the timeout's (not retried).
        The CPU seconds its engine runs used go with its outcome (usage metering)."""
        timeout = task.payload.get("timeout")
        with (
            deadline.within(float(timeout) if timeout else None) as limit,
            cputime.counting() as spent,
        ):
            try:
                outcome = self.operations[task.operation].run(self.rt, task, progress)
            except ApplianceError as exc:
                if not limit.passed():
                    raise
                raise PermanentError(
                    f"The task took longer than its timeout of {limit.seconds:g} s",
                    code="TIMEOUT",
                ) from exc
        if spent.seconds:
            outcome.cpu_seconds = spent.seconds
        return outcome

    def _claim(self, task_id: str) -> Task | None:
        """Take the task (one statement), with the files of the tasks it depends on."""
        with self.rt.pool.connection() as conn:
            row = task_rows.claim(conn, task_id, self.rt.settings.task_lease_seconds)
        return None if row is None else Task.from_row(row)

    def _hand_back(self, task_id: str, queue: str) -> None:
        """This worker's disk was full a moment ago: the task, not claimed (no attempt spent),
        goes back on its queue for a worker with room. The pause before it does keeps this
        worker from taking the queue's messages faster than the others."""
        log.info("task %s handed back: this worker's disk was full", task_id)
        # queued (and in the pending set) again before the pause, or the reconciler would
        # take it for a lost message meanwhile
        self._dispatch([Ready(task_id, queue)], delay_ms=int(HAND_BACK_SECONDS * 1000))
        time.sleep(HAND_BACK_SECONDS)

    def _too_early(self, task_id: str, queue: str) -> None:
        """A delayed retry that arrived before its time (clocks differ between hosts) goes
        back on the queue for the rest of the delay; anything else was taken, ended or
        deleted, and the message is dropped."""
        with self.rt.pool.connection() as conn:
            wait = task_rows.seconds_until_ready(conn, task_id)
        if wait is None:
            log.info("task %s is not ready to run (taken, ended or deleted); skipping", task_id)
            return
        self._dispatch([Ready(task_id, queue)], delay_ms=max(1, int(wait * 1000)))

    def _finish(self, task: Task, outcome: Outcome) -> list[Ready]:
        """Record the outcome; enqueue the tasks it made ready, or return those to run inline."""
        with self.rt.pool.connection() as conn:
            if task.operation.startswith("import/") and outcome.files:
                routing, end = ImportRouting(self.rt.registry, outcome), None
                while routing.more(end):
                    end = task_rows.complete_import(conn, routing.args(task.id, task.attempts))
            else:
                made = task_rows.WorkerEnd(
                    files_of(outcome),
                    outcome.result,
                    outcome.engine,
                    outcome.cache,
                    outcome.cpu_seconds,
                )
                end = task_rows.complete_with_exports(
                    conn, task.id, task.attempts, made, self._exports(task, outcome)
                )
            if end is not None and end["owned"]:
                count_job_end(conn, task.job_id, end["job_end"])
        assert end is not None
        if not end["owned"]:
            log.info("task %s was cancelled, deleted or re-run meanwhile", task.id)
            return []
        ended = end.get("ended") or []
        TASKS_ENDED.labels("export/url", "finished").inc(len(ended))
        ready = released(end)
        inline = {r["id"] for r in end["ready"] if self._inline(r["operation"])}
        self._dispatch([r for r in ready if r.task_id not in inline])
        self._announce(task, end["job_end"], ended)
        return [r for r in ready if r.task_id in inline]

    def _inline(self, operation: str) -> bool:
        op = self.operations.get(operation)
        return op is not None and op.inline

    def _exports(self, task: Task, outcome: Outcome) -> dict[str, Any]:
        """The ends of the task's exports that take its files alone ({id: {files, result}}),
        for the task's own end to make along with it (the claim names them)."""
        export = self.operations.get("export/url")
        if not task.exports or not outcome.files or not isinstance(export, ExportUrl):
            return {}
        inputs = [InputFile(f.sha256, f.filename, f.size) for f in outcome.files]
        urls = export.urls(self.rt, inputs)
        end = {"files": files_of(urls), "result": urls.result}
        return {str(export_id): end for export_id in task.exports}

    def _fail(self, task: Task, code: str, message: str) -> None:
        with self.rt.pool.connection() as conn, conn.transaction():
            job_end = None
            if task_rows.still_owned(conn, task.id, task.attempts):
                task_rows.fail(conn, task.id, code, message)
                job_end = task_rows.job_ended(conn, task.job_id)
                count_job_end(conn, task.job_id, job_end)
        self._announce(task, job_end)

    def _retry_or_fail(self, task: Task, exc: ApplianceError) -> str:
        if task.attempts >= self.rt.settings.task_max_attempts:
            self._fail(task, exc.code, f"{exc.message} (after {task.attempts} attempts)")
            return "error"
        delay = self.rt.settings.retry_backoff_seconds * 2 ** (task.attempts - 1)
        with self.rt.pool.connection() as conn, conn.transaction():
            if not task_rows.still_owned(conn, task.id, task.attempts):
                return "retry"
            task_rows.retry_later(conn, task.id, f"Retrying after: {exc.message}", delay)
        self._dispatch([Ready(task.id, task.queue)], delay_ms=int(delay * 1000))
        return "retry"

    def _dispatch(self, ready: list[Ready], delay_ms: int | None = None) -> None:
        """Enqueue after the commit; if Redis fails now, the reconciler enqueues later."""
        try:
            self.rt.dispatcher.dispatch(ready, delay_ms=delay_ms)
        except redis.RedisError:
            log.warning(
                "enqueue of %d tasks failed; the reconciler will retry", len(ready), exc_info=True
            )

    def _announce(self, task: Task, job_end: str | None, also: Any = ()) -> None:
        announce(self.rt.redis, task.id, *also, ended_job_id=task.job_id if job_end else None)


def _disk_full(exc: BaseException | None) -> bool:
    """Whether a write failed on a full disk (or quota) somewhere in ``exc``'s causes (an
    error raised ``from None`` hides what it was handling)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        hidden = exc.__suppress_context__
        exc, seen = exc.__cause__ or (None if hidden else exc.__context__), seen + 1
    return False


class _Lease:
    """Renews the task's lease every third of its length, and records its progress (percent):
    both from its own thread, which looks every PROGRESS_SECONDS, so the engine's thread never
    waits on Postgres for a progress report and a task shorter than that writes none."""

    def __init__(self, rt: Runtime, task_id: uuid.UUID, attempt: int) -> None:
        self.rt, self.task_id, self.attempt = rt, task_id, attempt
        self._stop = threading.Event()
        self._percent = 0
        self._thread = threading.Thread(target=self._renew, daemon=True, name=f"lease-{task_id}")

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def progress(self, fraction: float) -> None:
        self._percent = max(self._percent, min(99, int(fraction * 100)))

    def _renew(self) -> None:
        lease = self.rt.settings.task_lease_seconds
        written, last = 0, time.monotonic()  # the claim set percent 0 and the lease
        while not self._stop.wait(PROGRESS_SECONDS):
            percent, now = self._percent, time.monotonic()
            if percent == written and now - last < lease / 3:
                continue
            try:
                with self.rt.pool.connection() as conn:
                    task_rows.renew(conn, self.task_id, self.attempt, percent, lease)
                written, last = percent, now
            except Exception:
                log.warning("lease renewal of task %s failed", self.task_id, exc_info=True)
