"""/v2/users/me: the user a key belongs to (CloudConvert's users.me()); its DELETE erases
the user and all their data (a key with the ``user.erase`` scope only)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, Response, delete, get

from appliance.api import responses
from appliance.api.deps import SCOPE, SCOPES_OF, services
from appliance.api.schemas import AUTHED, KEY, UserData, answers
from appliance.conversions import personal
from appliance.errors import NotFound
from appliance.security.accounts import AccountError, user_document
from appliance.security.auth import Principal
from appliance.security.keys import ERASE_SCOPE


@get(
    "/v2/users/me",
    tags=["users"],
    summary="The user the API key belongs to",
    opt={SCOPES_OF: "user"},
    security=KEY,
    responses=answers(200, UserData, (*AUTHED, 404)),
)
async def me(request: Request[Any, Any, Any], principal: Principal) -> Response[bytes]:
    jobs = services(request).jobs
    doc = await user_document(jobs.pool, jobs.settings, principal.user_id)
    return responses.data(msgspec.json.encode(doc).decode())


@delete(
    "/v2/users/me",
    status_code=204,
    tags=["users"],
    summary="Erase the user the API key belongs to, with all their jobs, files and keys",
    opt={SCOPE: ERASE_SCOPE},
    security=KEY,
    responses=answers(204, None, (*AUTHED, 404)),
)
async def erase_me(request: Request[Any, Any, Any], principal: Principal) -> None:
    jobs = services(request).jobs
    try:
        await asyncio.to_thread(
            personal.erase, jobs.settings, jobs.storage, principal.user_id, actor="api"
        )
    except AccountError:  # erased since its key was checked
        raise NotFound("The user no longer exists") from None
