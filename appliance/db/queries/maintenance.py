"""The reconciler's statements: lapsed leases, stragglers, lost messages, expiry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appliance.db import DictConnection, SyncPool
from appliance.db.queries.files import RELEASED_NOW
from appliance.db.queries.idempotency import PRUNE as PRUNE_IDEMPOTENCY_KEYS
from appliance.db.queries.tasks import fail, job_ended

LOCK_ID = 0x61707263  # "aprc": at most one reconciler pass at a time across the fleet
UNREFERENCED_GRACE = "1 hour"
CACHE_RETENTION = "7 days"
LAPSED_FOR_GOOD = (
    "SELECT id, job_id, operation FROM tasks WHERE status = 'processing'"
    " AND lease_until < now() AND attempts >= %s FOR UPDATE SKIP LOCKED"
)
LAPSED_BACK = (
    "UPDATE tasks SET status = 'waiting', lease_until = NULL, ready_at = now()"
    " WHERE status = 'processing' AND lease_until < now() RETURNING id, queue"
)
STRAGGLERS = (
    "SELECT r.id, t.queue FROM appliance_release_stragglers() r(id) JOIN tasks t ON t.id = r.id"
)
READY_FOR = (
    "SELECT id::text AS id, queue FROM tasks WHERE status = 'waiting'"
    " AND ready_at < now() - make_interval(secs => %s) LIMIT 5000"
)
FORGET_EXPIRED_OUTPUTS = (
    "DELETE FROM conversion_cache WHERE output_sha256 IN (SELECT f.sha256 FROM task_files f"
    " JOIN tasks t ON t.id = f.task_id LEFT JOIN jobs j ON j.id = t.job_id"
    " WHERE j.expires_at < now() OR (t.job_id IS NULL AND t.expires_at < now()))"
)
UNREFERENCED = (
    "DELETE FROM files WHERE sha256 IN (SELECT sha256 FROM files"
    " WHERE refcount <= 0 AND released_at < now() - %s::interval LIMIT 500"
    " FOR UPDATE SKIP LOCKED) RETURNING sha256"
)


def try_lock(conn: DictConnection) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (LOCK_ID,)).fetchone()
    return bool(row and row["ok"])


def unlock(conn: DictConnection) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))


def lapsed_leases(
    pool: SyncPool, max_attempts: int, message: str
) -> tuple[list[dict[str, Any]], list[str | None], list[dict[str, Any]]]:
    """Tasks whose worker stopped: those out of attempts fail (WORKER_LOST), the others go
    back to waiting. (failed rows, the job end each failure caused, rows back to waiting)."""
    with pool.connection() as conn, conn.transaction():
        failed = conn.execute(LAPSED_FOR_GOOD, (max_attempts,)).fetchall()
        job_ends = []
        for row in failed:
            fail(conn, row["id"], "WORKER_LOST", message)
            job_ends.append(job_ended(conn, row["job_id"]))
        back = conn.execute(LAPSED_BACK).fetchall()
    return failed, job_ends, back


def settle_and_release(pool: SyncPool) -> tuple[int, list[dict[str, Any]]]:
    """Jobs never settled are settled; tasks whose inputs all finished but were never
    released are (id, queue rows). Safety nets: neither should happen."""
    with pool.connection() as conn:
        settled = conn.execute("SELECT appliance_settle_jobs() AS n").fetchone()
        rows = conn.execute(STRAGGLERS).fetchall()
    return (settled["n"] if settled else 0), rows


def ready_longer_than(pool: SyncPool, seconds: float) -> list[dict[str, Any]]:
    with pool.connection() as conn:
        return conn.execute(READY_FOR, (seconds,)).fetchall()


def expire(pool: SyncPool, delete_object: Callable[[str], None]) -> tuple[int, int]:
    """Expired jobs and standalone tasks deleted with the cached results of their files, and
    expired idempotency keys;
    at once the objects that left unreferenced; stale cache entries dropped, and objects
    unreferenced past the grace period (never referenced, e.g.) deleted. Objects go through
    ``delete_object(sha256)`` inside the transaction that deletes their row.
    (expired jobs, deleted objects)"""
    with pool.connection() as conn:
        with conn.transaction():
            conn.execute(FORGET_EXPIRED_OUTPUTS)
            jobs = conn.execute("DELETE FROM jobs WHERE expires_at < now()").rowcount
            conn.execute("DELETE FROM tasks WHERE job_id IS NULL AND expires_at < now()")
            released = [r["sha256"] for r in conn.execute(RELEASED_NOW).fetchall()]
            for sha in released:
                delete_object(sha)
        deleted = len(released)
        conn.execute(PRUNE_IDEMPOTENCY_KEYS)
        conn.execute(
            "DELETE FROM conversion_cache WHERE last_hit_at < now() - %s::interval",
            (CACHE_RETENTION,),
        )
        while True:
            with conn.transaction():
                gone = conn.execute(UNREFERENCED, (UNREFERENCED_GRACE,)).fetchall()
                for row in gone:
                    delete_object(row["sha256"])
            deleted += len(gone)
            if len(gone) < 500:
                return jobs, deleted
