"""import/url downloads: redirects, limits and the address guard, against a real HTTP server."""

from __future__ import annotations

import time

import pytest

from appliance.conversions import fetch as fetch_module
from appliance.conversions.files import Spool
from appliance.errors import FileTooLarge, InvalidData, PermanentError, RetryableError
from appliance.security import netguard
from tests.harness.origin import QuietHandler, Reply, always, serve, serving

BODY = b"\x89PNG\r\n\x1a\n" + b"p" * 5000


ROUTES = {
    "/file.png": Reply(200, BODY, {"Content-Type": "image/png"}),
    "/named": Reply(200, BODY, {"Content-Disposition": 'attachment; filename="x y.png"'}),
    "/redirect": Reply(302, headers={"Location": "/file.png"}),
    "/loop": Reply(302, headers={"Location": "/loop"}),
    "/big": Reply(200, b"x" * 20000),
    "/broken": Reply(503),
    "/missing": Reply(404),
    "/to-ftp": Reply(302, headers={"Location": "ftp://127.0.0.1/file.png"}),
}


def route(path: str) -> Reply:
    """ROUTES, plus /to/HOST:PORT/PATH redirecting to http://HOST:PORT/PATH."""
    if path.startswith("/to/"):
        return Reply(302, headers={"Location": "http://" + path[4:]})
    return ROUTES[path]


@pytest.fixture(scope="module")
def server():
    with serve(route) as origin:
        yield f"127.0.0.1:{origin.port}"


def get(url, tmp_path, *, allow_private=True, limit=10000, timeout=5):
    with Spool(tmp_path, limit) as spool:
        name = fetch_module.fetch(url, spool, allow_private=allow_private, timeout=timeout)
        spool.finish()
        return name, spool.path.read_bytes()


def test_downloads_and_names_the_file(server, tmp_path):
    assert get(f"http://{server}/file.png", tmp_path) == ("file.png", BODY)
    assert get(f"http://{server}/named", tmp_path)[0] == "x y.png"


def test_follows_redirects_a_bounded_number_of_times(server, tmp_path):
    assert get(f"http://{server}/redirect", tmp_path) == ("file.png", BODY)
    with pytest.raises(PermanentError, match="Too many redirects") as info:
        get(f"http://{server}/loop", tmp_path)
    assert info.value.code == "IMPORT_FAILED"


def test_size_limit_applies_while_streaming(server, tmp_path):
    with pytest.raises(FileTooLarge) as info:
        get(f"http://{server}/big", tmp_path)
    assert info.value.code == "FILE_TOO_LARGE"


def test_server_errors_are_retryable_and_client_errors_permanent(server, tmp_path):
    with pytest.raises(RetryableError, match="answered HTTP 503") as retry:
        get(f"http://{server}/broken", tmp_path)
    assert retry.value.code == "TEMPORARY_FAILURE"
    with pytest.raises(PermanentError, match="answered HTTP 404") as info:
        get(f"http://{server}/missing", tmp_path)
    assert info.value.code == "IMPORT_FAILED"


def test_loopback_is_refused_unless_allowed(server, tmp_path):
    with pytest.raises(InvalidData) as info:
        get(f"http://{server}/file.png", tmp_path, allow_private=False)
    assert info.value.code == "URL_NOT_ALLOWED"


def test_redirect_to_a_private_address_is_refused(server, tmp_path, monkeypatch):
    """The first hop is 'public' (a name we map to the test server); its redirect to the
    loopback address is checked again and refused."""
    port = server.split(":")[1]

    def fake_resolve(host, port_, *, allow_private):
        if host == "public.test":
            return "127.0.0.1"
        return netguard.resolve(host, port_, allow_private=allow_private)

    monkeypatch.setattr(fetch_module, "resolve", fake_resolve)
    assert get(f"http://public.test:{port}/file.png", tmp_path, allow_private=False)[1] == BODY
    with pytest.raises(InvalidData) as info:
        get(
            f"http://public.test:{port}/to/127.0.0.1:{port}/file.png", tmp_path, allow_private=False
        )
    assert info.value.code == "URL_NOT_ALLOWED"


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "file:///etc/passwd", "gopher://127.0.0.1:70/", "http:///nohost"],
)
def test_only_http_and_https_are_fetched(tmp_path, url):
    with pytest.raises(InvalidData) as info:
        get(url, tmp_path)
    assert info.value.code == "INVALID_URL"
    assert info.value.errors == {"url": ["must be http:// or https://"]}


def test_a_redirect_to_another_scheme_is_refused(server, tmp_path):
    with pytest.raises(InvalidData) as info:
        get(f"http://{server}/to-ftp", tmp_path)
    assert info.value.code == "INVALID_URL"


def test_credentials_are_not_sent_to_another_origin_on_redirect(tmp_path):
    """Two servers (two origins); the first redirects to the second, which records headers."""
    with serve(route) as first, serve(always(BODY)) as second:
        target = f"127.0.0.1:{second.port}/x.png"
        with Spool(tmp_path, 100000) as spool:
            fetch_module.fetch(
                first.url(f"/to/{target}"),
                spool,
                allow_private=True,
                timeout=5,
                headers={"Authorization": "Bearer secret", "X-Trace": "1"},
            )
    seen = second.requests[0].headers
    assert "Authorization" not in seen and seen.get("X-Trace") == "1"


def test_a_download_that_drips_is_stopped_by_the_total_deadline(tmp_path, monkeypatch):
    class Drip(QuietHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x" * 100)
                    self.wfile.flush()
                    time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                pass

    monkeypatch.setattr(fetch_module, "TOTAL_TIMEOUT_FACTOR", 2)
    with serving(Drip) as port, pytest.raises(RetryableError, match="longer than"):
        # each read is quick; the whole takes far longer than 2 x 0.5 s
        get(f"http://127.0.0.1:{port}/", tmp_path, limit=200000, timeout=0.5)


def test_slow_redirects_spend_the_same_total_deadline(tmp_path, monkeypatch):
    class SlowLoop(QuietHandler):
        def do_GET(self):
            time.sleep(0.4)  # each hop answers within the read timeout
            self.send_response(302)
            self.send_header("Location", "/again")
            self.send_header("Content-Length", "0")
            self.end_headers()

    monkeypatch.setattr(fetch_module, "TOTAL_TIMEOUT_FACTOR", 2)
    with serving(SlowLoop) as port:
        started = time.monotonic()
        with pytest.raises(RetryableError, match="longer than"):
            get(f"http://127.0.0.1:{port}/", tmp_path, timeout=0.5)
        assert time.monotonic() - started < 1.6  # not six hops of 0.4 s
