"""What the OpenAPI document says each route answers: CloudConvert's job and task documents,
its list envelope and its error body, and the error statuses a route can give.

The handlers send JSON that Postgres builds (``responses.data``), so these structs only
describe it; tests/integration/api/test_openapi_fuzz.py checks every answer against them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Components, SecurityScheme

# Every /v2 route but the signed upload and download URLs takes an API key as a Bearer token.
KEY: list[dict[str, list[str]]] = [{"api_key": []}]
COMPONENTS = Components(
    security_schemes={
        "api_key": SecurityScheme(
            type="http",
            scheme="bearer",
            description="An API key (`appliance keys create`); GET needs its task.read scope,"
            " other methods task.write.",
        )
    }
)
Status = Literal["waiting", "processing", "finished", "error"]
# Free text the database keeps or compares (tag, filters): any but the NUL character, which
# Postgres text cannot hold (a 500 before this was checked).
TEXT = r"^[^\x00]*$"


class Error(msgspec.Struct):
    """CloudConvert's error body."""

    code: str  # stable, e.g. INVALID_DATA, NOT_FOUND, UNAUTHENTICATED
    message: str
    # the offending fields (``tasks.c.input``, ``page``) and what is wrong with each
    errors: dict[str, list[str]] | msgspec.UnsetType = msgspec.UNSET


class Task(msgspec.Struct):
    id: uuid.UUID
    name: str | None
    job_id: uuid.UUID | None  # None for a task made by a single-task route
    operation: str
    status: Status
    message: str | None
    code: str | None
    percent: int
    credits: int
    engine: str | None
    engine_version: str | None
    payload: dict[str, Any]
    result: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    retry_of_task_id: uuid.UUID | None
    copy_of_task_id: uuid.UUID | None
    user_id: uuid.UUID
    priority: int
    host_name: str | None
    storage: str | None
    depends_on_task_ids: list[uuid.UUID]


class Job(msgspec.Struct):
    id: uuid.UUID
    tag: str | None
    status: Status
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    # always in a single job; in a list only with ``include=tasks``
    tasks: list[Task] | msgspec.UnsetType = msgspec.UNSET


class Links(msgspec.Struct):
    first: str
    last: None
    prev: str | None
    next: str | None


class Meta(msgspec.Struct):
    current_page: int
    path: str
    per_page: int
    first: int | None = msgspec.field(name="from")  # None on an empty page
    to: int | None


class JobData(msgspec.Struct):
    data: Job


class TaskData(msgspec.Struct):
    data: Task


class JobPage(msgspec.Struct):
    data: list[Job]
    links: Links
    meta: Meta


class TaskPage(msgspec.Struct):
    data: list[Task]
    links: Links
    meta: Meta


class Delivery(msgspec.Struct):
    """One webhook delivery: an event sent (or being sent) to a URL."""

    id: uuid.UUID
    webhook_id: uuid.UUID | None  # None: the job's own webhook_url
    job_id: uuid.UUID
    event: str
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    response_code: int | None
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    ended_at: datetime | None


class Webhook(msgspec.Struct):
    id: uuid.UUID
    url: str
    events: list[str]
    signing_secret: str
    disabled: bool
    disabled_at: datetime | None
    created_at: datetime
    # the latest deliveries, when one webhook is shown
    deliveries: list[Delivery] | msgspec.UnsetType = msgspec.UNSET


class WebhookData(msgspec.Struct):
    data: Webhook


class WebhookPage(msgspec.Struct):
    data: list[Webhook]
    links: Links
    meta: Meta


class DeliveryPage(msgspec.Struct):
    data: list[Delivery]
    links: Links
    meta: Meta


class SigningSecret(msgspec.Struct):
    signing_secret: str


class SigningSecretData(msgspec.Struct):
    data: SigningSecret


class User(msgspec.Struct):
    id: uuid.UUID
    username: str
    email: str
    credits: int | None
    created_at: datetime


class UserData(msgspec.Struct):
    data: User


class SignedUrlBase(msgspec.Struct):
    id: uuid.UUID
    name: str | None
    url: str  # the signed URLs are built on it: {url}?job=...&s=...
    signing_secret: str
    created_at: datetime


class SignedUrlBaseData(msgspec.Struct):
    data: SignedUrlBase


class SignedUrlBasePage(msgspec.Struct):
    data: list[SignedUrlBase]
    links: Links
    meta: Meta


class JobError(msgspec.Struct):
    """A signed URL's error: CloudConvert's error body, with the job when one ran."""

    code: str
    message: str
    errors: dict[str, list[str]] | msgspec.UnsetType = msgspec.UNSET
    data: Job | msgspec.UnsetType = msgspec.UNSET


class Hop(msgspec.Struct):
    to: str
    engine: str
    src: str = msgspec.field(name="from")


class OperationRow(msgspec.Struct):
    """One row of /v2/operations and /v2/convert/formats."""

    operation: str
    input_format: str  # ``*`` for an operation that takes any file
    output_format: str | None  # None for a result without a file (metadata)
    engine: str | None
    engine_version: str | None
    queue: str
    route: list[Hop]  # the conversions run first, if any
    # the row's options as a JSON schema: /v2/convert/formats always, /v2/operations with
    # ``include=options``
    options: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class Operations(msgspec.Struct):
    data: list[OperationRow]


_WHY = {
    400: "The request is malformed (JSON, form)",
    401: "The API key is missing or invalid",
    403: "The API key lacks the scope",
    404: "No such job, task or file (or not this user's)",
    409: "A request with the same Idempotency-Key is still in progress; Retry-After says"
    " when to send it again (it then gets that request's answer)",
    413: "The body is too large",
    422: "A parameter or field is invalid; ``errors`` names it",
    429: "A rate limit was reached; Retry-After says when to come back",
    503: "The appliance cannot take the request now (busy, or its database is away); nothing"
    " of it was kept, and Retry-After says when to come back",
}
# Every /v2 call with an API key: its request, its key, its scope, its parameters and the
# rate limits, and overload. (400 stands in every list: it also replaces the shape Litestar
# would document.)
AUTHED = (400, 401, 403, 422, 429, 503)
BY_ID = (*AUTHED, 404)
WITH_BODY = (*AUTHED, 413)
# The creating routes, which take an Idempotency-Key (api/idempotency.py).
KEYED = (*WITH_BODY, 409)


def answers(status: int, body: type | None, errors: tuple[int, ...]) -> dict[int, ResponseSpec]:
    """A route's documented responses: ``body`` with ``status`` (None: no content), and
    CloudConvert's error body with each of ``errors``."""
    documented = {
        code: ResponseSpec(Error, description=_WHY[code], generate_examples=False)
        for code in errors
    }
    documented[status] = ResponseSpec(body, description="Success", generate_examples=False)
    return documented


def downloaded() -> dict[int, ResponseSpec]:
    """The signed download route: the file's bytes, of its own media type."""
    documented = answers(200, None, (400, 404, 422))
    documented[200] = ResponseSpec(
        bytes, description="The file", media_type="*/*", generate_examples=False
    )
    return documented


def redirected() -> dict[int, ResponseSpec]:
    """The sync job route with ``redirect``: 302 to the job's one exported file."""
    return {302: ResponseSpec(None, description="The job's one exported file (Location)")}


def opened() -> dict[int, ResponseSpec]:
    """A signed URL (no API key): 302 to the job's one exported file, or why not."""

    def spec(body: type, why: str) -> ResponseSpec:
        return ResponseSpec(body, description=why, generate_examples=False)

    return redirected() | {
        400: spec(Error, _WHY[400]),
        403: spec(Error, "The signature is invalid or the URL has expired"),
        404: spec(Error, "No such signed URL base (or its owner is disabled)"),
        422: spec(JobError, "The job is invalid, failed or made no single file (with the job)"),
        429: spec(Error, _WHY[429]),
        504: spec(JobError, "The job had not ended by the sync timeout (with the job)"),
    }
