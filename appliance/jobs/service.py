"""Job and task operations for the API: create, read, list, cancel, retry, delete, upload.

Knows nothing of HTTP: takes plain values, returns JSON text built by Postgres
(the ``job_docs`` view / ``appliance_task_json``) or raises ``appliance.errors``.
Tasks that become ready are dispatched after the transaction commits.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from psycopg.types.json import Jsonb

from appliance.db import AsyncDictConnection, AsyncPool
from appliance.engines.registry import Registry
from appliance.errors import FileTooLarge, InvalidData, NotFound
from appliance.jobs import graph
from appliance.jobs.dispatch import Dispatcher, Ready
from appliance.jobs.files import RESERVE_FILE, Spool, safe_filename, store
from appliance.jobs.runner import (
    COMPLETE,
    COMPLETE_IMPORT,
    ImportRouting,
    Outcome,
    OutFile,
    complete_args,
)
from appliance.metrics import JOBS_CREATED, TASKS_ENDED, UPLOAD_BYTES
from appliance.security import signing
from appliance.settings import Settings
from appliance.storage import Storage

log = logging.getLogger(__name__)
UPLOAD_PURPOSE = "upload"
JOB_STATUSES = ("waiting", "processing", "finished", "error")


@dataclass
class JobService:
    settings: Settings
    pool: AsyncPool
    storage: Storage
    registry: Registry
    dispatcher: Dispatcher
    # Status reads (show and list of jobs and tasks) go here when a replica is configured.
    read_pool: AsyncPool | None = None

    # -- creation ------------------------------------------------------------------------
    async def create_job(self, user_id: uuid.UUID, tasks: Any, tag: str | None) -> str:
        async with self.pool.connection() as conn:
            refs = await self._external_refs(conn, user_id, tasks)
            planned = graph.plan(tasks, self.registry, refs.get)
            inline = await self._ingest_inline(planned)
            rows, ready = self._task_rows(planned)
            settle = bool(inline) or _existing_inputs(planned)
            # One statement, unless imported files or existing inputs have tasks to settle.
            async with conn.transaction() if settle else contextlib.nullcontext():
                row = await (
                    await conn.execute(
                        "SELECT * FROM appliance_create_job(%s, %s, %s, %s, %s)",
                        (user_id, tag, self.settings.job_retention_hours, rows, not settle),
                    )
                ).fetchone()
                assert row is not None
                doc: str = row["doc"]
                if settle:
                    ready += await self._settle(conn, planned, inline)
                    doc = await self._job_json(conn, row["new_job"], user_id)
        JOBS_CREATED.inc()
        await self._dispatch(ready)
        return doc

    async def create_task(self, user_id: uuid.UUID, operation: str, payload: Any) -> str:
        """The single-task routes (POST /v2/import/upload, /v2/convert, ...): no job."""
        if not isinstance(payload, dict):
            raise InvalidData("The body must be a JSON object")
        tasks = {"task": {**payload, "operation": operation}}
        async with self.pool.connection() as conn:
            refs = await self._external_refs(conn, user_id, tasks)
            planned = graph.plan(tasks, self.registry, refs.get)
            inline = await self._ingest_inline(planned)
            rows, ready = self._task_rows(planned)
            async with conn.transaction():
                await conn.execute(
                    "SELECT appliance_insert_tasks(NULL, %s, %s, %s)",
                    (user_id, self.settings.job_retention_hours, rows),
                )
                ready += await self._settle(conn, planned, inline)
                doc = await self._task_json(conn, user_id, planned[0].id)
        await self._dispatch(ready)
        assert doc is not None
        return doc

    async def _external_refs(
        self, conn: AsyncDictConnection, user_id: uuid.UUID, tasks: Any
    ) -> dict[str, tuple[uuid.UUID, str | None]]:
        """Inputs naming existing tasks of this user: ref -> (id, output format)."""
        if not isinstance(tasks, dict):
            return {}
        ids = set()
        for body in tasks.values():
            refs = body.get("input", []) if isinstance(body, dict) else []
            for ref in [refs] if isinstance(refs, str) else refs if isinstance(refs, list) else []:
                if isinstance(ref, str) and ref not in tasks:
                    with contextlib.suppress(ValueError):
                        ids.add(uuid.UUID(ref))
        if not ids:
            return {}
        rows = await (
            await conn.execute(
                "SELECT t.id, t.operation, t.payload, "
                " (SELECT filename FROM task_files f WHERE f.task_id = t.id"
                "  ORDER BY position LIMIT 1)"
                " AS filename FROM tasks t WHERE t.id = ANY(%s) AND t.user_id = %s",
                (list(ids), user_id),
            )
        ).fetchall()
        out = {}
        for r in rows:
            fmt = r["payload"].get("output_format") if r["operation"] == "convert" else None
            fmt = fmt or graph.extension_of(r["filename"] or r["payload"].get("filename"))
            out[str(r["id"])] = (r["id"], fmt)
        return out

    async def _ingest_inline(
        self, planned: list[graph.PlannedTask]
    ) -> dict[uuid.UUID, tuple[str, int, str]]:
        """import/base64 files are stored before the job is written: id -> (sha, size, name)."""
        out = {}
        for task in planned:
            if task.operation == "import/base64":
                data = task.payload.pop("file")
                name = safe_filename(str(task.payload.get("filename", "file")))
                spool, sha = await asyncio.to_thread(self._spool_base64, data, task.name)
                try:
                    await self._keep(spool, sha)
                finally:
                    spool.close()
                out[task.id] = (sha, spool.size, name)
                UPLOAD_BYTES.labels("base64").inc(spool.size)
        return out

    async def _keep(self, spool: Spool, sha: str) -> None:
        """Reserve the hash in Postgres (so the cleaner leaves it alone), then store the
        spooled file under it unless the bytes are already there."""
        async with self.pool.connection() as conn:
            await conn.execute(RESERVE_FILE, (sha, spool.size))
        await asyncio.to_thread(partial(store, consume=True), self.storage, spool.path, sha)

    def _spool_base64(self, data: Any, name: str) -> tuple[Spool, str]:
        limit = self.settings.max_upload_bytes
        if not isinstance(data, str):
            raise InvalidData(
                "file must be a base64 string",
                errors={f"tasks.{name}.file": ["must be a base64 string"]},
            )
        if len(data) * 3 // 4 > limit + 3:
            raise FileTooLarge(
                f"The file is larger than the limit of {limit} bytes",
                errors={f"tasks.{name}.file": [f"must not exceed {limit} bytes"]},
            )
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidData(
                "file is not valid base64", errors={f"tasks.{name}.file": ["is not valid base64"]}
            ) from exc
        spool = Spool(self.settings.data_path / "tmp", limit)
        try:
            spool.write(raw)
            return spool, spool.finish()
        except BaseException:
            spool.close()
            raise

    def _task_rows(self, planned: list[graph.PlannedTask]) -> tuple[Jsonb, list[Ready]]:
        """appliance_insert_tasks's JSON of the planned tasks (migration 0003), and those that
        are ready at once: no dependencies and no file to wait for."""
        ready: list[Ready] = []
        rows = []
        for task in planned:
            runs_now = not task.depends_on and task.operation not in (
                "import/upload",
                "import/base64",
            )
            rows.append(
                {
                    "id": str(task.id),
                    "name": task.name,
                    "operation": task.operation,
                    "queue": task.queue,
                    "payload": task.payload,
                    "depends_on": [str(d) for d in task.depends_on],
                    "result": (
                        self._upload_form(task.id) if task.operation == "import/upload" else None
                    ),
                    "runs_now": runs_now,
                }
            )
            if runs_now:
                ready.append(Ready(task.id, task.queue))
        return Jsonb(rows), ready

    async def _settle(
        self,
        conn: AsyncDictConnection,
        planned: list[graph.PlannedTask],
        inline: dict[uuid.UUID, tuple[str, int, str]],
    ) -> list[Ready]:
        """In the transaction that inserted ``planned``: end the imports whose files came
        inline, and settle the tasks whose inputs are existing tasks. The tasks made ready."""
        ready: list[Ready] = []
        for task_id, (sha, size, name) in inline.items():
            # the name was known when the job was planned: its dependents' queues follow it
            outcome = _file_outcome(sha, size, name)
            end = await (
                await conn.execute(COMPLETE, complete_args(task_id, None, outcome))
            ).fetchone()
            ready += _ended(end)[0]
            TASKS_ENDED.labels("import/base64", "finished").inc()
        if _existing_inputs(planned):
            ready += await _settle_external_inputs(conn, [t.id for t in planned])
        return ready

    def _upload_form(self, task_id: uuid.UUID) -> dict[str, Any]:
        expires = int(time.time()) + self.settings.url_ttl_seconds
        sig = signing.sign(self.settings.signing_key(), UPLOAD_PURPOSE, str(task_id), expires)
        return {
            "form": {
                "url": f"{self.settings.effective_public_url}/v2/upload/{task_id}",
                "parameters": {"expires": str(expires), "signature": sig},
            }
        }

    async def _dispatch(self, ready: list[Ready]) -> None:
        """Enqueue after the commit. If Redis fails here the work is already safe in Postgres
        and the reconciler enqueues it, so the client still gets its answer."""
        if not ready:
            return
        try:
            await asyncio.to_thread(self.dispatcher.dispatch, ready)
        except Exception:
            log.warning(
                "enqueue of %d ready tasks failed; the reconciler will retry",
                len(ready),
                exc_info=True,
            )

    # -- uploads -------------------------------------------------------------------------
    def verify_upload(self, task_id: uuid.UUID, expires: str, signature: str) -> None:
        try:
            exp = int(expires)
        except ValueError:
            exp = 0
        if not signing.verify(
            self.settings.signing_key(), UPLOAD_PURPOSE, str(task_id), exp, signature
        ):
            raise NotFound("The upload URL is invalid or has expired", code="INVALID_SIGNATURE")

    async def accept_upload(
        self, task_id: uuid.UUID, filename: Callable[[], str], chunks: AsyncIterator[bytes]
    ) -> str:
        """Stream one uploaded file to storage and finish its import/upload task.

        ``filename()`` is asked once the file has arrived (multipart names it late)."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT status, appliance_routed_dependents(id) AS dependents FROM tasks"
                    " WHERE id = %s AND operation = 'import/upload'",
                    (task_id,),
                )
            ).fetchone()
        if row is None:
            raise NotFound("The upload task does not exist")
        if row["status"] != "waiting":
            raise InvalidData(
                "The upload task already has a file or has ended", code="TASK_NOT_WAITING"
            )
        spool = Spool(self.settings.data_path / "tmp", self.settings.max_upload_bytes)
        try:
            async for chunk in chunks:
                spool.write(chunk)
            sha = spool.finish()
            UPLOAD_BYTES.labels("upload").inc(spool.size)
            await self._keep(spool, sha)
        finally:
            spool.close()
        # The dependents known before the upload move to the queues its name calls for; a job
        # made during the upload may have added one, and then the end is tried again.
        routing = ImportRouting(
            self.registry,
            _file_outcome(sha, spool.size, safe_filename(filename())),
            row["dependents"],
        )
        end = None
        async with self.pool.connection() as conn:
            while routing.more(end):
                end = await (
                    await conn.execute(COMPLETE_IMPORT, routing.args(task_id, None, doc=True))
                ).fetchone()
        ready, doc = _ended(end)
        TASKS_ENDED.labels("import/upload", "finished").inc()
        await self._dispatch(ready)
        assert doc is not None
        return doc

    # -- reads ---------------------------------------------------------------------------
    async def _read(self, fetch: Callable[[AsyncDictConnection], Awaitable[Any]]) -> Any:
        """``fetch`` on the replica; on the primary when there is none or the replica has
        not replayed the row yet (a job read right after its creation)."""
        if self.read_pool is not None:
            async with self.read_pool.connection() as conn:
                found = await fetch(conn)
            if found is not None:
                return found
        async with self.pool.connection() as conn:
            return await fetch(conn)

    async def get_job(self, user_id: uuid.UUID, job_id: uuid.UUID) -> str:
        doc = await self._read(lambda conn: self._job_json(conn, job_id, user_id))
        if doc is None:
            raise NotFound(f"Job {job_id} not found")
        return doc

    async def _job_json(
        self, conn: AsyncDictConnection, job_id: uuid.UUID, user_id: uuid.UUID
    ) -> Any:
        row = await (
            await conn.execute(
                "SELECT doc::text AS doc FROM job_docs WHERE id = %s AND user_id = %s",
                (job_id, user_id),
            )
        ).fetchone()
        return row["doc"] if row else None

    async def get_task(self, user_id: uuid.UUID, task_id: uuid.UUID) -> str:
        doc = await self._read(lambda conn: self._task_json(conn, user_id, task_id))
        if doc is None:
            raise NotFound(f"Task {task_id} not found")
        return doc

    async def _task_json(
        self, conn: AsyncDictConnection, user_id: uuid.UUID, task_id: uuid.UUID
    ) -> str | None:
        row = await (
            await conn.execute(
                "SELECT appliance_task_json(t)::text AS doc FROM tasks t WHERE id = %s"
                " AND user_id = %s",
                (task_id, user_id),
            )
        ).fetchone()
        return row["doc"] if row else None

    async def list_jobs(
        self,
        user_id: uuid.UUID,
        *,
        status: str | None,
        tag: str | None,
        page: int,
        per_page: int,
        include_tasks: bool,
    ) -> tuple[str, bool]:
        """JSON array text of one page and whether a next page exists."""
        _check_status(status)
        sql = LIST_JOBS_WITH_TASKS if include_tasks else LIST_JOBS
        args = (
            user_id,
            status,
            status,
            tag,
            tag,
            per_page + 1,
            (page - 1) * per_page,
        )
        return await self._page(sql, args, per_page)

    async def list_tasks(
        self,
        user_id: uuid.UUID,
        *,
        status: str | None,
        job_id: str | None,
        operation: str | None,
        page: int,
        per_page: int,
    ) -> tuple[str, bool]:
        _check_status(status)
        sql = (
            "SELECT coalesce(json_agg(appliance_task_json(t) ORDER BY t.created_at DESC,"
            " t.id DESC), '[]')::text AS doc, count(*) AS n FROM (SELECT * FROM tasks"
            " WHERE user_id = %s AND (%s::text IS NULL OR status = %s)"
            " AND (%s::uuid IS NULL OR job_id = %s) AND (%s::text IS NULL OR operation = %s)"
            " ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s) t"
        )
        job = _uuid_or_404(job_id, "job") if job_id else None
        args = (
            user_id,
            status,
            status,
            job,
            job,
            operation,
            operation,
            per_page + 1,
            (page - 1) * per_page,
        )
        return await self._page(sql, args, per_page)

    async def _page(self, sql: str, args: tuple[Any, ...], per_page: int) -> tuple[str, bool]:
        async with (self.read_pool or self.pool).connection() as conn:
            row = await (await conn.execute(sql, args)).fetchone()  # type: ignore[arg-type]
        assert row is not None
        if row["n"] <= per_page:
            return row["doc"], False
        # One extra row was fetched to learn whether a next page exists; drop it.
        items = json.loads(row["doc"])[:per_page]
        return json.dumps(items), True

    # -- changes -------------------------------------------------------------------------
    async def delete_job(self, user_id: uuid.UUID, job_id: uuid.UUID) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT appliance_delete_tasks(coalesce(array_agg(t.id), '{}'))"
                " FROM jobs j LEFT JOIN tasks t ON t.job_id = j.id"
                " WHERE j.id = %s AND j.user_id = %s GROUP BY j.id",
                (job_id, user_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"Job {job_id} not found")
            await conn.execute("DELETE FROM jobs WHERE id = %s", (job_id,))

    async def delete_task(self, user_id: uuid.UUID, task_id: uuid.UUID) -> None:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT appliance_delete_tasks(ARRAY[id]) AS n FROM tasks"
                    " WHERE id = %s AND user_id = %s",
                    (task_id, user_id),
                )
            ).fetchone()
        if row is None:
            raise NotFound(f"Task {task_id} not found")

    async def cancel_task(self, user_id: uuid.UUID, task_id: uuid.UUID) -> str:
        async with self.pool.connection() as conn:
            async with conn.transaction():
                row = await (
                    await conn.execute(
                        "SELECT status FROM tasks WHERE id = %s AND user_id = %s FOR UPDATE",
                        (task_id, user_id),
                    )
                ).fetchone()
                if row is None:
                    raise NotFound(f"Task {task_id} not found")
                if row["status"] not in ("waiting", "processing"):
                    raise InvalidData(
                        "Only waiting or processing tasks can be cancelled",
                        code="TASK_NOT_CANCELLABLE",
                    )
                await conn.execute(
                    "SELECT appliance_fail_task(%s, 'CANCELLED', %s)",
                    (task_id, "The task was cancelled"),
                )
            doc = await self._task_json(conn, user_id, task_id)
        assert doc is not None
        return doc

    async def retry_task(self, user_id: uuid.UUID, task_id: uuid.UUID) -> str:
        """A new task with the same operation, payload and inputs (CloudConvert's retry)."""
        async with self.pool.connection() as conn:
            async with conn.transaction():
                old = await (
                    await conn.execute(
                        "SELECT * FROM tasks WHERE id = %s AND user_id = %s", (task_id, user_id)
                    )
                ).fetchone()
                if old is None:
                    raise NotFound(f"Task {task_id} not found")
                if old["status"] not in ("finished", "error"):
                    raise InvalidData("Only ended tasks can be retried", code="TASK_NOT_ENDED")
                if old["operation"] in ("import/upload", "import/base64"):
                    raise InvalidData(
                        f"{old['operation']} tasks cannot be retried", code="TASK_NOT_RETRYABLE"
                    )
                new_id = uuid.uuid4()
                row = await (
                    await conn.execute(
                        "INSERT INTO tasks (id, job_id, user_id, name, operation, queue, payload,"
                        " depends_on, retry_of_task_id, ready_at, expires_at)"
                        " SELECT %s, job_id, user_id, name || '-retry-' || left(%s::text, 8),"
                        " operation, queue, payload, depends_on, id,"
                        " CASE WHEN NOT EXISTS (SELECT 1 FROM tasks d"
                        "   WHERE d.id = ANY(t.depends_on)"
                        "   AND d.status <> 'finished') THEN now() END, expires_at"
                        " FROM tasks t WHERE id = %s RETURNING ready_at, queue",
                        (new_id, new_id, task_id),
                    )
                ).fetchone()
                assert row is not None
                await conn.execute("SELECT appliance_refresh_job(%s)", (old["job_id"],))
            doc = await self._task_json(conn, user_id, new_id)
        if row["ready_at"] is not None:
            await self._dispatch([Ready(new_id, row["queue"])])
        assert doc is not None
        return doc

    async def wait_until_ended(
        self,
        fetch: Callable[[], Awaitable[str]],
        ended: Callable[[str], bool],
        wakeup: Callable[[float], Awaitable[None]],
    ) -> str:
        """Poll ``fetch`` until ``ended`` says so or the sync timeout passes."""
        deadline = time.monotonic() + self.settings.sync_timeout_seconds
        while True:
            doc = await fetch()
            remaining = deadline - time.monotonic()
            if ended(doc) or remaining <= 0:
                return doc
            await wakeup(min(remaining, 2.0))


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


def _existing_inputs(planned: list[graph.PlannedTask]) -> bool:
    """Whether some of the new tasks take existing tasks as inputs."""
    ids = {t.id for t in planned}
    return any(dep not in ids for t in planned for dep in t.depends_on)


def _file_outcome(sha: str, size: int, filename: str) -> Outcome:
    """An import's outcome: its one file."""
    return Outcome(
        {"files": [{"filename": filename, "size": size}]}, [OutFile(sha, size, filename)]
    )


def _ended(end: Any) -> tuple[list[Ready], str | None]:
    """A waiting import's end as COMPLETE or COMPLETE_IMPORT answered it: the tasks that
    became ready and the task's JSON text; TASK_NOT_WAITING if it already had a file or had
    ended."""
    if end is None or not end["owned"]:
        raise InvalidData(
            "The upload task already has a file or has ended", code="TASK_NOT_WAITING"
        )
    return [Ready(r["id"], r["queue"]) for r in end["ready"]], end["doc"]


async def _settle_external_inputs(conn: AsyncDictConnection, ids: list[uuid.UUID]) -> list[Ready]:
    """New tasks whose inputs are existing tasks: ready if those finished, failed if one failed.

    (Inputs still running release them later, like any dependency.) The inputs are locked
    first, so an input finishing at this moment either waits for this transaction (and then
    releases the new tasks itself) or has committed before the checks below read it."""
    await conn.execute(
        "SELECT 1 FROM tasks WHERE id IN (SELECT unnest(depends_on) FROM tasks"
        " WHERE id = ANY(%s)) AND NOT id = ANY(%s) ORDER BY id FOR SHARE",
        (ids, ids),
    )
    failed = await (
        await conn.execute(
            "SELECT t.id, min(d.message) AS message FROM tasks t JOIN tasks d"
            " ON d.id = ANY(t.depends_on) WHERE t.id = ANY(%s) AND d.status = 'error'"
            " GROUP BY t.id",
            (ids,),
        )
    ).fetchall()
    for row in failed:
        await conn.execute(
            "SELECT appliance_fail_task(%s, 'INPUT_TASK_FAILED', %s)",
            (row["id"], row["message"] or "an input task failed"),
        )
    rows = await (
        await conn.execute(
            "UPDATE tasks t SET ready_at = now() WHERE t.id = ANY(%s) AND t.status = 'waiting'"
            " AND t.ready_at IS NULL AND cardinality(t.depends_on) > 0 AND NOT EXISTS"
            " (SELECT 1 FROM tasks d WHERE d.id = ANY(t.depends_on) AND d.status <> 'finished')"
            " RETURNING t.id, t.queue",
            (ids,),
        )
    ).fetchall()
    return [Ready(r["id"], r["queue"]) for r in rows]


def _check_status(status: str | None) -> None:
    if status is not None and status not in JOB_STATUSES:
        raise InvalidData(
            f"Unknown status {status!r}",
            errors={"filter[status]": [f"must be one of {', '.join(JOB_STATUSES)}"]},
        )


def _uuid_or_404(value: str, kind: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{kind.capitalize()} {value} not found") from None
