"""HTTP metrics and request ids for the API, as one thin ASGI wrapper.

Litestar's stock Prometheus middleware cost ~40% of throughput here; this one does the least
per request: one header scan, one context-variable set, and an update of plain in-process
tallies per (route template, method, status class). The tallies go into the shared metric
files at most once a second (``FLUSH_SECONDS``), off the request's path: a multiprocess
metric update costs a lock and an mmap write per value (~9 µs a request for a counter and a
histogram, measured), the tally ~1 µs. A scrape may so lag by up to a second; the last
second before a worker process dies is lost.

The route label is the matched route's template (``/v2/jobs/{job_id}``), never the raw
path; requests that match no route are ``unmatched``.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from bisect import bisect_left
from typing import Any

from appliance import logs
from appliance.metrics import HTTP_BUCKETS, HTTP_DURATION, HTTP_REQUESTS

HEADER = b"x-request-id"
# Accepted ids: what load balancers and clients commonly send (UUIDs, hex, base64url);
# anything else is replaced, so a log line can never be forged through it.
VALID_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
FLUSH_SECONDS = 1.0
_N_BUCKETS = len(HTTP_BUCKETS) + 1  # the last one is +Inf

Scope = dict[str, Any]
Key = tuple[str, str, int]


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "5xx"


class _Tally:
    """Requests, summed seconds and per-bucket counts not yet written to the metrics."""

    __slots__ = ("buckets", "count", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.buckets = [0] * _N_BUCKETS


class HttpMetrics:
    """Wraps an ASGI app: times each HTTP request, counts it, and carries ``X-Request-ID``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._tallies: dict[Key, _Tally] = {}
        self._flush_pending = False

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
            status,
        )
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally()
        tally.count += 1
        tally.seconds += seconds
        tally.buckets[bisect_left(HTTP_BUCKETS, seconds)] += 1  # le is inclusive
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Write the tallies into the metrics (and so into this process's metric files)."""
        self._flush_pending = False
        tallies, self._tallies = self._tallies, {}
        for (route, method, status), t in tallies.items():
            labels = (route, method, status_class(status))
            HTTP_REQUESTS.labels(*labels).inc(t.count)
            hist = HTTP_DURATION.labels(*labels)
            # prometheus-client has no bulk observe; its Histogram keeps these two (< 1.0).
            hist._sum.inc(t.seconds)
            for i, n in enumerate(t.buckets):
                if n:
                    hist._buckets[i].inc(n)


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == HEADER:
            if VALID_ID.fullmatch(value):
                return value
            break
    # Not a secret, only unique: the PRNG is 5x cheaper than os.urandom here.
    return b"%032x" % random.getrandbits(128)
