"""A real HTTP origin on loopback, for tests of whatever fetches: import/url, redirects, the
address guard, retries.

``serve(respond)`` answers every GET with ``respond(path)`` and records each request's path
and headers, so a test can check what reached the origin. ``serving(handler)`` runs any
handler class, for the few tests that need to misbehave at the socket (drip, stall).
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # as sent: header names keep their case


@dataclass
class Origin:
    port: int
    requests: list[Request] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A handler that keeps the test output clean."""

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """Run ``handler`` on a loopback port (yielded) until the block ends."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def serve(respond: Callable[[str], Reply]) -> Iterator[Origin]:
    """An origin whose GETs are answered by ``respond(path)`` and recorded in order."""
    seen: list[Request] = []

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            seen.append(Request(self.path, dict(self.headers)))
            reply = respond(self.path)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

    with serving(Handler) as port:
        yield Origin(port, seen)


def always(body: bytes, **headers: str) -> Callable[[str], Reply]:
    """A ``respond`` that answers every path with 200 and ``body``."""
    reply = Reply(200, body, {k.replace("_", "-"): v for k, v in headers.items()})
    return lambda _path: reply
