"""How a Gotenberg route answers once its job has ended: the one output file, a zip of
several, the metadata as JSON, or Gotenberg's plain-text error with its status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Response
from litestar.response import Stream

from appliance.api.gotenberg.fields import GotenbergError, Plan
from appliance.conversions.gotenberg import (
    TRACE_HEADER,
    JobState,
    TaskState,
    answer_name,
    body_of,
    content_type,
    disposition,
    failure,
)
from appliance.conversions.service import JobService

TIMED_OUT = (
    "The request exceeded the time limit. Its job goes on: GET /v2/jobs?filter[tag]=gotenberg"
    " lists it."
)


def error_response(
    exc: GotenbergError, trace: str, headers: dict[str, str] | None = None
) -> Response[str]:
    return Response(
        exc.message,
        status_code=exc.status,
        media_type="text/plain; charset=utf-8",
        headers={TRACE_HEADER: trace, **(headers or {})},
    )


def metadata_by_file(
    task: TaskState, per_file: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """A read route's answer: each input's metadata under its file name (reshaped by
    ``per_file`` when the route answers another shape)."""
    files = (task.result or {}).get("files") or []
    assert isinstance(files, list)
    shape = per_file or (lambda metadata: metadata)
    return {str(f.get("filename")): shape(f.get("metadata")) for f in files if isinstance(f, dict)}


async def ended(
    jobs: JobService, user_id: Any, job: JobState, plan: Plan, wanted: str | None, trace: str
) -> Response[Any]:
    """The answer to a job that has ended, or 503 when it has not in the time allowed."""
    if job.status == "error":
        raise GotenbergError(*failure(job))
    if job.status != "finished":
        raise GotenbergError(503, TIMED_OUT)
    last = job.task(plan.last)
    if plan.json:
        return Response(metadata_by_file(last, plan.per_file), headers={TRACE_HEADER: trace})
    files = await jobs.task_outputs(user_id, last.id)
    if not files:
        raise GotenbergError(500, "The job made no file")
    name = answer_name(files, wanted)
    headers = {**plan.headers, TRACE_HEADER: trace, "Content-Disposition": disposition(name)}
    if len(files) == 1:
        headers["Content-Length"] = str(files[0].size)
    return Stream(body_of(files, jobs.output_bytes), media_type=content_type(name), headers=headers)
