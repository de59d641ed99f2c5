"""The guarded pool manager against a real HTTP server on the loopback: the request names
the host (not the address it was sent to), keeps the caller's headers, and a redirect comes
back to the caller instead of being followed to an unchecked place."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.security.netguard import GuardedPoolManager
from tests.harness.origin import Origin, Reply, serve


@pytest.fixture
def server() -> Iterator[Origin]:
    def respond(path: str) -> Reply:
        status = 302 if path == "/away" else 200
        return Reply(status, b"ok", {"Location": "http://127.0.0.1:9/elsewhere"})

    with serve(respond) as origin:
        yield origin


def test_the_request_names_the_host_and_keeps_the_callers_headers(server):
    port = server.port
    manager = GuardedPoolManager(allow_private=True, headers={"X-Default": "1"})
    r = manager.urlopen("GET", f"http://localhost:{port}/x", headers={"X-Trace": "7"})
    assert r.status == 200
    assert (
        server.requests[-1].headers["Host"] == f"localhost:{port}"
        and server.requests[-1].headers["X-Trace"] == "7"
    )
    manager.urlopen("GET", f"http://localhost:{port}/y")
    assert (
        server.requests[-1].headers["Host"] == f"localhost:{port}"
        and server.requests[-1].headers["X-Default"] == "1"
    )
    named = manager.urlopen("GET", f"http://localhost:{port}/z", headers={"Host": "given"})
    assert named.status == 200 and server.requests[-1].headers["Host"] == "given"


def test_a_redirect_is_returned_not_followed(server):
    url = f"http://localhost:{server.port}/away"
    r = GuardedPoolManager(allow_private=True).urlopen("GET", url)
    assert r.status == 302 and [s.path for s in server.requests] == ["/away"]
