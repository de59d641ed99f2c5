"""Signed URLs: /v2/signed-urls, a user's signed-URL bases (create, list, show, delete; the
``user.read`` / ``user.write`` scopes), and /v2/s/{base}, the URLs built on them, which need no
API key: their signature is the credential. Opening one runs its job as the base's owner (their
caps, the limits of the client's address), waits like the sync API and answers with a redirect
to the job's exported file, or an error document with the job."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter

from appliance.api import idempotency, responses
from appliance.api.deps import SCOPES_OF, request_address, services
from appliance.api.jobs import JobCreate, create_job, ended, exported_url, waited
from appliance.api.schemas import (
    AUTHED,
    BY_ID,
    KEY,
    KEYED,
    SignedUrlBaseData,
    SignedUrlBasePage,
    answers,
    opened,
)
from appliance.conversions.signed_urls import SignedRequest, SignedUrlService
from appliance.security.auth import Principal

SIGNED_URL_SCOPES = {SCOPES_OF: "user"}


class BaseCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None


def signed_urls(request: Request[Any, Any, Any]) -> SignedUrlService:
    return request.app.state.signed_urls  # type: ignore[no-any-return]


class SignedUrlController(Controller):
    path = "/v2/signed-urls"
    tags = ["signed-urls"]
    opt = SIGNED_URL_SCOPES
    security = KEY

    @post(
        "/",
        status_code=201,
        summary="Create a signed URL base with its signing secret",
        responses=answers(201, SignedUrlBaseData, KEYED),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: BaseCreate,
        principal: Principal,
        idempotency_key: idempotency.KeyHeader = None,
    ) -> Response[bytes]:
        key = await idempotency.requested(request, "POST /v2/signed-urls", idempotency_key)
        doc = await signed_urls(request).create(principal.user_id, data.name, key)
        return responses.data(doc, 201)

    @get("/", responses=answers(200, SignedUrlBasePage, AUTHED))
    async def index(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        page: Annotated[int, Parameter(ge=1, le=responses.MAX_PAGE)] = 1,
        per_page: Annotated[int, Parameter(ge=1, le=100)] = 100,
    ) -> Response[bytes]:
        doc, has_next = await signed_urls(request).page(principal.user_id, page, per_page)
        count = len(msgspec.json.decode(doc, type=list[msgspec.Raw]))
        return responses.page(doc, request, page, per_page, has_next, count)

    @get("/{base_id:uuid}", responses=answers(200, SignedUrlBaseData, BY_ID))
    async def show(
        self, request: Request[Any, Any, Any], base_id: uuid.UUID, principal: Principal
    ) -> Response[bytes]:
        return responses.data(await signed_urls(request).show(principal.user_id, base_id))

    @delete("/{base_id:uuid}", status_code=204, responses=answers(204, None, BY_ID))
    async def remove(
        self, request: Request[Any, Any, Any], base_id: uuid.UUID, principal: Principal
    ) -> None:
        await signed_urls(request).delete(principal.user_id, base_id)


@get(
    "/v2/s/{base_id:uuid}",
    status_code=302,  # or an error: never a 200
    tags=["signed-urls"],
    summary="Open a signed URL (no API key: ?job=&cache_key=&expires=&s=): run its job and"
    " redirect to the exported file",
    responses=opened(),
)
async def open_signed_url(request: Request[Any, Any, Any], base_id: uuid.UUID) -> Response[bytes]:
    address = request_address(request)
    await services(request).limits.request(address, f"signed-url:{base_id}")
    signed = await signed_urls(request).open(base_id, request.scope["query_string"].decode())
    return answer(await run(request, base_id, signed))


async def run(request: Request[Any, Any, Any], base_id: uuid.UUID, signed: SignedRequest) -> str:
    """The ended job (or as it stands at the sync timeout): the one the cache key ran, or a
    new one, created as the base's owner."""
    owner = Principal(signed.owner, frozenset(), key_id=f"signed-url:{base_id}")
    key, store = signed.cache_key, signed_urls(request)
    job_id = await store.cached(base_id, key) if key else None
    if job_id is None:
        job = signed.job
        made = await create_job(request, JobCreate(job.tasks, job.tag, job.webhook_url), owner)
        job_id = uuid.UUID(msgspec.json.decode(made, type=_Id).id)
        if key:
            await store.remember(base_id, key, job_id)
    jobs = services(request).jobs
    return await waited(request, owner, lambda: jobs.get_job(owner.user_id, job_id), job_id)


class _Id(msgspec.Struct):
    id: str


class _Task(msgspec.Struct):
    name: str
    status: str
    code: str | None = None
    message: str | None = None


class _Job(msgspec.Struct):
    id: str
    status: str
    tasks: list[_Task] = []


def answer(doc: str) -> Response[bytes]:
    """302 to the job's one exported file; otherwise the job under an error: 422 when it
    failed or made no single file, 504 when it had not ended by the sync timeout."""
    url = exported_url(doc)
    if url is not None:
        return Response(b"", status_code=302, headers={"Location": url})
    job = msgspec.json.decode(doc, type=_Job)
    failed = next((t for t in job.tasks if t.status == "error"), None)
    if not ended(doc):
        status, code, message = 504, "JOB_NOT_ENDED", f"Job {job.id} has not ended yet"
    elif failed is not None:
        status, code = 422, failed.code or "JOB_FAILED"
        message = f"Task {failed.name} failed: {failed.message or 'no message'}"
    else:
        status, code, message = 422, "NO_SINGLE_OUTPUT", "The job did not export exactly one file"
    head = msgspec.json.encode({"code": code, "message": message})[:-1]
    return Response(
        head + b',"data":' + doc.encode() + b"}", status_code=status, media_type=responses.JSON
    )
