"""HTTP metrics and request ids for the API, as one thin ASGI wrapper.

Litestar's stock Prometheus middleware cost ~40% of throughput here; this one does the least
per request: one header scan, one context-variable set, and two pre-resolved metric children
(cached per route template, method and status class) updated at the end. The route label is
the matched route's template (``/v2/jobs/{job_id:uuid}``), never the raw path; requests that
match no route are ``unmatched``.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from appliance import logs
from appliance.metrics import HTTP_DURATION, HTTP_REQUESTS

HEADER = b"x-request-id"
# Accepted ids: what load balancers and clients commonly send (UUIDs, hex, base64url);
# anything else is replaced, so a log line can never be forged through it.
VALID_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"

Scope = dict[str, Any]


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "5xx"


class HttpMetrics:
    """Wraps an ASGI app: times each HTTP request, counts it, and carries ``X-Request-ID``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = _request_id(scope["headers"])
        token = logs.request_id.set(rid.decode())
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, rid)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)
            self._observe(scope, status, time.perf_counter() - start)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"]
        key = (
            scope.get("path_template") or UNMATCHED,
            method if method in METHODS else "OTHER",
            status // 100,
        )
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._resolve(key, status)
        children[0].inc()
        children[1].observe(seconds)

    @staticmethod
    def _resolve(key: tuple[str, str, int], status: int) -> tuple[Any, Any]:
        labels = (key[0], key[1], status_class(status))
        return HTTP_REQUESTS.labels(*labels), HTTP_DURATION.labels(*labels)


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == HEADER:
            if VALID_ID.fullmatch(value):
                return value
            break
    return os.urandom(16).hex().encode()
