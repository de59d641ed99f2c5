"""/v2/tasks and the single-task creation routes (/v2/import/upload, /v2/convert, ...)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter
from litestar.types import ASGIApp

from appliance.api import idempotency, responses
from appliance.api.deps import check_json_size, count_conversions, services
from appliance.api.jobs import wait_response
from appliance.api.schemas import (
    AUTHED,
    BY_ID,
    KEY,
    KEYED,
    TEXT,
    TaskData,
    TaskPage,
    answers,
)
from appliance.conversions.graph import conversions_in
from appliance.conversions.operation import Operation
from appliance.conversions.operations.enabled import ENABLED
from appliance.security.auth import Principal


class TaskController(Controller):
    path = "/v2/tasks"
    tags = ["tasks"]
    security = KEY

    @get("/{task_id:uuid}", responses=answers(200, TaskData, BY_ID))
    async def show(
        self, request: Request[Any, Any, Any], task_id: uuid.UUID, principal: Principal
    ) -> ASGIApp:
        return responses.Data(await services(request).jobs.get_task(principal.user_id, task_id))

    @get("/{task_id:uuid}/wait", responses=answers(200, TaskData, BY_ID))
    async def wait(
        self, request: Request[Any, Any, Any], task_id: uuid.UUID, principal: Principal
    ) -> Response[bytes]:
        return await wait_task(request, task_id, principal)

    @get("/", responses=answers(200, TaskPage, AUTHED))
    async def index(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        status: Annotated[str | None, Parameter(query="filter[status]")] = None,
        job_id: Annotated[uuid.UUID | None, Parameter(query="filter[job_id]")] = None,
        operation: Annotated[str | None, Parameter(query="filter[operation]", pattern=TEXT)] = None,
        page: Annotated[int, Parameter(ge=1, le=responses.MAX_PAGE)] = 1,
        per_page: Annotated[int, Parameter(ge=1, le=100)] = 100,
    ) -> Response[bytes]:
        doc, has_next = await services(request).jobs.list_tasks(
            principal.user_id,
            status=status,
            job_id=job_id,
            operation=operation,
            page=page,
            per_page=per_page,
        )
        count = len(msgspec.json.decode(doc, type=list[msgspec.Raw]))
        return responses.page(doc, request, page, per_page, has_next, count)

    @post("/{task_id:uuid}/cancel", status_code=200, responses=answers(200, TaskData, BY_ID))
    async def cancel(
        self, request: Request[Any, Any, Any], task_id: uuid.UUID, principal: Principal
    ) -> Response[bytes]:
        doc = await services(request).jobs.cancel_task(principal.user_id, task_id)
        return responses.data(doc)

    @post("/{task_id:uuid}/retry", status_code=201, responses=answers(201, TaskData, (*BY_ID, 409)))
    async def retry(
        self,
        request: Request[Any, Any, Any],
        task_id: uuid.UUID,
        principal: Principal,
        idempotency_key: idempotency.KeyHeader = None,
    ) -> Response[bytes]:
        route = f"POST /v2/tasks/{task_id}/retry"
        key = await idempotency.requested(request, route, idempotency_key)
        doc = await services(request).jobs.retry_task(principal.user_id, task_id, key)
        return responses.data(doc, 201)

    @delete("/{task_id:uuid}", status_code=204, responses=answers(204, None, BY_ID))
    async def remove(
        self, request: Request[Any, Any, Any], task_id: uuid.UUID, principal: Principal
    ) -> None:
        await services(request).jobs.delete_task(principal.user_id, task_id)


async def wait_task(
    request: Request[Any, Any, Any], task_id: uuid.UUID, principal: Principal
) -> Response[bytes]:
    jobs = services(request).jobs
    return await wait_response(
        request, principal, lambda: jobs.get_task(principal.user_id, task_id), task_id
    )


@get(
    "/v2/tasks/{task_id:uuid}",
    summary="Block until the task ends (sync API)",
    responses=answers(200, TaskData, BY_ID),
)
async def sync_task(
    request: Request[Any, Any, Any], task_id: uuid.UUID, principal: Principal
) -> Response[bytes]:
    return await wait_task(request, task_id, principal)


def _single(op: Operation) -> Any:
    operation = op.name

    @post(
        f"/v2/{operation}",
        status_code=201,
        tags=["tasks"],
        operation_id=f"create_{operation.replace('/', '_')}_task",
        summary=f"Create a single {operation} task",
        description=op.describe(),
        responses=answers(201, TaskData, KEYED),
        security=KEY,
    )
    async def create(
        request: Request[Any, Any, Any],
        data: dict[str, Any],
        principal: Principal,
        idempotency_key: idempotency.KeyHeader = None,
    ) -> Response[bytes]:
        await check_json_size(request, {"task": {**data, "operation": operation}})
        await count_conversions(request, conversions_in({"task": {"operation": operation}}))
        key = await idempotency.requested(request, f"POST /v2/{operation}", idempotency_key)
        doc = await services(request).jobs.create_task(principal.user_id, operation, data, key)
        return responses.data(doc, 201)

    return create


# One route per operation (POST /v2/convert, /v2/merge, ...): the same list the job graph
# takes; those whose body may carry a file (import/base64) apart, for their larger body cap.
SINGLE_TASK_ROUTES = [_single(op) for op in ENABLED if not op.body_file]
INLINE_FILE_ROUTES = [_single(op) for op in ENABLED if op.body_file]
