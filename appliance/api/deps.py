"""Request-scoped dependencies: the services and the authenticated principal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request

from appliance.api.auth import Authenticator, Principal
from appliance.api.events import Notifier
from appliance.jobs.service import JobService


@dataclass
class Services:
    jobs: JobService
    auth: Authenticator
    notifier: Notifier


def services(request: Request[Any, Any, Any]) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def principal(request: Request[Any, Any, Any]) -> Principal:
    return await services(request).auth.authenticate(request.headers.get("authorization"))
