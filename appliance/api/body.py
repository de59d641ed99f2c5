"""The request class of the API: JSON bodies that the decoder cannot take are the client's
error, not the server's."""

from __future__ import annotations

from typing import Any

from litestar import Request

from appliance.errors import ClientError


class ApiRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        try:
            return await super().json()
        except RecursionError:
            # msgspec stops at Python's recursion limit (about 1,000 levels of [ or {); Litestar
            # takes that for a server error, not for malformed JSON
            raise ClientError("JSON is malformed: nested too deeply", code="BAD_REQUEST") from None
