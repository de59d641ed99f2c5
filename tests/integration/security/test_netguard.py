"""The guarded pool manager against a real HTTP server on the loopback: the request names
the host (not the address it was sent to), keeps the caller's headers, and a redirect comes
back to the caller instead of being followed to an unchecked place."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from appliance.security.netguard import GuardedPoolManager


@pytest.fixture
def server() -> Iterator[tuple[int, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append({"path": self.path, **dict(self.headers)})
            self.send_response(302 if self.path == "/away" else 200)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1], seen
    finally:
        httpd.shutdown()


def test_the_request_names_the_host_and_keeps_the_callers_headers(server):
    port, seen = server
    manager = GuardedPoolManager(allow_private=True, headers={"X-Default": "1"})
    r = manager.urlopen("GET", f"http://localhost:{port}/x", headers={"X-Trace": "7"})
    assert r.status == 200
    assert seen[-1]["Host"] == f"localhost:{port}" and seen[-1]["X-Trace"] == "7"
    manager.urlopen("GET", f"http://localhost:{port}/y")
    assert seen[-1]["Host"] == f"localhost:{port}" and seen[-1]["X-Default"] == "1"
    named = manager.urlopen("GET", f"http://localhost:{port}/z", headers={"Host": "given"})
    assert named.status == 200 and seen[-1]["Host"] == "given"


def test_a_redirect_is_returned_not_followed(server):
    port, seen = server
    r = GuardedPoolManager(allow_private=True).urlopen("GET", f"http://localhost:{port}/away")
    assert r.status == 302 and [s["path"] for s in seen] == ["/away"]
