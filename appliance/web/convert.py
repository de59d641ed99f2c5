"""The convert page and what its script calls: make one job per file (import/upload, convert,
export/url) through ``JobService``, follow its progress as server-sent events, and make a zip of
several outputs (an ``archive`` job over the convert tasks). Every call passes the signed-in
user's id: a job, task or file of another user is "not found", as in the API."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import Provide
from litestar.response import ServerSentEvent, ServerSentEventMessage

from appliance.api.deps import Services, request_address, services
from appliance.web.guard import WebUser, signed_in
from appliance.web.render import page
from appliance.web.words import plain_words

PROGRESS_SECONDS = 0.5  # how often a running job's percent is read again
STREAM_SECONDS = 300  # one event stream's length; the browser's EventSource reconnects
KEEP_ALIVE_SECONDS = 15  # a comment when nothing changed this long (proxies' read timeouts)
OPTION = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
USER = {"user": Provide(signed_in)}


class Options(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The common options the page offers (each engine checks them as for the API)."""

    width: OPTION | None = None
    height: OPTION | None = None
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None


class ConvertFile(msgspec.Struct, forbid_unknown_fields=True):
    filename: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    output_format: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    options: Options = msgspec.field(default_factory=Options)


class Archive(msgspec.Struct, forbid_unknown_fields=True):
    task_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=100)]


def convert_tasks(data: ConvertFile) -> dict[str, Any]:
    options = msgspec.to_builtins(data.options)
    return {
        "up": {"operation": "import/upload"},
        "c": {"operation": "convert", "input": "up", "output_format": data.output_format} | options,
        "e": {"operation": "export/url", "input": "c"},
    }


def archive_tasks(data: Archive) -> dict[str, Any]:
    return {
        "a": {
            "operation": "archive",
            "input": [str(t) for t in data.task_ids],
            "output_format": "zip",
            "filename": "converted.zip",
        },
        "e": {"operation": "export/url", "input": "a"},
    }


@get("/", include_in_schema=False, dependencies=USER)
async def convert_page(request: Request[Any, Any, Any], user: WebUser) -> Response[Any]:
    return await page(request, "convert.html", user=user)


async def new_job(request: Request[Any, Any, Any], user: WebUser, tasks: dict[str, Any]) -> Any:
    svc = services(request)
    await svc.limits.conversions(request_address(request), 1)
    doc = await svc.jobs.create_job(user.id, tasks, "web")
    return progress_view(msgspec.json.decode(doc))


@post("/ui/jobs", include_in_schema=False, status_code=201, dependencies=USER)
async def create_conversion(
    request: Request[Any, Any, Any], user: WebUser, data: ConvertFile
) -> Any:
    return await new_job(request, user, convert_tasks(data))


@post("/ui/archives", include_in_schema=False, status_code=201, dependencies=USER)
async def create_archive(request: Request[Any, Any, Any], user: WebUser, data: Archive) -> Any:
    return await new_job(request, user, archive_tasks(data))


@get("/ui/jobs/{job_id:uuid}/events", include_in_schema=False, dependencies=USER)
async def job_events(
    request: Request[Any, Any, Any], user: WebUser, job_id: uuid.UUID
) -> ServerSentEvent:
    svc = services(request)
    await svc.jobs.get_job(user.id, job_id)  # 404 before the stream starts
    return ServerSentEvent(
        progress_events(svc, user.id, job_id),
        retry_duration=1000,
        headers={"X-Accel-Buffering": "no"},  # nginx passes each event on at once
    )


async def progress_events(
    svc: Services, user_id: uuid.UUID, job_id: uuid.UUID
) -> AsyncIterator[ServerSentEventMessage]:
    """The job's progress each time it changes (``progress``), then its end (``end``)."""
    last, until = None, time.monotonic() + STREAM_SECONDS
    said = time.monotonic()
    while time.monotonic() < until:
        view = progress_view(msgspec.json.decode(await svc.jobs.get_job(user_id, job_id)))
        text = msgspec.json.encode(view).decode()
        if view["status"] in ("finished", "error"):
            yield ServerSentEventMessage(data=text, event="end")
            return
        if text != last or time.monotonic() - said > KEEP_ALIVE_SECONDS:
            yield (
                ServerSentEventMessage(data=text, event="progress")
                if text != last
                else ServerSentEventMessage(comment="still running")
            )
            last, said = text, time.monotonic()
        await svc.notifier.wait(str(job_id), PROGRESS_SECONDS)


def progress_view(job: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of a job: its status, the work task's percent and id, the
    exported files, and what went wrong in plain words."""
    tasks = job["tasks"]
    work = next((t for t in tasks if t["operation"] in ("convert", "archive")), None)
    export = next((t for t in tasks if t["operation"] == "export/url"), None)
    failed = [t for t in tasks if t["status"] == "error"]
    cause = next((t for t in failed if t.get("code") != "INPUT_TASK_FAILED"), None)
    cause = cause or (failed[0] if failed else None)
    files = (export.get("result") or {}).get("files", []) if export else []
    return {
        "id": job["id"],
        "status": job["status"],
        "percent": 100 if job["status"] == "finished" else (work or {}).get("percent", 0),
        "task_id": work and work["id"],
        "upload": next((t["result"] for t in tasks if t["operation"] == "import/upload"), None),
        "files": [{k: f.get(k) for k in ("filename", "url", "size")} for f in files],
        "error": cause and plain_words(cause.get("code"), cause.get("message")),
        "code": cause and cause.get("code"),
    }


ROUTES = [convert_page, create_conversion, create_archive, job_events]
