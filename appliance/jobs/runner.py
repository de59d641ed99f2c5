"""Runs one task on a worker: claim it in Postgres, hold a lease, do the work, record the end.

The claim (``status`` waiting -> processing, ``attempts`` + 1) is atomic, so a duplicate
message is harmless. The lease is renewed while the task runs; if the worker dies the lease
lapses and the reconciler puts the task back. Retryable failures run again with exponential
backoff until ``task_max_attempts``; permanent failures fail the task and its dependents.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import dramatiq
import redis
from psycopg.types.json import Jsonb

from appliance import logs
from appliance.db import SyncPool
from appliance.engines import Engine
from appliance.engines.registry import Registry
from appliance.errors import ApplianceError, RetryableError
from appliance.jobs import graph
from appliance.jobs.dispatch import DramatiqDispatcher, Ready
from appliance.metrics import (
    JOBS_ENDED,
    TASK_DURATION,
    TASKS_ENDED,
    TASKS_IN_PROGRESS,
)
from appliance.settings import Settings
from appliance.storage import Storage

log = logging.getLogger(__name__)
EVENTS_CHANNEL = "appliance:events"
# Operations with no engine and no file transfer (export/url signs URLs): the worker whose
# task made one ready runs it at once, instead of a trip through a queue, where it would wait
# behind conversions for another worker. Claimed like any task, so a crash is recovered alike.
INLINE_OPERATIONS = frozenset({"export/url"})
PROGRESS_SECONDS = 0.5  # how often a running task's progress may be written


@dataclass
class OutFile:
    sha256: str
    size: int
    filename: str
    url: str | None = None


@dataclass
class Outcome:
    result: dict[str, Any]
    files: list[OutFile] = field(default_factory=list)
    engine: tuple[str, str] | None = None  # (engine id, version): the task's engine fields
    # conversion_cache rows for the outputs (input_sha256, output_format, options_hash,
    # engine_version, output_sha256, size), recorded with the task's end
    cache: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Runtime:
    """What a worker process holds: built once, shared by its threads."""

    settings: Settings
    pool: SyncPool
    storage: Storage
    registry: Registry
    dispatcher: DramatiqDispatcher
    redis: redis.Redis


def build_runtime(settings: Settings, broker: dramatiq.Broker) -> Runtime:
    from appliance.db import sync_pool
    from appliance.jobs.broker import make_dispatcher
    from appliance.storage import make_storage

    storage = make_storage(settings)
    if hasattr(storage, "ensure_bucket"):
        storage.ensure_bucket()
    return Runtime(
        settings=settings,
        pool=sync_pool(settings),
        storage=storage,
        registry=Registry(engines_for(settings)),
        dispatcher=make_dispatcher(settings, broker),  # type: ignore[arg-type]
        redis=redis.Redis.from_url(settings.effective_redis_url),
    )


def engines_for(settings: Settings) -> list[Engine]:
    """The enabled engines as a worker runs them: in sandboxed helpers unless turned off."""
    from appliance.engines.enabled import enabled_engines
    from appliance.engines.sandbox import HelperPool, Limits, sandboxed

    if settings.sandbox == "off":
        return enabled_engines()
    limits = Limits(
        timeout_seconds=settings.engine_timeout_seconds,
        memory_bytes=settings.engine_memory_mb << 20,
        restart_after=settings.engine_restart_after,
        office_restart_after=settings.office_restart_after,
        # A backstop over the helper's life: each run is bounded by its wall-clock timeout.
        cpu_seconds=max(3600, int(settings.engine_timeout_seconds * settings.engine_restart_after)),
    )
    size = settings.engine_helpers or os.cpu_count() or 1
    pool = HelperPool(settings.data_path / "sandbox", limits, size=size)
    return sandboxed(enabled_engines(), pool)


Operation = Callable[[Runtime, dict[str, Any], Callable[[float], None]], Outcome]


def announce(client: redis.Redis, *task_ids: Any, ended_job_id: Any = None) -> None:
    """Wake API requests waiting on these tasks, and on their job when their end ended the
    job (job waits answer only then). Best effort: waiters also poll."""
    try:
        client.publish(EVENTS_CHANNEL, " ".join(str(i) for i in (*task_ids, ended_job_id) if i))
    except redis.RedisError:
        log.warning("could not publish the end of tasks %s", task_ids, exc_info=True)


class TaskRunner:
    def __init__(self, rt: Runtime, operations: dict[str, Operation]) -> None:
        self.rt = rt
        self.operations = operations

    def run(self, task_id: str, queue: str, queued: bool = True) -> None:
        """Run a task; ``queued``: it came as a message (not inline, see INLINE_OPERATIONS)."""
        if queued:
            self.rt.dispatcher.picked_up(task_id, queue)
        ids = (logs.task_id.set(task_id), logs.job_id.set(None))
        try:
            task = self._claim(task_id)
            if task is None:
                self._too_early(task_id, queue)
                return
            if task["job_id"] is not None:
                logs.job_id.set(str(task["job_id"]))
            start = time.perf_counter()
            with TASKS_IN_PROGRESS.labels(queue).track_inprogress():
                status, inline = self._attempt(task)
            TASK_DURATION.labels(task["operation"]).observe(time.perf_counter() - start)
            TASKS_ENDED.labels(task["operation"], status).inc()
        finally:
            logs.task_id.reset(ids[0])
            logs.job_id.reset(ids[1])
        for ready in inline:
            try:
                self.run(str(ready.task_id), ready.queue, queued=False)
            except Exception:  # the task stays ready: the reconciler enqueues it
                log.exception("task %s could not run after its input", ready.task_id)

    def _attempt(self, task: dict[str, Any]) -> tuple[str, list[Ready]]:
        """Run the claimed task once; its status afterwards (finished, error or retry), and
        the tasks it made ready that this worker runs next (INLINE_OPERATIONS)."""
        task_id, attempt = task["id"], task["attempts"]
        lease = _Lease(self.rt, task["id"], attempt)
        try:
            with lease:
                outcome = self.operations[task["operation"]](self.rt, task, lease.progress)
        except RetryableError as exc:
            log.warning(
                "task %s attempt %s failed, retryable: %s",
                task_id,
                attempt,
                exc,
                exc_info=exc.__cause__ is not None,
            )
            return self._retry_or_fail(task, exc), []
        except ApplianceError as exc:
            log.info("task %s failed: %s %s", task_id, exc.code, exc.message)
            self._fail(task, exc.code, exc.message)
            return "error", []
        except Exception as exc:
            log.exception("task %s attempt %s crashed", task_id, attempt)
            error = RetryableError(f"Internal error: {type(exc).__name__}", code="INTERNAL_ERROR")
            return self._retry_or_fail(task, error), []
        return "finished", self._finish(task, outcome)

    def _claim(self, task_id: str) -> dict[str, Any] | None:
        """Take the task (one statement): its row, with ``inputs``: the files of the tasks it
        depends on, in input order, as operations use them."""
        with self.rt.pool.connection() as conn:
            return conn.execute(CLAIM, (task_id, self.rt.settings.task_lease_seconds)).fetchone()

    def _too_early(self, task_id: str, queue: str) -> None:
        """A delayed retry that arrived before its time (clocks differ between hosts) goes
        back on the queue for the rest of the delay; anything else was taken, ended or
        deleted, and the message is dropped."""
        with self.rt.pool.connection() as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM ready_at - now()) AS wait FROM tasks"
                " WHERE id = %s AND status = 'waiting' AND ready_at > now()",
                (task_id,),
            ).fetchone()
        if row is None:
            log.info("task %s is not ready to run (taken, ended or deleted); skipping", task_id)
            return
        delay_ms = max(1, int(float(row["wait"]) * 1000))
        self._dispatch([Ready(task_id, queue)], delay_ms=delay_ms)

    def _owned(self, conn: Any, task: dict[str, Any]) -> bool:
        row = conn.execute(
            "SELECT status, attempts FROM tasks WHERE id = %s FOR UPDATE", (task["id"],)
        ).fetchone()
        return (
            row is not None
            and row["status"] == "processing"
            and row["attempts"] == task["attempts"]
        )

    def _finish(self, task: dict[str, Any], outcome: Outcome) -> list[Ready]:
        """Record the outcome; enqueue the tasks it made ready, or return those to run inline."""
        with self.rt.pool.connection() as conn:
            if task["operation"].startswith("import/") and outcome.files:
                routing, end = ImportRouting(self.rt.registry, outcome), None
                while routing.more(end):
                    end = conn.execute(
                        COMPLETE_IMPORT, routing.args(task["id"], task["attempts"])
                    ).fetchone()
            else:
                end = conn.execute(
                    COMPLETE_WITH_EXPORTS,
                    (
                        *_outcome_args(task["id"], task["attempts"], outcome),
                        Jsonb(outcome.cache),
                        self._exports(task, outcome),
                    ),
                ).fetchone()
        assert end is not None
        if not end["owned"]:
            log.info("task %s was cancelled, deleted or re-run meanwhile", task["id"])
            return []
        ended = end.get("ended") or []
        TASKS_ENDED.labels("export/url", "finished").inc(len(ended))
        count_job_end(end["job_end"])
        ready = [Ready(r["id"], r["queue"]) for r in end["ready"]]
        inline = {r["id"] for r in end["ready"] if r["operation"] in INLINE_OPERATIONS}
        self._dispatch([r for r in ready if r.task_id not in inline])
        self._announce(task, end["job_end"], ended)
        return [r for r in ready if r.task_id in inline]

    def _exports(self, task: dict[str, Any], outcome: Outcome) -> Jsonb:
        """The ends of the task's exports that take its files alone ({id: {files, result}}),
        for the task's own end to make along with it (the claim names them)."""
        if not task.get("exports") or not outcome.files:
            return Jsonb({})
        inputs = {"inputs": [asdict(f) for f in outcome.files]}
        export = self.operations["export/url"](self.rt, inputs, lambda fraction: None)
        end = {"files": _files_json(export).obj, "result": export.result}
        return Jsonb({str(export_id): end for export_id in task["exports"]})

    def _fail(self, task: dict[str, Any], code: str, message: str) -> None:
        with self.rt.pool.connection() as conn, conn.transaction():
            job_end = None
            if self._owned(conn, task):
                conn.execute("SELECT appliance_fail_task(%s, %s, %s)", (task["id"], code, message))
                job_end = job_ended(conn, task["job_id"])
        count_job_end(job_end)
        self._announce(task, job_end)

    def _retry_or_fail(self, task: dict[str, Any], exc: ApplianceError) -> str:
        if task["attempts"] >= self.rt.settings.task_max_attempts:
            self._fail(task, exc.code, f"{exc.message} (after {task['attempts']} attempts)")
            return "error"
        delay = self.rt.settings.retry_backoff_seconds * 2 ** (task["attempts"] - 1)
        with self.rt.pool.connection() as conn, conn.transaction():
            if not self._owned(conn, task):
                return "retry"
            conn.execute(
                "UPDATE tasks SET status = 'waiting', lease_until = NULL, message = %s,"
                " ready_at = now() + make_interval(secs => %s) WHERE id = %s",
                (f"Retrying after: {exc.message}", delay, task["id"]),
            )
        self._dispatch([Ready(task["id"], task["queue"])], delay_ms=int(delay * 1000))
        return "retry"

    def _dispatch(self, ready: list[Ready], delay_ms: int | None = None) -> None:
        """Enqueue after the commit; if Redis fails now, the reconciler enqueues later."""
        try:
            self.rt.dispatcher.dispatch(ready, delay_ms=delay_ms)
        except redis.RedisError:
            log.warning(
                "enqueue of %d tasks failed; the reconciler will retry", len(ready), exc_info=True
            )

    def _announce(self, task: dict[str, Any], job_end: str | None, also: Any = ()) -> None:
        announce(self.rt.redis, task["id"], *also, ended_job_id=task["job_id"] if job_end else None)


# The claim's statement: appliance_claim_task (migration 0002), the input files, and the
# exports to end with the task.
CLAIM = (
    "SELECT c.*, (SELECT coalesce(json_agg(json_build_object('sha256', f.sha256,"
    " 'filename', f.filename, 'size', f.size)"
    " ORDER BY array_position(c.depends_on, f.task_id), f.position), '[]')"
    " FROM task_files f WHERE f.task_id = ANY(c.depends_on)) AS inputs,"
    # its job's exports that take its files alone: its end ends them too (migration 0005)
    " ARRAY(SELECT d.id FROM tasks d WHERE d.depends_on @> ARRAY[c.id]"
    " AND cardinality(d.depends_on) = 1 AND d.operation = 'export/url'"
    " AND d.status = 'waiting' AND d.job_id IS NOT DISTINCT FROM c.job_id) AS exports"
    " FROM appliance_claim_task(%s, %s) c"
)


COMPLETE = "SELECT * FROM appliance_complete_task(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
COMPLETE_IMPORT = "SELECT * FROM appliance_complete_import(%s, %s, %s, %s, %s, %s, %s)"
COMPLETE_WITH_EXPORTS = (
    "SELECT * FROM appliance_complete_with_exports(%s, %s, %s, %s, %s, %s, %s, %s)"
)
# An import's end is tried again while jobs made meanwhile add dependents to it; each try
# takes one statement, so more than a few in a row means something is wrong.
IMPORT_TRIES = 20


def complete_args(
    task_id: Any,
    attempts: int | None,
    outcome: Outcome,
    queues: dict[str, str] | None = None,
    doc: bool = False,
) -> tuple[Any, ...]:
    """COMPLETE's arguments (appliance_complete_task, migration 0002): end a task well with
    its files, engine, cache entries and result; dependents moved to ``queues`` ({task id:
    queue class}) and released; the job settled. ``attempts``: the worker's attempt that
    must still own the task, or None for an import still waiting. Its row: owned, ready
    ([{id, queue, operation}]), job_end, and doc (the task's JSON text when ``doc``)."""
    start = _outcome_args(task_id, attempts, outcome)
    return (*start, Jsonb(queues or {}), Jsonb(outcome.cache), doc)


def _outcome_args(task_id: Any, attempts: int | None, outcome: Outcome) -> tuple[Any, ...]:
    """The arguments COMPLETE and COMPLETE_WITH_EXPORTS begin with: the task, its attempt,
    files, result, engine and engine version."""
    engine, version = outcome.engine or (None, None)
    return (task_id, attempts, _files_json(outcome), Jsonb(outcome.result), engine, version)


def _files_json(outcome: Outcome) -> Jsonb:
    return Jsonb(
        [
            {"sha256": f.sha256, "filename": f.filename, "size": f.size, "url": f.url}
            for f in outcome.files
        ]
    )


class ImportRouting:
    """COMPLETE_IMPORT's arguments (appliance_complete_import, migration 0003): an import
    ends with its file, and the dependents it knows of move to the queue classes their input
    now needs, by the file's name. A stale answer (a job made meanwhile added a dependent)
    brings them all, and the call is made once more::

        routing, end = ImportRouting(registry, outcome, known), None
        while routing.more(end):
            end = conn.execute(COMPLETE_IMPORT, routing.args(task_id, attempts)).fetchone()

    ``dependents``: those known before the first call ([{id, operation, queue, payload}],
    appliance_routed_dependents); the call answers stale if there are others."""

    def __init__(
        self, registry: Registry, outcome: Outcome, dependents: list[dict[str, Any]] | None = None
    ) -> None:
        self.registry = registry
        self.outcome = outcome
        self.dependents = dependents or []
        self.tries = 0

    def args(self, task_id: Any, attempts: int | None, doc: bool = False) -> tuple[Any, ...]:
        self.tries += 1
        if self.tries > IMPORT_TRIES:
            raise RetryableError(
                f"Task {task_id} gained dependents on every one of {IMPORT_TRIES} tries to end"
            )
        queues = graph.queues_once_named(
            self.registry, self.dependents, self.outcome.files[0].filename
        )
        routed = [uuid.UUID(str(d["id"])) for d in self.dependents]
        return (
            task_id,
            attempts,
            _files_json(self.outcome),
            Jsonb(self.outcome.result),
            Jsonb(queues),
            routed,
            doc,
        )

    def more(self, end: dict[str, Any] | None) -> bool:
        """Whether to call (again): before the first call (``end`` None), and after a
        stale answer, whose dependents the next call works from."""
        if end is None:
            return self.tries == 0
        if end["stale"]:
            self.dependents = end["dependents"]
        return bool(end["stale"])


def job_ended(conn: Any, job_id: Any) -> str | None:
    """The job's final status if this transaction ended it, else None.

    ``appliance_refresh_job`` locks the job row and sets ``ended_at = now()`` (the
    transaction's start time) only on the change to a final status, so exactly one transaction
    sees its own ``now()`` there: the job is counted once however its last tasks race."""
    if job_id is None:
        return None
    row = conn.execute(
        "SELECT status FROM jobs WHERE id = %s AND ended_at = now()", (job_id,)
    ).fetchone()
    return str(row["status"]) if row else None


def count_job_end(status: str | None) -> None:
    if status is not None:
        JOBS_ENDED.labels(status).inc()


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
        renew_every = self.rt.settings.task_lease_seconds / 3
        written, last = 0, time.monotonic()  # the claim set percent 0 and the lease
        while not self._stop.wait(PROGRESS_SECONDS):
            percent, now = self._percent, time.monotonic()
            if percent == written and now - last < renew_every:
                continue
            try:
                with self.rt.pool.connection() as conn:
                    conn.execute(
                        "UPDATE tasks SET percent = %s,"
                        " lease_until = now() + make_interval(secs => %s)"
                        " WHERE id = %s AND status = 'processing' AND attempts = %s",
                        (percent, self.rt.settings.task_lease_seconds, self.task_id, self.attempt),
                    )
                written, last = percent, now
            except Exception:
                log.warning("lease renewal of task %s failed", self.task_id, exc_info=True)
