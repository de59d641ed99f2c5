"""A task's life: its claim, lease and progress, its end (well, failed, retried), the job's
end, and an import's end with the queue classes of its dependents (migrations 0002-0005)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

from appliance.db import AsyncDictConnection, DictConnection

# The claim: appliance_claim_task (migration 0002), the input files, and the exports to end
# with the task.
CLAIM = (
    "SELECT c.*, (SELECT coalesce(json_agg(json_build_object('sha256', f.sha256,"
    " 'filename', f.filename, 'size', f.size, 'task_id', f.task_id)"
    " ORDER BY array_position(c.depends_on, f.task_id), f.position), '[]')"
    " FROM task_files f WHERE f.task_id = ANY(c.depends_on)) AS inputs,"
    # its job's exports that take its files alone: its end ends them too (migration 0005)
    " ARRAY(SELECT d.id FROM tasks d WHERE d.depends_on @> ARRAY[c.id]"
    " AND cardinality(d.depends_on) = 1 AND d.operation = 'export/url'"
    " AND d.status = 'waiting' AND d.job_id IS NOT DISTINCT FROM c.job_id) AS exports"
    " FROM appliance_claim_task(%s, %s) c"
)
# appliance_complete_task (migration 0006): a task ends well. Its row: owned, ready
# ([{id, queue, operation}]), job_end, doc (the task's JSON text when asked).
COMPLETE = "SELECT * FROM appliance_complete_task(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
# appliance_complete_import (migration 0003): an import ends, its dependents moved to queues;
# answers stale (with all dependents) when one appeared that the caller did not know.
COMPLETE_IMPORT = "SELECT * FROM appliance_complete_import(%s, %s, %s, %s, %s, %s, %s)"
# appliance_complete_with_exports (migration 0011): a task's end that ends its exports too,
# with the CPU seconds its engine runs used.
COMPLETE_WITH_EXPORTS = (
    "SELECT * FROM appliance_complete_with_exports(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
FAIL = "SELECT appliance_fail_task(%s, %s, %s)"
OWNED = "SELECT status, attempts FROM tasks WHERE id = %s FOR UPDATE"
RETRY_LATER = (
    "UPDATE tasks SET status = 'waiting', lease_until = NULL, message = %s,"
    " ready_at = now() + make_interval(secs => %s) WHERE id = %s"
)
RENEW = (
    "UPDATE tasks SET percent = %s, lease_until = now() + make_interval(secs => %s)"
    " WHERE id = %s AND status = 'processing' AND attempts = %s"
)
WAIT_LEFT = (
    "SELECT extract(epoch FROM ready_at - now()) AS wait FROM tasks"
    " WHERE id = %s AND status = 'waiting' AND ready_at > now()"
)
# appliance_refresh_job sets ended_at = now() (the transaction's start) only on the change to
# a final status, so exactly one transaction sees its own now() there.
JOB_ENDED = "SELECT status FROM jobs WHERE id = %s AND ended_at = now()"
SERVICE_FAULT = (
    "SELECT EXISTS (SELECT 1 FROM tasks WHERE job_id = %s AND status = 'error'"
    " AND code = ANY(%s)) AS service"
)
ROUTED_DEPENDENTS = (
    "SELECT status, user_id, appliance_routed_dependents(id) AS dependents,"
    " appliance_stored_bytes(tasks.user_id)"
    " AS stored_bytes, (SELECT quota_stored_bytes FROM users u WHERE u.id = tasks.user_id)"
    " AS quota_stored_bytes FROM tasks WHERE id = %s AND operation = %s"
)


def complete_args(
    task_id: Any,
    attempts: int | None,
    files: list[dict[str, Any]],
    result: dict[str, Any],
    engine: tuple[str, str] | None = None,
    queues: dict[str, str] | None = None,
    cache: list[dict[str, Any]] | None = None,
    doc: bool = False,
) -> tuple[Any, ...]:
    """COMPLETE's arguments: end a task well with its files, result, engine (id, version)
    and cache entries; dependents moved to ``queues`` ({task id: queue class}) and released;
    the job settled. ``attempts``: the worker's attempt that must still own the task, or
    None for an import still waiting."""
    engine_id, version = engine or (None, None)
    return (
        task_id,
        attempts,
        Jsonb(files),
        Jsonb(result),
        engine_id,
        version,
        Jsonb(queues or {}),
        Jsonb(cache or []),
        doc,
    )


def complete_import_args(
    task_id: Any,
    attempts: int | None,
    files: list[dict[str, Any]],
    result: dict[str, Any],
    plans: dict[str, dict[str, Any]],
    routed: list[uuid.UUID],
    doc: bool = False,
) -> tuple[Any, ...]:
    """COMPLETE_IMPORT's arguments: as COMPLETE's for an import, ``plans`` ({task id: {queue,
    routes}}, migration 0006) worked out for the dependents ``routed`` (the ones the caller
    knew of)."""
    return (task_id, attempts, Jsonb(files), Jsonb(result), Jsonb(plans), routed, doc)


# -- the worker (sync) ---------------------------------------------------------------------
def claim(conn: DictConnection, task_id: Any, lease_seconds: float) -> dict[str, Any] | None:
    return conn.execute(CLAIM, (task_id, lease_seconds)).fetchone()


def seconds_until_ready(conn: DictConnection, task_id: Any) -> float | None:
    """How long a waiting task's delayed retry is still off; None if it is not waiting so."""
    row = conn.execute(WAIT_LEFT, (task_id,)).fetchone()
    return None if row is None else float(row["wait"])


def complete_import(conn: DictConnection, args: tuple[Any, ...]) -> dict[str, Any]:
    row = conn.execute(COMPLETE_IMPORT, args).fetchone()
    assert row is not None
    return row


@dataclass(frozen=True)
class WorkerEnd:
    """What a worker's run of a task made, as COMPLETE_WITH_EXPORTS records it."""

    files: list[dict[str, Any]]
    result: dict[str, Any]
    engine: tuple[str, str] | None = None  # (engine id, version)
    cache: list[dict[str, Any]] = field(default_factory=list)  # conversion_cache rows
    cpu_seconds: float | None = None  # what its engine runs used (usage metering)


def complete_with_exports(
    conn: DictConnection, task_id: Any, attempts: int, end: WorkerEnd, exports: dict[str, Any]
) -> dict[str, Any]:
    """A task's end that also ends the exports in ``exports`` ({id: {files, result}})."""
    engine_id, version = end.engine or (None, None)
    args = (task_id, attempts, Jsonb(end.files), Jsonb(end.result), engine_id, version)
    row = conn.execute(
        COMPLETE_WITH_EXPORTS, (*args, Jsonb(end.cache), Jsonb(exports), end.cpu_seconds)
    ).fetchone()
    assert row is not None
    return row


def still_owned(conn: DictConnection, task_id: Any, attempts: int) -> bool:
    """In a transaction: whether the attempt still holds the task (row locked until the end)."""
    row = conn.execute(OWNED, (task_id,)).fetchone()
    return row is not None and row["status"] == "processing" and row["attempts"] == attempts


def fail(conn: DictConnection, task_id: Any, code: str, message: str) -> None:
    """The task and, transitively, its dependents fail (appliance_fail_task)."""
    conn.execute(FAIL, (task_id, code, message))


def retry_later(conn: DictConnection, task_id: Any, message: str, delay: float) -> None:
    conn.execute(RETRY_LATER, (message, delay, task_id))


def renew(
    conn: DictConnection, task_id: Any, attempt: int, percent: int, lease_seconds: float
) -> None:
    conn.execute(RENEW, (percent, lease_seconds, task_id, attempt))


def job_ended(conn: Any, job_id: Any) -> str | None:
    """The job's final status if this transaction ended it, else None."""
    if job_id is None:
        return None
    row = conn.execute(JOB_ENDED, (job_id,)).fetchone()
    return str(row["status"]) if row else None


def failed_by_service(conn: Any, job_id: Any, codes: frozenset[str]) -> bool:
    """Whether one of the job's tasks failed with one of ``codes``."""
    row = conn.execute(SERVICE_FAULT, (job_id, list(codes))).fetchone()
    return bool(row and row["service"])


# -- the API (async) -----------------------------------------------------------------------
async def complete_async(conn: AsyncDictConnection, args: tuple[Any, ...]) -> dict[str, Any] | None:
    return await (await conn.execute(COMPLETE, args)).fetchone()


async def complete_import_async(
    conn: AsyncDictConnection, args: tuple[Any, ...]
) -> dict[str, Any] | None:
    return await (await conn.execute(COMPLETE_IMPORT, args)).fetchone()


async def routed_dependents(
    conn: AsyncDictConnection, task_id: Any, operation: str
) -> dict[str, Any] | None:
    """A waiting import's status, user, the dependents whose queue its file's name may
    change, the bytes its user stores and their own cap of them (None: the setting's)."""
    return await (await conn.execute(ROUTED_DEPENDENTS, (task_id, operation))).fetchone()


async def fail_async(conn: AsyncDictConnection, task_id: Any, code: str, message: str) -> None:
    await conn.execute(FAIL, (task_id, code, message))
