"""Keeps Postgres and the queues in step, and deletes what has expired.

One pass (at most one at a time across the fleet, by advisory lock):
1. tasks whose lease lapsed (their worker died) go back to waiting, or fail after
   ``task_max_attempts`` with WORKER_LOST;
2. ready tasks older than a grace period that no queue holds (not in the pending set) are
   enqueued again;
3. expired jobs and standalone tasks are deleted, and objects no longer referenced by any task
   or cache entry are removed from storage after a grace period.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass

from appliance.jobs.dispatch import Ready
from appliance.jobs.runner import Runtime, announce, count_job_end, job_ended
from appliance.metrics import TASKS_ENDED
from appliance.storage import object_key

log = logging.getLogger(__name__)
LOCK_ID = 0x61707263  # "aprc"
UNREFERENCED_GRACE = "1 hour"
# A pending entry older than this is taken for a lost message: far longer than a queue should
# hold a message, short enough that a lost one is not waited on for long.
PENDING_MAX_WAIT = 900.0
CACHE_RETENTION = "7 days"


@dataclass
class PassReport:
    requeued: int = 0
    lapsed: int = 0
    lost: int = 0
    expired_jobs: int = 0
    settled_jobs: int = 0
    released: int = 0
    deleted_objects: int = 0


class Reconciler:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def run_once(self) -> PassReport | None:
        """One pass; None when another process holds the reconciler lock."""
        with self.rt.pool.connection() as conn:
            got = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (LOCK_ID,)).fetchone()
            if not got or not got["ok"]:
                return None
            try:
                report = PassReport()
                self._lapsed_leases(report)
                self._stragglers(report)
                self._lost_messages(report)
                self._expire(report)
                return report
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))

    def _lapsed_leases(self, report: PassReport) -> None:
        s = self.rt.settings
        with self.rt.pool.connection() as conn, conn.transaction():
            failed = conn.execute(
                "SELECT id, job_id, operation FROM tasks"
                " WHERE status = 'processing' AND lease_until < now()"
                " AND attempts >= %s FOR UPDATE SKIP LOCKED",
                (s.task_max_attempts,),
            ).fetchall()
            job_ends = []
            for row in failed:
                conn.execute(
                    "SELECT appliance_fail_task(%s, 'WORKER_LOST', %s)",
                    (
                        row["id"],
                        f"The worker running this task stopped {s.task_max_attempts} "
                        "times; the input may crash the engine",
                    ),
                )
                job_ends.append(job_ended(conn, row["job_id"]))
            back = conn.execute(
                "UPDATE tasks SET status = 'waiting', lease_until = NULL, ready_at = now()"
                " WHERE status = 'processing' AND lease_until < now() RETURNING id, queue"
            ).fetchall()
        for row, job_end in zip(failed, job_ends, strict=True):
            TASKS_ENDED.labels(row["operation"], "error").inc()
            count_job_end(job_end)
        report.lost += len(failed)
        report.lapsed += len(back)
        if back:
            log.warning("re-running %d tasks whose worker stopped", len(back))
            self.rt.dispatcher.dispatch([Ready(r["id"], r["queue"]) for r in back])
        for row, job_end in zip(failed, job_ends, strict=True):
            announce(self.rt.redis, row["id"], ended_job_id=row["job_id"] if job_end else None)

    def _stragglers(self, report: PassReport) -> None:
        with self.rt.pool.connection() as conn:
            settled = conn.execute("SELECT appliance_settle_jobs() AS n").fetchone()
            report.settled_jobs = settled["n"] if settled else 0
            rows = conn.execute(
                "SELECT r.id, t.queue FROM appliance_release_stragglers() r(id)"
                " JOIN tasks t ON t.id = r.id"
            ).fetchall()
        if rows:
            log.warning("released %d tasks whose inputs had finished", len(rows))
            self.rt.dispatcher.dispatch([Ready(r["id"], r["queue"]) for r in rows])
        report.released += len(rows)

    def _lost_messages(self, report: PassReport) -> None:
        grace = 2 * self.rt.settings.reconcile_interval_seconds
        with self.rt.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id::text AS id, queue FROM tasks WHERE status = 'waiting'"
                " AND ready_at < now() - make_interval(secs => %s) LIMIT 5000",
                (grace,),
            ).fetchall()
        by_queue: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            by_queue[r["queue"]].append(r["id"])
        for queue, ids in by_queue.items():
            pending = self.rt.dispatcher.pending(queue, ids, PENDING_MAX_WAIT)
            missing = [Ready(i, queue) for i, p in zip(ids, pending, strict=True) if not p]
            if missing:
                log.warning(
                    "re-enqueueing %d ready tasks with no message on %s", len(missing), queue
                )
                self.rt.dispatcher.dispatch(missing)
                report.requeued += len(missing)

    def _expire(self, report: PassReport) -> None:
        with self.rt.pool.connection() as conn:
            report.expired_jobs = conn.execute("DELETE FROM jobs WHERE expires_at < now()").rowcount
            conn.execute("DELETE FROM tasks WHERE job_id IS NULL AND expires_at < now()")
            conn.execute(
                "DELETE FROM conversion_cache WHERE last_hit_at < now() - %s::interval",
                (CACHE_RETENTION,),
            )
            while True:
                with conn.transaction():
                    gone = conn.execute(
                        "DELETE FROM files WHERE sha256 IN (SELECT sha256 FROM files"
                        " WHERE refcount <= 0 AND released_at < now() - %s::interval LIMIT 500"
                        " FOR UPDATE SKIP LOCKED) RETURNING sha256",
                        (UNREFERENCED_GRACE,),
                    ).fetchall()
                    for row in gone:
                        self.rt.storage.delete(object_key(row["sha256"]))
                report.deleted_objects += len(gone)
                if len(gone) < 500:
                    break


class ReconcilerThread(threading.Thread):
    """Runs passes every ``reconcile_interval_seconds`` until stopped."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(daemon=True, name="reconciler")
        self.reconciler = Reconciler(rt)
        self.interval = rt.settings.reconcile_interval_seconds
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                report = self.reconciler.run_once()
                if report and (report.requeued or report.lapsed or report.lost):
                    log.info("reconciler pass: %s", report)
            except Exception:
                log.exception("reconciler pass failed")

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)
