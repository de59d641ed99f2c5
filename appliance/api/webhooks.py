"""/v2/webhooks: create, list, show (with the latest deliveries), delete; the delivery log;
the secret that signs deliveries to a job's own webhook_url. Every route needs the
``webhook.read`` or ``webhook.write`` scope."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter

from appliance.api import idempotency, responses
from appliance.api.deps import SCOPES_OF
from appliance.api.schemas import (
    AUTHED,
    BY_ID,
    KEY,
    KEYED,
    TEXT,
    DeliveryPage,
    SigningSecretData,
    WebhookData,
    WebhookPage,
    answers,
)
from appliance.conversions.webhooks import WebhookService
from appliance.security.auth import Principal

WEBHOOK_SCOPES = {SCOPES_OF: "webhook"}
PerPage = Annotated[int, Parameter(ge=1, le=100)]
Page = Annotated[int, Parameter(ge=1, le=responses.MAX_PAGE)]


class WebhookCreate(msgspec.Struct):
    url: str
    events: list[str]


def webhooks(request: Request[Any, Any, Any]) -> WebhookService:
    return request.app.state.webhooks  # type: ignore[no-any-return]


def paged(
    request: Request[Any, Any, Any], found: tuple[str, bool], page: int, per_page: int
) -> Response[bytes]:
    doc, has_next = found
    count = len(msgspec.json.decode(doc, type=list[msgspec.Raw]))
    return responses.page(doc, request, page, per_page, has_next, count)


class WebhookController(Controller):
    path = "/v2/webhooks"
    tags = ["webhooks"]
    opt = WEBHOOK_SCOPES
    security = KEY

    @post("/", status_code=201, responses=answers(201, WebhookData, KEYED))
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: WebhookCreate,
        principal: Principal,
        idempotency_key: idempotency.KeyHeader = None,
    ) -> Response[bytes]:
        key = await idempotency.requested(request, "POST /v2/webhooks", idempotency_key)
        doc = await webhooks(request).create(principal.user_id, data.url, data.events, key)
        return responses.data(doc, 201)

    @get("/", responses=answers(200, WebhookPage, AUTHED))
    async def index(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        url: Annotated[str | None, Parameter(query="filter[url]", pattern=TEXT)] = None,
        page: Page = 1,
        per_page: PerPage = 100,
    ) -> Response[bytes]:
        return await list_webhooks(request, principal, url, page, per_page)

    @get("/{webhook_id:uuid}", responses=answers(200, WebhookData, BY_ID))
    async def show(
        self, request: Request[Any, Any, Any], webhook_id: uuid.UUID, principal: Principal
    ) -> Response[bytes]:
        return responses.data(await webhooks(request).show(principal.user_id, webhook_id))

    @delete("/{webhook_id:uuid}", status_code=204, responses=answers(204, None, BY_ID))
    async def remove(
        self, request: Request[Any, Any, Any], webhook_id: uuid.UUID, principal: Principal
    ) -> None:
        await webhooks(request).delete(principal.user_id, webhook_id)

    @get("/deliveries", responses=answers(200, DeliveryPage, AUTHED))
    async def deliveries(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        webhook_id: Annotated[uuid.UUID | None, Parameter(query="filter[webhook_id]")] = None,
        job_id: Annotated[uuid.UUID | None, Parameter(query="filter[job_id]")] = None,
        status: Annotated[str | None, Parameter(query="filter[status]")] = None,
        page: Page = 1,
        per_page: PerPage = 100,
    ) -> Response[bytes]:
        found = await webhooks(request).deliveries(
            principal.user_id, (webhook_id, job_id, status), page, per_page
        )
        return paged(request, found, page, per_page)

    @get("/signing_secret", responses=answers(200, SigningSecretData, AUTHED))
    async def signing_secret(
        self, request: Request[Any, Any, Any], principal: Principal
    ) -> Response[bytes]:
        secret = await webhooks(request).signing_secret(principal.user_id)
        return responses.data(msgspec.json.encode({"signing_secret": secret}).decode())


async def list_webhooks(
    request: Request[Any, Any, Any],
    principal: Principal,
    url: str | None,
    page: int,
    per_page: int,
) -> Response[bytes]:
    found = await webhooks(request).page(principal.user_id, url, page, per_page)
    return paged(request, found, page, per_page)


@get(
    "/v2/users/me/webhooks",
    opt=WEBHOOK_SCOPES,
    tags=["webhooks"],
    security=KEY,
    responses=answers(200, WebhookPage, AUTHED),
)
async def my_webhooks(
    request: Request[Any, Any, Any],
    principal: Principal,
    url: Annotated[str | None, Parameter(query="filter[url]", pattern=TEXT)] = None,
    page: Page = 1,
    per_page: PerPage = 100,
) -> Response[bytes]:
    """CloudConvert's path for the list of the user's webhooks."""
    return await list_webhooks(request, principal, url, page, per_page)
