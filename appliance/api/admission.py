"""Overload answered at once instead of by timeouts: a cap on the requests one API process
serves at the same time (503 with Retry-After). Postgres failing to serve a request is
answered the same way by the API's pool (``db.ApiPool``); a queue past its backlog cap by the
domain (``conversions.admission``).

Requests that wait by design (the sync API, ``/wait`` routes, signed URLs, which run their
job first) hold no database connection while they wait and have their own per-user cap, so
they are left out of the count, as are the health checks and Gotenberg's routes (which wait
for their job likewise).
"""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.errors import Unavailable
from appliance.metrics import ADMISSION_REJECTIONS

BUSY_RETRY_AFTER = 1  # seconds: requests in flight turn over in well under that


class InFlightCap:
    """Wraps an ASGI app: past ``limit`` requests at once, answer 503 without running one."""

    def __init__(self, app: Any, limit: int, sync_prefix: str) -> None:
        self.app = app
        self.limit = limit
        # Gotenberg's routes (/forms/) wait for their job as the sync API does
        self.waiting = (sync_prefix.rstrip("/") + "/", "/v2/s/", "/health/", "/forms/")
        self.active = 0

    def counted(self, scope: dict[str, Any]) -> bool:
        path: str = scope.get("path", "")
        return not (path.startswith(self.waiting) or path.endswith("/wait"))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.limit or not self.counted(scope):
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            ADMISSION_REJECTIONS.labels("requests-in-flight").inc()
            await _refuse(send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


async def _refuse(send: Any) -> None:
    busy = Unavailable(
        "The appliance is busy; try again shortly", retry_after=BUSY_RETRY_AFTER, code="BUSY"
    )
    body = msgspec.json.encode(busy.to_body())
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in busy.headers().items()]
    await send({"type": "http.response.start", "status": busy.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
