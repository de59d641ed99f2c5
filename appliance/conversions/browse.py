"""The worker's side of a browser's network: every request a captured page makes, fetched
through the address guard on the sandboxed browser's behalf (engines/outside.py carries them).

Each request and each redirect hop is resolved once, checked by ``netguard`` and sent to that
very address (``fetch.open_pinned``), so a page cannot reach private, loopback, link-local or
metadata addresses, by a redirect or by a name that resolves elsewhere the second time (DNS
rebinding), unless the operator allows private addresses. Redirects are followed here, a check
per hop, because Chromium does not follow a redirect a route answers with. Bounded: bytes per
response and per capture, requests per capture.
"""

from __future__ import annotations

import base64
import logging
from urllib.parse import urljoin, urlsplit

import urllib3

from appliance.conversions.fetch import MAX_REDIRECTS, open_pinned
from appliance.engines.outside import FetchReply, FetchRequest
from appliance.errors import ApplianceError

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 50 << 20  # one resource
MAX_TOTAL_BYTES = 200 << 20  # everything one capture loads
MAX_REQUESTS = 1000  # requests one capture makes
METHODS = frozenset({"GET", "HEAD", "POST", "OPTIONS"})
# Not passed on to the browser: they describe the connection, or the body as it came (urllib3
# hands over the body decoded), not the response the browser gets.
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length"}
)


class GuardedFetcher:
    """``outside.Fetcher`` for one capture of ``page_url``: ``headers`` (the task's, e.g.
    credentials) go only to requests of the page's own origin."""

    def __init__(
        self,
        page_url: str,
        *,
        allow_private: bool,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.origin = _origin(page_url)
        self.allow_private = allow_private
        self.timeout = timeout
        self.headers = headers or {}
        self.loaded = 0  # bytes so far
        self.requests = 0
        self.refused: list[str] = []  # what the guard (or a limit) refused, for the log

    def __call__(self, request: FetchRequest) -> FetchReply:
        self.requests += 1
        if self.requests > MAX_REQUESTS:
            return self._refuse(request.url, f"more than {MAX_REQUESTS} requests")
        if request.method.upper() not in METHODS:
            return self._refuse(request.url, f"method {request.method} not allowed")
        try:
            return self._follow(request)
        except ApplianceError as exc:  # refused by the guard, or unreachable
            return self._refuse(request.url, exc.message, exc.code)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            return self._refuse(request.url, type(exc).__name__)

    def _refuse(self, url: str, why: str, code: str | None = None) -> FetchReply:
        log.info("capture: refused %s: %s", url, why)
        self.refused.append(url)
        return FetchReply(error=why, code=code)

    def _follow(self, request: FetchRequest) -> FetchReply:
        url, method = request.url, request.method.upper()
        body = base64.b64decode(request.body) if request.body else None
        for _ in range(MAX_REDIRECTS + 1):
            headers = self._headers_for(url, request.headers)
            pool, response = open_pinned(
                method,
                url,
                allow_private=self.allow_private,
                timeout=self.timeout,
                headers=headers,
                body=body,
                user_agent=request.headers.get("user-agent", "appliance-capture/1"),
            )
            try:
                location = response.headers.get("Location")
                if response.status in (301, 302, 303, 307, 308) and location:
                    url = urljoin(url, location)
                    if response.status == 303 or (response.status in (301, 302) and body):
                        method, body = "GET", None  # as browsers do
                    continue
                return FetchReply(
                    status=response.status,
                    url=url,
                    headers={
                        k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS
                    },
                    body=base64.b64encode(self._read(response)).decode(),
                )
            finally:
                response.release_conn()
                pool.close()
        raise ApplianceError(f"more than {MAX_REDIRECTS} redirects")

    def _headers_for(self, url: str, asked: dict[str, str]) -> dict[str, str]:
        """The browser's headers, plus the task's for the page's own origin only."""
        headers = {k: v for k, v in asked.items() if k.lower() not in ("host", "user-agent")}
        return headers | self.headers if _origin(url) == self.origin else headers

    def _read(self, response: urllib3.BaseHTTPResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read(1 << 16):
            size += len(chunk)
            self.loaded += len(chunk)
            if size > MAX_RESPONSE_BYTES or self.loaded > MAX_TOTAL_BYTES:
                raise ApplianceError("the page loads too much")
            chunks.append(chunk)
        return b"".join(chunks)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port
