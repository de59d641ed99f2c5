"""Request-scoped dependencies: the services and the authenticated principal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request

from appliance.api.events import Notifier
from appliance.conversions.catalog import Catalog
from appliance.conversions.graph import inline_file_chars
from appliance.conversions.service import JobService
from appliance.errors import BodyTooLarge, Forbidden
from appliance.security.auth import Authenticator, Principal
from appliance.security.limits import ClientAddresses, RequestLimits, Slots


@dataclass
class Services:
    jobs: JobService
    auth: Authenticator
    notifier: Notifier
    catalog: Catalog
    limits: RequestLimits
    sync_waits: Slots


def services(request: Request[Any, Any, Any]) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SCOPES_OF = "scopes"  # a route's opt: the family of scopes it needs (task: task.read/write)
SCOPE = "scope"  # a route's opt: the one scope it needs, whatever the method


async def principal(request: Request[Any, Any, Any]) -> Principal:
    """The key's user, once the key is valid and carries the scope the request needs:
    ``<family>.read`` to read, ``<family>.write`` to create, change or delete (403 otherwise),
    the family being the route's ``SCOPES_OF`` (``task`` unless it says)."""
    return await authorized(request, header(request, b"authorization"))


async def authorized(request: Request[Any, Any, Any], authorization: str | None) -> Principal:
    """``principal`` for the ``Authorization`` value given (``Bearer <api key>``)."""
    address = request_address(request)
    svc = services(request)
    who = await svc.auth.authenticate(authorization, address)
    family = request.route_handler.opt.get(SCOPES_OF, "task")
    scope = f"{family}.read" if request.method in READ_METHODS else f"{family}.write"
    scope = request.route_handler.opt.get(SCOPE, scope)
    if scope not in who.scopes:
        raise Forbidden(f"This API key lacks the {scope} scope", code="MISSING_SCOPE")
    await svc.limits.request(address, who.key_id)
    return who


def request_address(request: Request[Any, Any, Any]) -> str:
    """The client's address: the peer's, or what a trusted proxy says it forwarded for."""
    addresses: ClientAddresses = request.app.state.client_addresses
    peer = request.scope.get("client")
    return addresses.of(peer[0] if peer else None, header(request, b"x-forwarded-for"))


def header(request: Request[Any, Any, Any], name: bytes) -> str | None:
    """The first value of header ``name`` (lower case, as ASGI servers give names), read off
    the scope: building Litestar's ``request.headers`` for one or two values cost some 6% of
    a cached status read."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


async def count_conversions(request: Request[Any, Any, Any], n: int) -> None:
    """Count ``n`` conversions asked for by the request's client (429 past the limit)."""
    await services(request).limits.conversions(request_address(request), n)


async def check_json_size(request: Request[Any, Any, Any], tasks: object) -> None:
    """Refuse a JSON body past ``max_json_bytes`` once the import/base64 files in it (capped
    on their own) are left out: everything else is stored and echoed back."""
    limit = services(request).jobs.settings.max_json_bytes
    size = len(await request.body()) - inline_file_chars(tasks)
    if size > limit:
        raise BodyTooLarge(
            f"The request body is larger than the limit of {limit} bytes"
            " (import/base64 files aside)"
        )
