"""A real HTTP server that receives webhook deliveries, for tests and benchmarks.

It records every POST (headers, exact body, arrival time) and answers ``status`` (200 unless
a test sets another). ``stop()`` closes its port, so senders meet a connection refused, and
``start()`` opens it again on the same port: a receiver that was down comes back.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.time() on arrival (wall clock: compared with Postgres's timestamps)
    method: str = "POST"

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return str(self.payload["event"])


@dataclass
class Receiver:
    port: int = 0
    status: int = 200
    received: list[Received] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = self._chunked()
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.record(self.path, headers, body, self.command)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_PATCH = do_POST  # Gotenberg's webhooks may use them

            def _chunked(self) -> bytes:
                body = b""
                while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()  # the blank line after the last chunk
                return body

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def record(self, path: str, headers: dict[str, str], body: bytes, method: str) -> None:
        with self._arrived:
            self.received.append(Received(path, headers, body, time.time(), method))
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """The first ``count`` deliveries, once they have arrived (AssertionError if not)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(self.received)} of {count} deliveries arrived in {timeout}s:"
                        f" {[r.event for r in self.received]}"
                    )
                self._arrived.wait(left)
            return list(self.received[:count])

    def by_event(self, event: str) -> list[Received]:
        with self._arrived:
            return [r for r in self.received if r.event == event]
