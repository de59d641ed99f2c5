"""Keeps Postgres and the queues in step, and deletes what has expired.

One pass (at most one at a time across the fleet, by advisory lock):
1. tasks whose lease lapsed (their worker died) go back to waiting, or fail after
   ``task_max_attempts`` with WORKER_LOST;
2. ready tasks older than a grace period that no queue holds (not in the pending set) are
   enqueued again;
3. expired jobs and standalone tasks are deleted, and objects no longer referenced by any task
   or cache entry are removed from storage after a grace period;
4. every ``usage_flush_seconds`` (hourly), the stored byte-hours accrued go into the day's
   usage (``usage_daily``), and the days gone by are folded into one row per user;
5. the audit records appended since the last pass are chained onto the log
   (``security.audit.seal``), and hourly, those past ``audit_retention_days`` are pruned
   (``security.audit.prune``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from appliance.conversions.events import announce
from appliance.conversions.lifecycle import count_job_end
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import Ready
from appliance.db.queries import maintenance
from appliance.db.queries import usage as usage_rows
from appliance.jobs.dispatch import DramatiqDispatcher
from appliance.metrics import TASKS_ENDED
from appliance.security import audit
from appliance.storage import object_key

log = logging.getLogger(__name__)
# A pending entry older than this is taken for a lost message: far longer than a queue should
# hold a message, short enough that a lost one is not waited on for long.
PENDING_MAX_WAIT = 900.0
AUDIT_PRUNE_SECONDS = 3600.0  # how often the audit log's retention is applied


@dataclass
class PassReport:
    requeued: int = 0
    lapsed: int = 0
    lost: int = 0
    expired_jobs: int = 0
    settled_jobs: int = 0
    released: int = 0
    deleted_objects: int = 0
    usage_flushed: int = 0  # users whose stored byte-hours went into usage_daily
    usage_folded: int = 0  # rows of past days' usage folded into one per user and day
    audit_sealed: int = 0  # audit records chained onto the log
    audit_pruned: int = 0  # audit records past their retention, deleted


class Reconciler:
    """``dispatcher``: the queue side's, which also knows what is pending (the runtime's,
    by default)."""

    def __init__(self, rt: Runtime, dispatcher: DramatiqDispatcher | None = None) -> None:
        found = dispatcher or rt.dispatcher
        assert isinstance(found, DramatiqDispatcher)
        self.rt, self.dispatcher = rt, found
        self._next_flush = 0.0  # monotonic time of the next usage flush: the first pass
        self._next_prune = 0.0  # and of the next audit pruning

    def run_once(self) -> PassReport | None:
        """One pass; None when another process holds the reconciler lock."""
        with self.rt.pool.connection() as conn:
            if not maintenance.try_lock(conn):
                return None
            try:
                report = PassReport()
                self._lapsed_leases(report)
                self._stragglers(report)
                self._lost_messages(report)
                self._expire(report)
                self._flush_usage(report)
                self._seal_audit(report)
                self._prune_audit(report)
                return report
            finally:
                maintenance.unlock(conn)

    def _lapsed_leases(self, report: PassReport) -> None:
        s = self.rt.settings
        message = (
            f"The worker running this task stopped {s.task_max_attempts} "
            "times; the input may crash the engine"
        )
        failed, job_ends, back = maintenance.lapsed_leases(
            self.rt.pool, s.task_max_attempts, message
        )
        with self.rt.pool.connection() as conn:
            for row, job_end in zip(failed, job_ends, strict=True):
                TASKS_ENDED.labels(row["operation"], "error").inc()
                count_job_end(conn, row["job_id"], job_end)
        report.lost += len(failed)
        report.lapsed += len(back)
        if back:
            log.warning("re-running %d tasks whose worker stopped", len(back))
            self.dispatcher.dispatch([Ready(r["id"], r["queue"]) for r in back])
        for row, job_end in zip(failed, job_ends, strict=True):
            announce(self.rt.redis, row["id"], ended_job_id=row["job_id"] if job_end else None)

    def _stragglers(self, report: PassReport) -> None:
        report.settled_jobs, rows = maintenance.settle_and_release(self.rt.pool)
        if rows:
            log.warning("released %d tasks whose inputs had finished", len(rows))
            self.dispatcher.dispatch([Ready(r["id"], r["queue"]) for r in rows])
        report.released += len(rows)

    def _lost_messages(self, report: PassReport) -> None:
        grace = 2 * self.rt.settings.reconcile_interval_seconds
        by_queue: dict[str, list[str]] = defaultdict(list)
        for r in maintenance.ready_longer_than(self.rt.pool, grace):
            by_queue[r["queue"]].append(r["id"])
        for queue, ids in by_queue.items():
            pending = self.dispatcher.pending(queue, ids, PENDING_MAX_WAIT)
            missing = [Ready(i, queue) for i, p in zip(ids, pending, strict=True) if not p]
            if missing:
                log.warning(
                    "re-enqueueing %d ready tasks with no message on %s", len(missing), queue
                )
                self.dispatcher.dispatch(missing)
                report.requeued += len(missing)

    def _expire(self, report: PassReport) -> None:
        def delete(sha256: str) -> None:
            self.rt.storage.delete(object_key(sha256))

        report.expired_jobs, deleted = maintenance.expire(self.rt.pool, delete)
        report.deleted_objects += deleted

    def _flush_usage(self, report: PassReport) -> None:
        s = self.rt.settings
        if not s.usage_metering or time.monotonic() < self._next_flush:
            return
        self._next_flush = time.monotonic() + s.usage_flush_seconds
        report.usage_flushed = usage_rows.flush_stored(self.rt.pool)
        report.usage_folded = usage_rows.fold(self.rt.pool)

    def _seal_audit(self, report: PassReport) -> None:
        with self.rt.pool.connection() as conn:
            report.audit_sealed = audit.seal(conn)

    def _prune_audit(self, report: PassReport) -> None:
        s = self.rt.settings
        if not s.audit_retention_days or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + AUDIT_PRUNE_SECONDS
        with self.rt.pool.connection() as conn:
            report.audit_pruned = audit.prune(
                conn, s.signing_key(), s.audit_retention_days, datetime.now(UTC)
            )


class ReconcilerThread(threading.Thread):
    """Runs passes every ``reconcile_interval_seconds`` until stopped."""

    def __init__(self, rt: Runtime, dispatcher: DramatiqDispatcher | None = None) -> None:
        super().__init__(daemon=True, name="reconciler")
        self.reconciler = Reconciler(rt, dispatcher)
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
