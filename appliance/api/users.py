"""/v2/users/me: the user a key belongs to (CloudConvert's users.me())."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get

from appliance.api import responses
from appliance.api.deps import SCOPES_OF, services
from appliance.api.schemas import AUTHED, KEY, UserData, answers
from appliance.security.accounts import user_document
from appliance.security.auth import Principal


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
