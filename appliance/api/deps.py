"""Request-scoped dependencies: the services and the authenticated principal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request

from appliance.api.events import Notifier
from appliance.conversions.catalog import Catalog
from appliance.conversions.service import JobService
from appliance.errors import Forbidden
from appliance.security.auth import Authenticator, Principal
from appliance.security.limits import RequestLimits, client_address


@dataclass
class Services:
    jobs: JobService
    auth: Authenticator
    notifier: Notifier
    catalog: Catalog
    limits: RequestLimits


def services(request: Request[Any, Any, Any]) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def principal(request: Request[Any, Any, Any]) -> Principal:
    """The key's user, once the key is valid and carries the scope the request needs:
    ``task.read`` to read, ``task.write`` to create, change or delete (403 otherwise)."""
    address = client_address(
        request.client.host if request.client else None,
        request.headers.get("x-forwarded-for"),
        request.app.state.trusted_proxies,
    )
    svc = services(request)
    who = await svc.auth.authenticate(request.headers.get("authorization"), address)
    scope = "task.read" if request.method in READ_METHODS else "task.write"
    if scope not in who.scopes:
        raise Forbidden(f"This API key lacks the {scope} scope", code="MISSING_SCOPE")
    await svc.limits.request(address, who.key_id)
    request.state.client_address = address
    return who


async def count_conversions(request: Request[Any, Any, Any], n: int) -> None:
    """Count ``n`` conversions asked for by the request's client (429 past the limit)."""
    await services(request).limits.conversions(request.state.client_address, n)
