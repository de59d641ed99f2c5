"""``Gotenberg-Version`` on the Gotenberg routes' answers, as Gotenberg sends it since 8.39:
on every answer to a request whose key passed, errors included, and on none other, so a
client without a key learns nothing of the version: ``/health`` asks for no key, and what
the key check refuses (401; 403, a key without the scope; 429, an address past its failed
attempts or a key past its request rate) is answered without it.

The routes' key check marks the request (``key_passed``); ``VersionHeader``, the router's
middleware, sees every answer, the error handlers' included, and adds the header to marked
ones.
"""

from __future__ import annotations

from typing import Any

from litestar.datastructures import MutableScopeHeaders

from appliance.conversions.gotenberg import VERSION, VERSION_HEADER

KEY_PASSED = "gotenberg_key_passed"  # in scope["state"]: the request's key passed
# Refusals show no version, a 403 (a webhook URL the address guard refuses) as a 401 does:
# they answer who may not, or may not ask for that, and say nothing more.
REFUSED = frozenset({401, 403})


def key_passed(scope: Any) -> None:
    """Mark the request: its key passed, so its answer carries the version."""
    scope.setdefault("state", {})[KEY_PASSED] = True


class VersionHeader:
    """Wraps a route's ASGI app: ``Gotenberg-Version`` on the answers of marked requests."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_versioned(message: Any) -> None:
            if message["type"] == "http.response.start" and shows_version(scope, message["status"]):
                MutableScopeHeaders.from_message(message)[VERSION_HEADER] = VERSION
            await send(message)

        await self.app(scope, receive, send_versioned)


def shows_version(scope: Any, status: int) -> bool:
    return bool(scope.get("state", {}).get(KEY_PASSED)) and status not in REFUSED
