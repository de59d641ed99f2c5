"""The Gotenberg-compatible routes: thin handlers that read the form, make the job
(``fields``), wait for it as the sync API does and answer as Gotenberg answers (``answers``);
with Gotenberg's webhook headers, answer 204 at once and leave the rest to the outbox.

Keys: ``Authorization: Bearer <api key>``, or Gotenberg's basic auth with an API key as the
password (any user name). Errors are Gotenberg's: plain text, ``Gotenberg-Trace`` set.
Answers to a request whose key passed carry ``Gotenberg-Version`` (``versioned``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, Router, get, head, post
from litestar.di import Provide
from litestar.exceptions import HTTPException

from appliance.api.deps import authorized, count_conversions, services
from appliance.api.gotenberg import answers, fields, v9, versioned, webhook
from appliance.api.gotenberg.fields import Capabilities, GotenbergError, Plan
from appliance.api.gotenberg.form import FormReader
from appliance.api.jobs import waited
from appliance.api.meta import probe
from appliance.conversions.files import Spool, safe_filename, spool_for
from appliance.conversions.gotenberg import (
    HOOK_COLUMN,
    TRACE_HEADER,
    VERSION,
    Hook,
    JobState,
    job_state,
    tag_of,
)
from appliance.conversions.graph import conversions_in
from appliance.conversions.operations.enabled import OPERATIONS
from appliance.conversions.service import JobService
from appliance.engines.registry import Registry
from appliance.errors import ClientError, InvalidData, Unauthenticated
from appliance.security.auth import Principal
from appliance.security.sealing import Columns

log = logging.getLogger(__name__)
OUTPUT_FILENAME = "Gotenberg-Output-Filename"
# Gotenberg's is "text/plain; charset=UTF-8" (echo's c.String); Litestar adds the charset
VERSION_TYPE = "text/plain"
TAG = "gotenberg"  # the tag of the jobs the routes make (GET /v2/jobs?filter[tag]=gotenberg)
NO_OUTPUT_FILE = (
    "The webhook middleware can only work with multipart/form-data routes that results in"
    " output files"
)


# -- requests -------------------------------------------------------------------------------
def trace_of(request: Request[Any, Any, Any]) -> str:
    """The request's ``Gotenberg-Trace``: the client's, or a new UUID, the same all along."""
    trace = request.scope.setdefault("state", {}).get("gotenberg_trace")  # type: ignore[union-attr]
    if trace is None:
        trace = request.headers.get(TRACE_HEADER) or str(uuid.uuid4())
        request.scope["state"]["gotenberg_trace"] = trace  # type: ignore[index]
    return str(trace)


def bearer(authorization: str | None) -> str | None:
    """Gotenberg's basic auth as the appliance's bearer key: the password is the key."""
    if not authorization or not authorization.lower().startswith("basic "):
        return authorization
    try:
        pair = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return f"Bearer {pair.partition(':')[2]}"


async def gotenberg_principal(request: Request[Any, Any, Any]) -> Principal:
    who = await authorized(request, bearer(request.headers.get("authorization")))
    versioned.key_passed(request.scope)
    return who


@functools.cache
def capabilities(registry: Registry) -> Capabilities:
    office = next((e for e in registry.engines if e.descriptor.id == fields.LIBREOFFICE), None)
    sources = {s for s, d in office.descriptor.conversions if d == "pdf"} if office else set()
    return Capabilities(
        operations=frozenset(OPERATIONS),
        engines=frozenset(e.descriptor.id for e in registry.engines),
        office_sources=frozenset(sources),
    )


# -- the routes -----------------------------------------------------------------------------
async def run(request: Request[Any, Any, Any], principal: Principal, path: str) -> Response[Any]:
    jobs = services(request).jobs
    trace = trace_of(request)
    wanted = request.headers.get(OUTPUT_FILENAME)
    wanted = safe_filename(wanted) if wanted else None
    hook = webhook.hook_of(request.headers, trace, wanted)
    if hook is not None:
        await webhook.check_addresses(hook, jobs.settings.allow_private_urls)
    limit = jobs.settings.max_upload_bytes
    reader = FormReader(
        request.headers.get("content-type"),
        lambda: spool_for(jobs.storage, jobs.settings, principal.user_id, limit),
    )
    try:
        await reader.read(request.stream())
        plan = v9.ROUTES[path](reader.form, capabilities(jobs.registry))
        if hook is not None and plan.json:
            raise GotenbergError(400, NO_OUTPUT_FILE)
        await count_conversions(request, conversions_in(plan.tasks))
        job = await start(jobs, principal.user_id, plan, reader, hook)
    finally:
        reader.close()
    if hook is not None:
        return Response(b"", status_code=204, headers={TRACE_HEADER: trace})
    doc = await waited(request, principal, lambda: jobs.get_job(principal.user_id, job.id), job.id)
    return await answers.ended(jobs, principal.user_id, job_state(doc), plan, wanted, trace)


async def start(
    jobs: JobService, user_id: uuid.UUID, plan: Plan, reader: FormReader, hook: Hook | None
) -> JobState:
    """Make the job and give its imports their files; a job left half-made is deleted."""
    tag, url = TAG, None
    if hook is not None:
        hook.last = plan.last
        columns = Columns(jobs.storage.keyring)
        seal = functools.partial(columns.seal, user_id, HOOK_COLUMN)
        tag, url = await asyncio.to_thread(tag_of, hook, seal), hook.url
    try:
        job = job_state(await jobs.create_job(user_id, plan.tasks, tag, webhook_url=url))
    except InvalidData as exc:  # what the form asked for does not check (an option's value)
        raise invalid_form(exc) from exc
    spools = {id(u): s for u, s in zip(reader.form.files, reader.spools, strict=True)}
    try:
        for name, upload in plan.uploads:
            chunks = spooled(jobs, spools[id(upload)])
            named = functools.partial(str, upload.name)
            await jobs.accept_upload(job.task(name).id, named, chunks)
    except BaseException:
        try:
            await jobs.delete_job(user_id, job.id)
        except Exception:
            log.warning("could not delete the half-made job %s", job.id, exc_info=True)
        raise
    return job


async def spooled(jobs: JobService, spool: Spool) -> AsyncIterator[bytes]:
    """A form file's plain bytes, read back from its spool."""
    chunks = jobs.storage.open_file(spool.path, sealed=spool.sealed)
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk


def _route(path: str) -> Any:
    @post(
        f"/forms/{path}",
        status_code=200,
        summary=f"Gotenberg's /forms/{path}",
        description="Gotenberg-compatible: a multipart form in, the file (a zip of several)"
        " out; Gotenberg's webhook headers answer 204 and deliver later.",
        operation_id=f"gotenberg_{path.replace('/', '_')}",
        include_in_schema=False,  # Gotenberg documents them; the schema is CloudConvert's
    )
    async def handler(request: Request[Any, Any, Any], principal: Principal) -> Response[Any]:
        return await run(request, principal, path)

    return handler


@get("/version", summary="Gotenberg's /version", include_in_schema=False)
async def version(request: Request[Any, Any, Any], principal: Principal) -> Response[str]:
    """Gotenberg's shape: the version alone as plain text, with the request's trace."""
    return Response(VERSION, media_type=VERSION_TYPE, headers={TRACE_HEADER: trace_of(request)})


async def health_answer(request: Request[Any, Any, Any]) -> Response[Any]:
    """Gotenberg's /health shape; the modules' status is the appliance's readiness (their
    engines run on the workers, which take work only while it is ready)."""
    checks = await probe(request)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    up = all(v == "ok" for v in checks.values())
    details = {name: {"status": "up" if v == "ok" else "down", "timestamp": now}
               for name, v in checks.items()}  # fmt: skip
    registry = services(request).jobs.registry
    for module, engine in (("libreoffice", fields.LIBREOFFICE), ("chromium", fields.CHROMIUM)):
        if registry.has(engine):
            details[module] = {"status": "up" if up else "down", "timestamp": now}
    body = {"status": "up" if up else "down", "details": details}
    return Response(body, status_code=200 if up else 503)


@get("/health", summary="Gotenberg's /health", include_in_schema=False)
async def health(request: Request[Any, Any, Any]) -> Response[Any]:
    return await health_answer(request)


@head("/health", summary="Gotenberg's /health", include_in_schema=False)
async def health_head(request: Request[Any, Any, Any]) -> Response[None]:
    answer = await health_answer(request)
    return Response(None, status_code=answer.status_code)


# -- errors, Gotenberg's shape --------------------------------------------------------------
def gotenberg_error(request: Request[Any, Any, Any], exc: GotenbergError) -> Response[Any]:
    return answers.error_response(exc, trace_of(request))


def client_error(request: Request[Any, Any, Any], exc: ClientError) -> Response[Any]:
    headers = exc.headers() or {}
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Basic realm="appliance"'
        unauthorized = GotenbergError(401, "Unauthorized")
        return answers.error_response(unauthorized, trace_of(request), headers)
    if isinstance(exc, InvalidData):
        return answers.error_response(invalid_form(exc), trace_of(request))
    refused = GotenbergError(exc.status, exc.message)
    return answers.error_response(refused, trace_of(request), headers)


def invalid_form(exc: InvalidData) -> GotenbergError:
    """A 422 of the job's check as Gotenberg's 400, naming the fields."""
    errors = "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.errors.items())
    return GotenbergError(400, f"Invalid form data: {exc.message} {errors}".strip())


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    message = "The request body exceeds the configured size limit." if status == 413 else exc.detail
    return answers.error_response(
        GotenbergError(status, message), trace_of(request), getattr(exc, "headers", None)
    )


def server_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled error in a Gotenberg route", exc_info=exc)
    return answers.error_response(GotenbergError(500, "Internal Server Error"), trace_of(request))


def router(max_body_bytes: int) -> Router:
    """The routes, their key check (basic auth too), their error shape and version header."""
    return Router(
        path="/",
        route_handlers=[*(_route(p) for p in v9.ROUTES), version, health, health_head],
        dependencies={"principal": Provide(gotenberg_principal)},
        exception_handlers={
            GotenbergError: gotenberg_error,
            ClientError: client_error,
            HTTPException: http_error,
            Exception: server_error,
        },
        middleware=[versioned.VersionHeader],
        request_max_body_size=max_body_bytes,
        tags=["gotenberg"],
    )
