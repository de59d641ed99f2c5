"""What the API reads and changes: jobs and tasks created, shown, listed, cancelled, retried
and deleted. Documents are CloudConvert's JSON, built by Postgres (``job_docs``,
``appliance_task_json``) and returned as text."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb

from appliance.db import AsyncDictConnection, SyncPool
from appliance.db.queries.files import forget_cached_outputs, released_now

CREATE_JOB = "SELECT * FROM appliance_create_job(%s, %s, %s, %s, %s, %s)"
# The same, with its audit record appended in the same statement (one commit: a job's
# creation costs no second fsync), after the job is made (the chain's lock is taken last).
CREATE_JOB_AUDITED = (
    "SELECT c.*, appliance_audit_append(%s, %s, %s, 'job:' || c.new_job, %s) AS audit_seq"
    " FROM appliance_create_job(%s, %s, %s, %s, %s, %s) c"
)
INSERT_TASKS = "SELECT appliance_insert_tasks(NULL, %s, %s, %s)"
EXTERNAL_INPUTS = (
    "SELECT t.id, t.operation, t.payload, "
    " (SELECT filename FROM task_files f WHERE f.task_id = t.id ORDER BY position LIMIT 1)"
    " AS filename FROM tasks t WHERE t.id = ANY(%s) AND t.user_id = %s"
)
_OPEN = "status IN ('waiting', 'processing')"
# A user's jobs and single tasks in flight (counted up to ``cap``: the work stays bounded
# whatever a user has), the bytes their live tasks hold, their own quotas (NULL: the
# setting's) and the CPU seconds their tasks used today and this month (UTC, migration 0011).
USER_LOAD = (
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM jobs"  # noqa: S608 (constants only)
    f" WHERE user_id = %(user)s AND {_OPEN} LIMIT %(cap)s) j)"
    " + (SELECT count(*) FROM (SELECT 1 FROM tasks"
    f" WHERE user_id = %(user)s AND job_id IS NULL AND {_OPEN} LIMIT %(cap)s) t) AS in_flight,"
    " appliance_stored_bytes(%(user)s)"
    " AS stored_bytes, u.quota_minutes_per_day, u.quota_minutes_per_month,"
    " u.quota_stored_bytes, m.cpu_today, m.cpu_month"
    " FROM (SELECT %(user)s::uuid AS id) me LEFT JOIN users u ON u.id = me.id,"
    " LATERAL (SELECT coalesce(sum(cpu_seconds) FILTER (WHERE day = d.today), 0) AS cpu_today,"
    " coalesce(sum(cpu_seconds), 0) AS cpu_month FROM usage_daily,"
    " (SELECT (now() AT TIME ZONE 'UTC')::date AS today) d"
    " WHERE user_id = me.id AND day >= date_trunc('month', d.today)::date) m"
)
JOB_DOC = "SELECT doc::text AS doc FROM job_docs WHERE id = %s AND user_id = %s"
TASK_DOC = "SELECT appliance_task_json(t)::text AS doc FROM tasks t WHERE id = %s AND user_id = %s"
# The files a task of the user made, in order: what a Gotenberg route answers with.
TASK_OUTPUTS = (
    "SELECT f.sha256, f.filename, f.size FROM task_files f JOIN tasks t ON t.id = f.task_id"
    " WHERE f.task_id = %s AND t.user_id = %s ORDER BY f.position"
)


def _list_jobs_sql(view: str) -> str:
    # ``view`` is one of the two constants below, never client input.
    return (
        "SELECT coalesce(json_agg(doc ORDER BY created_at DESC, id DESC), '[]')::text AS doc,"  # noqa: S608
        f" count(*) AS n FROM (SELECT * FROM {view} WHERE user_id = %s"
        " AND (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR tag = %s)"
        " ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s) j"
    )


LIST_JOBS = _list_jobs_sql("job_summaries")
LIST_JOBS_WITH_TASKS = _list_jobs_sql("job_docs")
LIST_TASKS = (
    "SELECT coalesce(json_agg(appliance_task_json(t) ORDER BY t.created_at DESC,"
    " t.id DESC), '[]')::text AS doc, count(*) AS n FROM (SELECT * FROM tasks"
    " WHERE user_id = %s AND (%s::text IS NULL OR status = %s)"
    " AND (%s::uuid IS NULL OR job_id = %s) AND (%s::text IS NULL OR operation = %s)"
    " ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s) t"
)
JOB_TASK_IDS = (
    "SELECT coalesce(array_agg(t.id), '{}') AS ids FROM jobs j LEFT JOIN tasks t"
    " ON t.job_id = j.id WHERE j.id = %s AND j.user_id = %s GROUP BY j.id"
)
DELETE_TASKS = "SELECT appliance_delete_tasks(%s)"
DELETE_JOB = "DELETE FROM jobs WHERE id = %s"
TASK_OF = "SELECT id FROM tasks WHERE id = %s AND user_id = %s"
TASK_STATUS_FOR_UPDATE = "SELECT status FROM tasks WHERE id = %s AND user_id = %s FOR UPDATE"
TASK_ROW = "SELECT * FROM tasks WHERE id = %s AND user_id = %s"
RETRY_TASK = (
    "INSERT INTO tasks (id, job_id, user_id, name, operation, queue, payload,"
    " depends_on, routes, retry_of_task_id, ready_at, expires_at)"
    " SELECT %s, job_id, user_id, name || '-retry-' || left(%s::text, 8),"
    " operation, queue, payload, depends_on, routes, id,"
    " CASE WHEN NOT EXISTS (SELECT 1 FROM tasks d"
    "   WHERE d.id = ANY(t.depends_on)"
    "   AND d.status <> 'finished') THEN now() END, expires_at"
    " FROM tasks t WHERE id = %s RETURNING ready_at, queue"
)
REFRESH_JOB = "SELECT appliance_refresh_job(%s)"
# New tasks whose inputs are existing tasks: the inputs locked, the failed ones found, the
# others released once all their inputs finished.
LOCK_EXTERNAL_INPUTS = (
    "SELECT 1 FROM tasks WHERE id IN (SELECT unnest(depends_on) FROM tasks"
    " WHERE id = ANY(%s)) AND NOT id = ANY(%s) ORDER BY id FOR SHARE"
)
FAILED_INPUTS = (
    "SELECT t.id, min(d.message) AS message FROM tasks t JOIN tasks d"
    " ON d.id = ANY(t.depends_on) WHERE t.id = ANY(%s) AND d.status = 'error'"
    " GROUP BY t.id"
)
RELEASE_READY = (
    "UPDATE tasks t SET ready_at = now() WHERE t.id = ANY(%s) AND t.status = 'waiting'"
    " AND t.ready_at IS NULL AND cardinality(t.depends_on) > 0 AND NOT EXISTS"
    " (SELECT 1 FROM tasks d WHERE d.id = ANY(t.depends_on) AND d.status <> 'finished')"
    " RETURNING t.id, t.queue"
)


async def _one(conn: AsyncDictConnection, sql: Any, args: tuple[Any, ...]) -> Any:
    return await (await conn.execute(sql, args)).fetchone()


async def _all(conn: AsyncDictConnection, sql: Any, args: tuple[Any, ...]) -> list[Any]:
    return await (await conn.execute(sql, args)).fetchall()


async def create_job(
    conn: AsyncDictConnection,
    user_id: uuid.UUID,
    tag: str | None,
    hours: float,
    rows: list[dict[str, Any]],
    doc: bool,
    webhook_url: str | None = None,
    audited: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    """A job and its tasks (appliance_create_job, migration 0008): new_job, and doc when
    asked; ``audited``: (event, actor, details) of an audit record appended with it."""
    args = (user_id, tag, hours, Jsonb(rows), doc, webhook_url)
    if audited is not None:
        event, actor, details = audited
        row = await _one(conn, CREATE_JOB_AUDITED, (event, user_id, actor, details, *args))
    else:
        row = await _one(conn, CREATE_JOB, args)
    assert row is not None
    return row  # type: ignore[no-any-return]


async def insert_tasks(
    conn: AsyncDictConnection, user_id: uuid.UUID, hours: float, rows: list[dict[str, Any]]
) -> None:
    """Tasks without a job (the single-task routes)."""
    await conn.execute(INSERT_TASKS, (user_id, hours, Jsonb(rows)))


async def external_inputs(
    conn: AsyncDictConnection, user_id: uuid.UUID, ids: list[uuid.UUID]
) -> list[dict[str, Any]]:
    """The user's tasks of these ids: id, operation, payload and first file's name."""
    return await _all(conn, EXTERNAL_INPUTS, (ids, user_id))


async def job_doc(conn: AsyncDictConnection, job_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
    row = await _one(conn, JOB_DOC, (job_id, user_id))
    return row["doc"] if row else None


async def task_doc(conn: AsyncDictConnection, task_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
    row = await _one(conn, TASK_DOC, (task_id, user_id))
    return row["doc"] if row else None


async def task_outputs(
    conn: AsyncDictConnection, task_id: uuid.UUID, user_id: uuid.UUID
) -> list[dict[str, Any]]:
    """The files of the user's task (sha256, filename, size), in order; [] if none."""
    return await _all(conn, TASK_OUTPUTS, (task_id, user_id))


def task_outputs_sync(pool: SyncPool, task_id: uuid.UUID, user_id: uuid.UUID) -> list[Any]:
    with pool.connection() as conn:
        return conn.execute(TASK_OUTPUTS, (task_id, user_id)).fetchall()


async def page(conn: AsyncDictConnection, sql: str, args: tuple[Any, ...]) -> tuple[str, int]:
    """One page of LIST_JOBS, LIST_JOBS_WITH_TASKS or LIST_TASKS: JSON text, row count."""
    row = await _one(conn, sql, args)
    assert row is not None
    return row["doc"], row["n"]


async def delete_job(
    conn: AsyncDictConnection, job_id: uuid.UUID, user_id: uuid.UUID
) -> list[str] | None:
    """In a transaction: the job, its tasks and the cached results made from their files
    deleted; the stored objects left without a reference (``files.released_now``), or None
    if the user has no such job."""
    row = await _one(conn, JOB_TASK_IDS, (job_id, user_id))
    if row is None:
        return None
    await forget_cached_outputs(conn, row["ids"])
    await conn.execute(DELETE_TASKS, (row["ids"],))
    await conn.execute(DELETE_JOB, (job_id,))
    return await released_now(conn)


async def delete_task(
    conn: AsyncDictConnection, task_id: uuid.UUID, user_id: uuid.UUID
) -> list[str] | None:
    """As ``delete_job``, for one task."""
    if await _one(conn, TASK_OF, (task_id, user_id)) is None:
        return None
    await forget_cached_outputs(conn, [task_id])
    await conn.execute(DELETE_TASKS, ([task_id],))
    return await released_now(conn)


async def task_status_for_update(
    conn: AsyncDictConnection, task_id: uuid.UUID, user_id: uuid.UUID
) -> str | None:
    row = await _one(conn, TASK_STATUS_FOR_UPDATE, (task_id, user_id))
    return row["status"] if row else None


async def task_row(
    conn: AsyncDictConnection, task_id: uuid.UUID, user_id: uuid.UUID
) -> dict[str, Any] | None:
    return await _one(conn, TASK_ROW, (task_id, user_id))  # type: ignore[no-any-return]


async def retry_task(
    conn: AsyncDictConnection, task_id: uuid.UUID, new_id: uuid.UUID, job_id: Any
) -> dict[str, Any]:
    """In a transaction: a copy of the task under ``new_id`` (ready if its inputs finished),
    its job settled again. The new row's ready_at and queue."""
    row = await _one(conn, RETRY_TASK, (new_id, new_id, task_id))
    assert row is not None
    await conn.execute(REFRESH_JOB, (job_id,))
    return row  # type: ignore[no-any-return]


async def settle_external_inputs(
    conn: AsyncDictConnection, ids: list[uuid.UUID]
) -> list[dict[str, Any]]:
    """New tasks whose inputs are existing tasks: failed if one failed, ready if all
    finished (those still running release them later, like any dependency). The inputs are
    locked first, so one finishing at this moment either waits for this transaction (and
    then releases the new tasks itself) or has committed before the checks read it. Returns
    the released tasks' id and queue."""
    await conn.execute(LOCK_EXTERNAL_INPUTS, (ids, ids))
    for row in await _all(conn, FAILED_INPUTS, (ids,)):
        await conn.execute(
            "SELECT appliance_fail_task(%s, 'INPUT_TASK_FAILED', %s)",
            (row["id"], row["message"] or "an input task failed"),
        )
    return await _all(conn, RELEASE_READY, (ids,))


async def user_load(conn: AsyncDictConnection, user_id: uuid.UUID, cap: int) -> dict[str, Any]:
    """A user's in_flight (jobs and single tasks, up to ``cap``), stored_bytes, quota_* (their
    own, or None) and cpu_today, cpu_month (seconds), in one statement."""
    row = await (await conn.execute(USER_LOAD, {"user": user_id, "cap": cap})).fetchone()
    assert row is not None
    return row  # type: ignore[no-any-return]
