"""/v2/jobs: create, show, list, delete; and the blocking (sync) variants."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter
from litestar.types import ASGIApp

from appliance.api import idempotency, responses
from appliance.api.deps import check_json_size, count_conversions, services
from appliance.api.schemas import (
    AUTHED,
    BY_ID,
    KEY,
    KEYED,
    TEXT,
    JobData,
    JobPage,
    answers,
    redirected,
)
from appliance.conversions.graph import conversions_in
from appliance.conversions.idempotency import Idempotency, Replayed
from appliance.security.auth import Principal


# A field the API would ignore is refused (422) rather than accepted and ignored.
class JobCreate(msgspec.Struct, forbid_unknown_fields=True):
    tasks: dict[str, Any]
    tag: Annotated[str, msgspec.Meta(pattern=TEXT)] | None = None
    webhook_url: str | None = None


class _Status(msgspec.Struct):
    status: str


ENDED = ("finished", "error")


def ended(doc: str) -> bool:
    return msgspec.json.decode(doc, type=_Status).status in ENDED


class JobController(Controller):
    path = "/v2/jobs"
    tags = ["jobs"]
    security = KEY

    @post("/", status_code=201, responses=answers(201, JobData, KEYED))
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JobCreate,
        principal: Principal,
        idempotency_key: idempotency.KeyHeader = None,
    ) -> Response[bytes]:
        key = await idempotency.requested(request, "POST /v2/jobs", idempotency_key)
        return responses.data(await create_job(request, data, principal, key), 201)

    @get("/{job_id:uuid}", responses=answers(200, JobData, BY_ID))
    async def show(
        self, request: Request[Any, Any, Any], job_id: uuid.UUID, principal: Principal
    ) -> ASGIApp:
        return responses.Data(await services(request).jobs.get_job(principal.user_id, job_id))

    @get("/{job_id:uuid}/wait", responses=answers(200, JobData, BY_ID))
    async def wait(
        self, request: Request[Any, Any, Any], job_id: uuid.UUID, principal: Principal
    ) -> Response[bytes]:
        return await wait_job(request, job_id, principal)

    @get("/", responses=answers(200, JobPage, AUTHED))
    async def index(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        status: Annotated[str | None, Parameter(query="filter[status]")] = None,
        tag: Annotated[str | None, Parameter(query="filter[tag]", pattern=TEXT)] = None,
        include: str | None = None,
        page: Annotated[int, Parameter(ge=1, le=responses.MAX_PAGE)] = 1,
        per_page: Annotated[int, Parameter(ge=1, le=100)] = 100,
    ) -> Response[bytes]:
        doc, has_next = await services(request).jobs.list_jobs(
            principal.user_id,
            status=status,
            tag=tag,
            page=page,
            per_page=per_page,
            include_tasks=include is not None and "tasks" in include.split(","),
        )
        count = len(msgspec.json.decode(doc, type=list[msgspec.Raw]))
        return responses.page(doc, request, page, per_page, has_next, count)

    @delete("/{job_id:uuid}", status_code=204, responses=answers(204, None, BY_ID))
    async def remove(
        self, request: Request[Any, Any, Any], job_id: uuid.UUID, principal: Principal
    ) -> None:
        await services(request).jobs.delete_job(principal.user_id, job_id)


async def create_job(
    request: Request[Any, Any, Any],
    data: JobCreate,
    principal: Principal,
    key: Idempotency | None = None,
) -> str:
    """The new job's document; a repeat of a keyed request raises ``Replayed``."""
    await check_json_size(request, data.tasks)
    await count_conversions(request, conversions_in(data.tasks))
    return await services(request).jobs.create_job(
        principal.user_id,
        data.tasks,
        data.tag,
        webhook_url=data.webhook_url,
        idempotency=key,
    )


class SyncJobCreate(JobCreate):
    # answer with a redirect to the job's one exported file (CloudConvert's sync API)
    redirect: bool = False


class _File(msgspec.Struct):
    url: str | None = None


class _Result(msgspec.Struct):
    files: list[_File] = []


class _Task(msgspec.Struct):
    operation: str
    status: str
    result: _Result | None = None


class _Job(msgspec.Struct):
    status: str
    tasks: list[_Task] = []


def exported_url(doc: str) -> str | None:
    """The URL of a finished job's one exported file: its only export/url task made one."""
    job = msgspec.json.decode(doc, type=_Job)
    exports = [t for t in job.tasks if t.operation == "export/url"]
    if job.status != "finished" or len(exports) != 1 or exports[0].result is None:
        return None
    files = exports[0].result.files
    return files[0].url if len(files) == 1 else None


@post(
    "/v2/jobs",
    status_code=201,
    summary="Create a job and block until it ends (sync API); with redirect, answer with a"
    " redirect to its one exported file",
    responses=answers(201, JobData, KEYED) | redirected(),
)
async def sync_create_job(
    request: Request[Any, Any, Any],
    data: SyncJobCreate,
    principal: Principal,
    idempotency_key: idempotency.KeyHeader = None,
) -> Response[bytes]:
    key = await idempotency.requested(request, "POST sync /v2/jobs", idempotency_key)
    try:
        created = await create_job(request, data, principal, key)
    except Replayed as replay:  # a repeat waits on the job the first request made
        created = replay.body
    made = msgspec.json.decode(created, type=dict[str, Any])
    job_id, jobs = uuid.UUID(made["id"]), services(request).jobs
    doc = await waited(request, principal, lambda: jobs.get_job(principal.user_id, job_id), job_id)
    url = exported_url(doc) if data.redirect else None
    if url is not None:
        return Response(b"", status_code=302, headers={"Location": url})
    return responses.data(doc, 201)


async def wait_job(
    request: Request[Any, Any, Any], job_id: uuid.UUID, principal: Principal
) -> Response[bytes]:
    jobs = services(request).jobs
    return await wait_response(
        request, principal, lambda: jobs.get_job(principal.user_id, job_id), job_id
    )


async def wait_response(
    request: Request[Any, Any, Any],
    principal: Principal,
    fetch: Callable[[], Awaitable[str]],
    key: uuid.UUID,
) -> Response[bytes]:
    """The sync API: answer once the job or task (its document from ``fetch``) has ended, or
    when the sync timeout passes; ends are announced under ``key``."""
    return responses.data(await waited(request, principal, fetch, key))


async def waited(
    request: Request[Any, Any, Any],
    principal: Principal,
    fetch: Callable[[], Awaitable[str]],
    key: uuid.UUID,
) -> str:
    """The document from ``fetch`` once it has ended or the sync timeout passed. A user holds
    at most ``max_sync_waits_per_user`` of these open at once (429 past it)."""
    svc = services(request)
    async with svc.sync_waits.slot(str(principal.user_id)):
        return await svc.jobs.wait_until_ended(
            fetch, ended, lambda timeout: svc.notifier.wait(str(key), timeout)
        )


@get(
    "/v2/jobs/{job_id:uuid}",
    summary="Block until the job ends (sync API)",
    responses=answers(200, JobData, BY_ID),
)
async def sync_job(
    request: Request[Any, Any, Any], job_id: uuid.UUID, principal: Principal
) -> Response[bytes]:
    return await wait_job(request, job_id, principal)
