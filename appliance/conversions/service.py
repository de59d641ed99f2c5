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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from appliance.conversions import graph
from appliance.conversions import idempotency as idempotent
from appliance.conversions.admission import Backlog
from appliance.conversions.files import (
    Spool,
    key_owner,
    owned_digest,
    owner,
    safe_filename,
    spool_for,
    store,
)
from appliance.conversions.gotenberg import Output
from appliance.conversions.idempotency import Idempotency
from appliance.conversions.lifecycle import (
    ImportRouting,
    client_import_ended,
    files_of,
    import_outcome,
)
from appliance.conversions.operations.enabled import OPERATIONS
from appliance.conversions.status_cache import StatusCache
from appliance.conversions.task import Dispatcher, Ready
from appliance.conversions.webhooks import check_url
from appliance.db import AsyncDictConnection, AsyncPool, async_pool
from appliance.db.changes import LoopStatusTokens
from appliance.db.queries import files as file_rows
from appliance.db.queries import health, scans
from appliance.db.queries import jobs as job_rows
from appliance.db.queries import tasks as task_rows
from appliance.engines import QUEUE_CLASSES
from appliance.engines.enabled import enabled_engines
from appliance.engines.registry import Registry
from appliance.errors import (
    FileTooLarge,
    InvalidData,
    NotFound,
    QuotaExceeded,
    TooManyRequests,
)
from appliance.metrics import (
    JOBS_CREATED,
    RATELIMIT_REJECTIONS,
    TASKS_ENDED,
    UPLOAD_BYTES,
    preset,
)
from appliance.scanning import scanner
from appliance.security import audit, sealing, signing
from appliance.security.limits import OnRefused, Rule
from appliance.security.quotas import Quota
from appliance.security.streams import Sealer
from appliance.settings import Settings
from appliance.storage import make_storage, object_key
from appliance.storage.sealed import SealedStorage

log = logging.getLogger(__name__)
UPLOAD_PURPOSE = "upload"
JOB_STATUSES = ("waiting", "processing", "finished", "error")
IN_FLIGHT_RETRY_AFTER = 10  # seconds: a client at its cap of jobs in flight looks again
IN_FLIGHT_CODE = "TOO_MANY_JOBS_IN_FLIGHT"
InlineFiles = dict[uuid.UUID, tuple[str, int, str]]  # import/base64 task -> (sha, size, name)


@dataclass
class JobService:
    settings: Settings
    pool: AsyncPool
    storage: SealedStorage
    registry: Registry
    dispatcher: Dispatcher
    # Status reads (show and list of jobs and tasks) go here when a replica is configured.
    read_pool: AsyncPool | None = None
    # Job and task documents served from memory while unchanged (``status_cache``).
    status: StatusCache | None = None
    # Told of each refusal at a per-user cap (the API's audit log samples them).
    on_limit: OnRefused | None = None
    # What renews the status tokens of the jobs the pool's writes change (closed with it).
    tokens: LoopStatusTokens | None = None

    def __post_init__(self) -> None:
        preset(queues=QUEUE_CLASSES, operations=OPERATIONS)
        self.backlog = Backlog(self.dispatcher, self.settings.max_queue_backlog)

    @classmethod
    async def open(cls, settings: Settings, dispatcher: Dispatcher) -> JobService:
        """The API process's service: pools (and the replica's), storage, the engines, the
        status cache. Its writes renew the changed jobs' status tokens before they return."""
        tokens = LoopStatusTokens.at(settings.effective_redis_url, settings.job_retention_hours)
        pool = await async_pool(settings, on_change=tokens.renew)
        read_pool = None
        if settings.database_read_url:
            read_pool = await async_pool(settings, settings.database_read_url)
        storage = make_storage(settings)
        await asyncio.to_thread(storage.ensure_ready)
        registry = Registry(enabled_engines())
        status = StatusCache.for_settings(settings)
        return cls(settings, pool, storage, registry, dispatcher, read_pool, status, tokens=tokens)

    async def close(self) -> None:
        await self.pool.close()
        if self.read_pool is not None:
            await self.read_pool.close()
        if self.status is not None:
            await self.status.client.aclose()
        if self.tokens is not None:
            await self.tokens.client.aclose()

    async def ping(self) -> None:
        """Raise unless Postgres answers (readiness)."""
        await health.ping(self.pool)

    # -- creation ------------------------------------------------------------------------
    async def create_job(
        self,
        user_id: uuid.UUID,
        tasks: Any,
        tag: str | None,
        *,
        webhook_url: str | None = None,
        idempotency: Idempotency | None = None,
    ) -> str:
        """A job; ``webhook_url`` gets its job.finished or job.failed (``webhooks``). With
        ``idempotency`` a repeat raises ``Replayed`` with the first answer (``idempotency``)."""
        if webhook_url is not None:
            check_url(webhook_url, "webhook_url")
        graph.check_tag(tag)
        if isinstance(tasks, dict) and len(tasks) > self.settings.max_tasks_per_job:
            cap = self.settings.max_tasks_per_job
            raise InvalidData(
                f"A job may have at most {cap} tasks",
                code="TOO_MANY_TASKS",
                errors={"tasks": [f"must not have more than {cap} tasks"]},
            )
        planned, inline = await self._admit(user_id, tasks, idempotency)
        rows, ready = self._task_rows(planned, inline)
        settle = bool(inline) or _existing_inputs(planned)
        several = settle or idempotency is not None
        hours = self.settings.job_retention_hours
        details = {"tasks": len(planned), "tag": tag, "webhook": webhook_url is not None}
        audited = audit.entry("job.created", details, actor="api")
        # One statement (its audit record with it), unless imported files or existing inputs
        # have tasks to settle or a key is kept; then the audit record comes last: it locks
        # the chain's head, which every creation waits for, until the commit. (Not a
        # pipeline: the lab showed a dead host's transaction, left mid-pipeline, escapes the
        # idle limit, and held the head for good.)
        async with (
            self.pool.connection() as conn,
            conn.transaction() if several else contextlib.nullcontext(),
        ):
            await idempotent.claim(conn, user_id, idempotency)
            row = await job_rows.create_job(
                conn, user_id, tag, hours, rows, not settle, webhook_url,
                None if several else audited,
            )  # fmt: skip
            doc: str = row["doc"]
            if settle:
                ready += await self._settle(conn, planned, inline)
                doc = await self._job_json(conn, row["new_job"], user_id)
            await self._remember(conn, user_id, idempotency, doc)
            if several:
                subject = f"job:{row['new_job']}"
                await audit.record_async(
                    conn, "job.created", user_id, subject, details, actor="api"
                )
        JOBS_CREATED.inc()
        await self._dispatch(ready)
        return doc

    async def create_task(
        self,
        user_id: uuid.UUID,
        operation: str,
        payload: Any,
        idempotency: Idempotency | None = None,
    ) -> str:
        """The single-task routes (POST /v2/import/upload, /v2/convert, ...): no job."""
        if not isinstance(payload, dict):
            raise InvalidData("The body must be a JSON object")
        tasks = {"task": {**payload, "operation": operation}}
        planned, inline = await self._admit(user_id, tasks, idempotency)
        rows, ready = self._task_rows(planned, inline)
        async with self.pool.connection() as conn, conn.transaction():
            await idempotent.claim(conn, user_id, idempotency)
            await job_rows.insert_tasks(conn, user_id, self.settings.job_retention_hours, rows)
            ready += await self._settle(conn, planned, inline)
            doc = await job_rows.task_doc(conn, planned[0].id, user_id)
            assert doc is not None
            await self._remember(conn, user_id, idempotency, doc)
            subject, details = f"task:{planned[0].id}", {"operation": operation}
            await audit.record_async(  # last: it locks the chain's head until the commit
                conn, "task.created", user_id, subject, details, actor="api"
            )
        await self._dispatch(ready)
        return doc

    async def _admit(
        self, user_id: uuid.UUID, tasks: Any, idempotency: Idempotency | None
    ) -> tuple[list[graph.PlannedTask], InlineFiles]:
        """The checks before a job or task is written (a repeated key, the user's caps, the
        tasks it names, the queues' backlog), and its import/base64 files stored. The checks'
        connection goes back to the pool before the files are stored, which takes a
        connection of its own (``_keep``): a request holding one while it waits for another
        would, with the pool's every connection so held, wait out the pool timeout."""
        try:
            async with self.pool.connection() as conn:
                await idempotent.replay_if_done(conn, user_id, idempotency)
                await self._check_load(conn, user_id)
                refs = await self._external_refs(conn, user_id, tasks)
        except TooManyRequests as refused:  # audited (sampled) once the connection is back
            if refused.code == IN_FLIGHT_CODE and self.on_limit is not None:
                cap = self.settings.max_jobs_in_flight_per_user
                await self.on_limit(Rule("jobs-in-flight-per-user", "user", cap), str(user_id))
            raise
        planned = graph.plan(tasks, self.registry, refs.get)
        await self.backlog.admit(task.queue for task in planned)
        return planned, await self._ingest_inline(planned, user_id)

    async def _remember(
        self, conn: AsyncDictConnection, user_id: uuid.UUID, key: Idempotency | None, doc: str
    ) -> None:
        """The creating transaction's last step: a keyed request's answer, for its repeats."""
        hours = self.settings.idempotency_key_hours
        await idempotent.record(conn, user_id, key, (201, doc), hours)

    async def _check_load(self, conn: AsyncDictConnection, user_id: uuid.UUID) -> None:
        """Refuse new work to a user at their cap of jobs in flight (429: some will end), of
        stored bytes (403: until some expire or are deleted) or past their conversion minutes
        (402: until the next UTC day or month). One statement."""
        cap = self.settings.max_jobs_in_flight_per_user
        load = await job_rows.user_load(conn, user_id, cap or 1)
        if cap and load["in_flight"] >= cap:
            RATELIMIT_REJECTIONS.labels("user").inc()
            raise TooManyRequests(
                f"You have {cap} jobs and tasks waiting or processing, the most allowed;"
                " try again when some have ended",
                code=IN_FLIGHT_CODE,
                limit_headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER)},
            )
        quota = Quota.of(load, self.settings)
        _check_stored(load["stored_bytes"], quota.stored_bytes)
        quota.check_credits(load["cpu_today"], load["cpu_month"])

    async def _external_refs(
        self, conn: AsyncDictConnection, user_id: uuid.UUID, tasks: Any
    ) -> dict[str, tuple[uuid.UUID, str | None]]:
        """Inputs naming existing tasks of this user: ref -> (id, output format)."""
        ids = _external_ids(tasks)
        if not ids:
            return {}
        out = {}
        for r in await job_rows.external_inputs(conn, user_id, ids):
            fmt = r["payload"].get("output_format") if r["operation"] == "convert" else None
            fmt = fmt or graph.extension_of(r["filename"] or r["payload"].get("filename"))
            out[str(r["id"])] = (r["id"], fmt)
        return out

    async def _ingest_inline(
        self, planned: list[graph.PlannedTask], user_id: uuid.UUID
    ) -> InlineFiles:
        """import/base64 files are stored (as the user's) before the job is written."""
        out = {}
        room = self.settings.max_inline_file_bytes  # for all of the request's files
        for task in planned:
            if task.operation == "import/base64":
                data = task.payload.pop("file")
                name = safe_filename(str(task.payload.get("filename", "file")))
                spool, content = await asyncio.to_thread(
                    self._spool_base64, data, task.name, room, user_id
                )
                room -= spool.size
                sha = owned_digest(content, owner(self.settings, user_id))
                try:
                    await self._keep(spool, sha, user_id)
                finally:
                    spool.close()
                out[task.id] = (sha, spool.size, name)
                UPLOAD_BYTES.labels("base64").inc(spool.size)
        return out

    async def _keep(self, spool: Spool, sha: str, user_id: uuid.UUID) -> None:
        """Reserve the hash in Postgres (so the cleaner leaves it alone), then store the
        spooled file under it unless the bytes are already there."""
        await file_rows.reserve_async(self.pool, sha, spool.size)
        put = partial(
            store,
            owner=key_owner(self.settings, user_id),
            consume=True,
            sealed=spool.sealed,
        )
        await asyncio.to_thread(put, self.storage, spool.path, sha)

    def _spool_base64(
        self, data: Any, name: str, room: int, user_id: uuid.UUID
    ) -> tuple[Spool, str]:
        limit = min(self.settings.max_upload_bytes, room)
        if not isinstance(data, str):
            raise InvalidData(
                "file must be a base64 string",
                errors={f"tasks.{name}.file": ["must be a base64 string"]},
            )
        if len(data) * 3 // 4 > limit + 3:
            raise FileTooLarge(
                f"The file is larger than the limit of {limit} bytes left for import/base64"
                " files in one request; send larger files with import/upload",
                errors={f"tasks.{name}.file": [f"must not exceed {limit} bytes"]},
            )
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidData(
                "file is not valid base64", errors={f"tasks.{name}.file": ["is not valid base64"]}
            ) from exc
        spool = spool_for(self.storage, self.settings, user_id, limit)
        try:
            spool.write(raw)
            return spool, spool.finish()
        except BaseException:
            spool.close()
            raise

    def _task_rows(
        self, planned: list[graph.PlannedTask], inline: InlineFiles
    ) -> tuple[list[dict[str, Any]], list[Ready]]:
        """appliance_insert_tasks's rows of the planned tasks (migration 0003), and those that
        are ready at once: no dependencies and no file to wait for (an inline file to scan
        is a worker's to end, ``_settle``)."""
        ready: list[Ready] = []
        rows = []
        for task in planned:
            from_client = OPERATIONS[task.operation].file_from_client
            scanned_here = from_client and self._scans() and task.id in inline
            runs_now = not task.depends_on and (not from_client or scanned_here)
            form = self._upload_form(task.id) if task.operation == "import/upload" else None
            rows.append(
                {
                    "id": str(task.id),
                    "name": task.name,
                    "operation": task.operation,
                    "queue": task.queue,
                    "payload": self._stored_payload(task),
                    "depends_on": [str(d) for d in task.depends_on],
                    "routes": task.routes or None,
                    "result": form,
                    "runs_now": runs_now,
                }
            )
            if runs_now:
                ready.append(Ready(task.id, task.queue))
        return rows, ready

    def _stored_payload(self, task: graph.PlannedTask) -> dict[str, Any]:
        """The payload as stored: its operation's secret fields sealed (``security.sealing``)."""
        names = OPERATIONS[task.operation].secret_fields
        if not names:
            return task.payload
        key = sealing.derive_key(self.settings.signing_key())
        return sealing.seal(task.payload, names, key, str(task.id))

    async def _settle(
        self, conn: AsyncDictConnection, planned: list[graph.PlannedTask], inline: InlineFiles
    ) -> list[Ready]:
        """In the transaction that inserted ``planned``: end the imports whose files came
        inline, and settle the tasks whose inputs are existing tasks. The tasks made ready."""
        ready: list[Ready] = []
        for task_id, (sha, size, name) in inline.items():
            if self._scans():  # a worker scans it, then ends the import (made ready)
                await scans.hold(conn, task_id, sha, size, name)
                continue
            # the name was known when the job was planned: its dependents' queues follow it
            outcome = import_outcome(sha, size, name)
            args = task_rows.complete_args(task_id, None, files_of(outcome), outcome.result)
            ready += client_import_ended(await task_rows.complete_async(conn, args))[0]
            TASKS_ENDED.labels("import/base64", "finished").inc()
        if _existing_inputs(planned):
            rows = await job_rows.settle_external_inputs(conn, [t.id for t in planned])
            ready += [Ready(r["id"], r["queue"]) for r in rows]
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

    async def _announce(self, doc: str, job_ended: bool) -> None:
        """Wake the sync waits on a task the API itself ended (its JSON ``doc``), and on its
        job when ``job_ended``: workers announce the ends they make, these are the API's."""
        task = msgspec.json.decode(doc, type=_Ended)
        try:
            await asyncio.to_thread(
                self.dispatcher.announce, [task.id], task.job_id if job_ended else None
            )
        except Exception:
            log.warning("could not announce the end of task %s", task.id, exc_info=True)

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

        ``filename()`` is asked once the file has arrived (multipart names it late). The
        form's signature is checked as its file part begins (``chunks`` raises), before the
        task is looked up: an unsigned request learns nothing of whether the task exists."""
        chunks = aiter(chunks)
        first = await anext(chunks, b"")
        async with self.pool.connection() as conn:
            row = await task_rows.routed_dependents(conn, task_id, "import/upload")
        if row is None:
            raise NotFound("The upload task does not exist")
        if row["status"] != "waiting":
            raise InvalidData(
                "The upload task already has a file or has ended", code="TASK_NOT_WAITING"
            )
        spool = await asyncio.to_thread(self._upload_spool, row)
        try:
            spool.write(first)
            async for chunk in chunks:
                spool.write(chunk)
            sha = owned_digest(spool.finish(), owner(self.settings, row["user_id"]))
            UPLOAD_BYTES.labels("upload").inc(spool.size)
            await self._keep(spool, sha, row["user_id"])
        finally:
            spool.close()
        if self._scans():
            return await self._upload_to_scan(task_id, row["user_id"], sha, spool.size, filename())
        # The dependents known before the upload move to the queues its name calls for; a job
        # made during the upload may have added one, and then the end is tried again.
        outcome = import_outcome(sha, spool.size, safe_filename(filename()))
        routing = ImportRouting(self.registry, outcome, row["dependents"])
        end = None
        async with self.pool.connection() as conn:
            while routing.more(end):
                args = routing.args(task_id, None, doc=True)
                end = await task_rows.complete_import_async(conn, args)
        ready, doc = client_import_ended(end)
        TASKS_ENDED.labels("import/upload", "finished").inc()
        await self._dispatch(ready)
        assert doc is not None and end is not None
        await self._announce(doc, bool(end["job_end"]))
        return doc

    def _scans(self) -> bool:
        return scanner.enabled(self.settings)

    async def _upload_to_scan(
        self, task_id: uuid.UUID, user_id: uuid.UUID, sha: str, size: int, name: str
    ) -> str:
        """The stored upload waits for a worker's virus scan, which ends the task; its JSON
        (status waiting, then processing while it is scanned)."""
        async with self.pool.connection() as conn, conn.transaction():
            queue = await scans.hold_upload(conn, task_id, sha, size, safe_filename(name))
            doc = await job_rows.task_doc(conn, task_id, user_id)
        if queue is None or doc is None:
            raise InvalidData(
                "The upload task already has a file or has ended", code="TASK_NOT_WAITING"
            )
        await self._dispatch([Ready(task_id, queue)])
        return doc

    def _upload_spool(self, row: dict[str, Any]) -> Spool:
        """A spool for an upload: no larger than the file limit, nor than what the user's
        storage cap has left (past which the upload is refused as over the quota)."""
        stored, cap = row["stored_bytes"], Quota.of(row, self.settings).stored_bytes
        _check_stored(stored, cap)
        limit = self.settings.max_upload_bytes
        if cap and cap - stored < limit:
            sealer = self.storage.sealer(key_owner(self.settings, row["user_id"]))
            return QuotaSpool(self.settings.data_path / "tmp", cap - stored, cap, sealer)
        return spool_for(self.storage, self.settings, row["user_id"], limit)

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

    async def _primary(self, fetch: Callable[[AsyncDictConnection], Awaitable[Any]]) -> Any:
        async with self.pool.connection() as conn:
            return await fetch(conn)

    async def get_job(self, user_id: uuid.UUID, job_id: uuid.UUID) -> str:
        """The job's document, from the status cache while the job is unchanged (a fill
        reads the primary: ``status_cache``)."""
        fetch = partial(job_rows.job_doc, job_id=job_id, user_id=user_id)
        if self.status is not None:
            doc = await self.status.job(job_id, user_id, lambda: self._primary(fetch))
        else:
            doc = await self._read(fetch)
        if doc is None:
            raise NotFound(f"Job {job_id} not found")
        return doc  # type: ignore[no-any-return]

    async def _job_json(
        self, conn: AsyncDictConnection, job_id: uuid.UUID, user_id: uuid.UUID
    ) -> str:
        doc = await job_rows.job_doc(conn, job_id, user_id)
        assert doc is not None
        return doc

    async def get_task(self, user_id: uuid.UUID, task_id: uuid.UUID) -> str:
        fetch = partial(job_rows.task_doc, task_id=task_id, user_id=user_id)
        if self.status is not None:
            doc = await self.status.task(task_id, user_id, lambda: self._primary(fetch))
        else:
            doc = await self._read(fetch)
        if doc is None:
            raise NotFound(f"Task {task_id} not found")
        return doc  # type: ignore[no-any-return]

    async def task_outputs(self, user_id: uuid.UUID, task_id: uuid.UUID) -> list[Output]:
        """The files the user's task made, in order (from the primary: read as it ends)."""
        rows = await self._primary(partial(job_rows.task_outputs, task_id=task_id, user_id=user_id))
        return [Output(r["sha256"], r["filename"], r["size"]) for r in rows]

    def output_bytes(self, sha256: str) -> Iterator[bytes]:
        """An output's plain bytes, opened as they are read (blocking: a thread's)."""
        return self.storage.iter_bytes(object_key(sha256))

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
        sql = job_rows.LIST_JOBS_WITH_TASKS if include_tasks else job_rows.LIST_JOBS
        args = (user_id, status, status, tag, tag, per_page + 1, (page - 1) * per_page)
        return await self._page(sql, args, per_page)

    async def list_tasks(
        self,
        user_id: uuid.UUID,
        *,
        status: str | None,
        job_id: uuid.UUID | None,
        operation: str | None,
        page: int,
        per_page: int,
    ) -> tuple[str, bool]:
        _check_status(status)
        args = (
            user_id,
            status,
            status,
            job_id,
            job_id,
            operation,
            operation,
            per_page + 1,
            (page - 1) * per_page,
        )
        return await self._page(job_rows.LIST_TASKS, args, per_page)

    async def _page(self, sql: str, args: tuple[Any, ...], per_page: int) -> tuple[str, bool]:
        async with (self.read_pool or self.pool).connection() as conn:
            doc, n = await job_rows.page(conn, sql, args)
        if n <= per_page:
            return doc, False
        # One extra row was fetched to learn whether a next page exists; drop it.
        return json.dumps(json.loads(doc)[:per_page]), True

    # -- changes -------------------------------------------------------------------------
    async def delete_job(self, user_id: uuid.UUID, job_id: uuid.UUID) -> None:
        """The job and its tasks go, and with them, at once, every stored object and cached
        result no other task of the user's refers to: their URLs stop working."""
        async with self.pool.connection() as conn, conn.transaction():
            released = await job_rows.delete_job(conn, job_id, user_id)
            if released is None:
                raise NotFound(f"Job {job_id} not found")
            await self._delete_objects(released)
            details = {"objects_deleted": len(released)}
            await audit.record_async(
                conn, "job.deleted", user_id, f"job:{job_id}", details, actor="api"
            )

    async def delete_task(self, user_id: uuid.UUID, task_id: uuid.UUID) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            released = await job_rows.delete_task(conn, task_id, user_id)
            if released is None:
                raise NotFound(f"Task {task_id} not found")
            await self._delete_objects(released)
            details = {"objects_deleted": len(released)}
            await audit.record_async(
                conn, "task.deleted", user_id, f"task:{task_id}", details, actor="api"
            )

    async def audit_download(self, key: str, filename: str, address: str) -> None:
        """A signed download was served: audited as the file holder's (S3 storage serves its
        downloads itself, unseen here)."""
        async with self.pool.connection() as conn:
            await audit.record_download_async(conn, key.rpartition("/")[2], filename, address)

    async def _delete_objects(self, addresses: list[str]) -> None:
        """Inside the transaction that released them, holding their rows (see
        ``db.queries.files.RELEASED_NOW``)."""
        for sha in addresses:
            await asyncio.to_thread(self.storage.delete, object_key(sha))

    async def cancel_task(self, user_id: uuid.UUID, task_id: uuid.UUID) -> str:
        async with self.pool.connection() as conn:
            async with conn.transaction():
                status = await job_rows.task_status_for_update(conn, task_id, user_id)
                if status is None:
                    raise NotFound(f"Task {task_id} not found")
                if status not in ("waiting", "processing"):
                    raise InvalidData(
                        "Only waiting or processing tasks can be cancelled",
                        code="TASK_NOT_CANCELLABLE",
                    )
                await task_rows.fail_async(conn, task_id, "CANCELLED", "The task was cancelled")
            doc = await job_rows.task_doc(conn, task_id, user_id)
        assert doc is not None
        # A cancel fails the task's dependents and mostly ends the job: its waiters re-read.
        await self._announce(doc, job_ended=True)
        return doc

    async def retry_task(
        self, user_id: uuid.UUID, task_id: uuid.UUID, idempotency: Idempotency | None = None
    ) -> str:
        """A new task with the same operation, payload and inputs (CloudConvert's retry)."""
        async with self.pool.connection() as conn, conn.transaction():
            await idempotent.claim(conn, user_id, idempotency)
            old = await job_rows.task_row(conn, task_id, user_id)
            if old is None:
                raise NotFound(f"Task {task_id} not found")
            if old["status"] not in ("finished", "error"):
                raise InvalidData("Only ended tasks can be retried", code="TASK_NOT_ENDED")
            op = OPERATIONS.get(old["operation"])
            if op is None or op.file_from_client:
                raise InvalidData(
                    f"{old['operation']} tasks cannot be retried", code="TASK_NOT_RETRYABLE"
                )
            new_id = uuid.uuid4()
            row = await job_rows.retry_task(conn, task_id, new_id, old["job_id"])
            doc = await job_rows.task_doc(conn, new_id, user_id)
            assert doc is not None
            await self._remember(conn, user_id, idempotency, doc)
        if row["ready_at"] is not None:
            await self._dispatch([Ready(new_id, row["queue"])])
        return doc

    async def wait_until_ended(
        self,
        fetch: Callable[[], Awaitable[str]],
        ended: Callable[[str], bool],
        wakeup: Callable[[float], Awaitable[None]],
    ) -> str:
        """``until_ended`` with the sync timeout and recheck interval of the settings."""
        s = self.settings
        return await until_ended(
            fetch, ended, wakeup, timeout=s.sync_timeout_seconds, recheck=s.sync_recheck_seconds
        )


async def until_ended(
    fetch: Callable[[], Awaitable[str]],
    ended: Callable[[str], bool],
    wakeup: Callable[[float], Awaitable[None]],
    *,
    timeout: float,  # noqa: ASYNC109 (it ends with the last state, not an error)
    recheck: float,
) -> str:
    """Read ``fetch`` until ``ended`` says so or ``timeout`` passes: again each time
    ``wakeup(seconds)`` returns, which it does when woken or after ``seconds`` (``recheck``
    at most)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = await fetch()
        remaining = deadline - time.monotonic()
        if ended(doc) or remaining <= 0:
            return doc
        await wakeup(min(remaining, recheck))


class _Ended(msgspec.Struct):
    """What ``_announce`` reads of a task's JSON."""

    id: str
    job_id: str | None = None


class QuotaSpool(Spool):
    """An upload's spool whose limit is what the user's storage cap has left."""

    def __init__(self, tmp_dir: Path, room: int, cap: int, sealer: Sealer | None) -> None:
        super().__init__(tmp_dir, room, sealer)
        self.cap = cap

    def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.limit:
            self.size += len(chunk)
            raise QuotaExceeded(
                f"This file would take your files past the {self.cap} bytes allowed: delete"
                " jobs or wait for them to expire"
            )
        super().write(chunk)


def _check_stored(stored: int, cap: int) -> None:
    if cap and stored >= cap:
        raise QuotaExceeded(
            f"Your files take {stored} bytes, the most allowed is {cap}: delete jobs or"
            " wait for them to expire"
        )


def _external_ids(tasks: Any) -> list[uuid.UUID]:
    """The inputs of ``tasks`` that name no task of the job but look like task ids."""
    if not isinstance(tasks, dict):
        return []
    ids = set()
    for body in tasks.values():
        refs = body.get("input", []) if isinstance(body, dict) else []
        for ref in [refs] if isinstance(refs, str) else refs if isinstance(refs, list) else []:
            if isinstance(ref, str) and ref not in tasks:
                with contextlib.suppress(ValueError):
                    ids.add(uuid.UUID(ref))
    return list(ids)


def _existing_inputs(planned: list[graph.PlannedTask]) -> bool:
    """Whether some of the new tasks take existing tasks as inputs."""
    ids = {t.id for t in planned}
    return any(dep not in ids for t in planned for dep in t.depends_on)


def _check_status(status: str | None) -> None:
    if status is not None and status not in JOB_STATUSES:
        raise InvalidData(
            f"Unknown status {status!r}",
            errors={"filter[status]": [f"must be one of {', '.join(JOB_STATUSES)}"]},
        )
