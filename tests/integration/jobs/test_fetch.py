"""import/url downloads: redirects, limits and the address guard, against a real HTTP server."""

from __future__ import annotations

import http.server
import threading

import pytest

from appliance.errors import FileTooLarge, InvalidData, PermanentError, RetryableError
from appliance.jobs import fetch as fetch_module
from appliance.jobs.files import Spool
from appliance.security import netguard

BODY = b"\x89PNG\r\n\x1a\n" + b"p" * 5000


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        routes = {
            "/file.png": (200, {"Content-Type": "image/png"}, BODY),
            "/named": (200, {"Content-Disposition": 'attachment; filename="x y.png"'}, BODY),
            "/redirect": (302, {"Location": "/file.png"}, b""),
            "/loop": (302, {"Location": "/loop"}, b""),
            "/big": (200, {}, b"x" * 20000),
            "/broken": (503, {}, b""),
            "/missing": (404, {}, b""),
        }
        if self.path.startswith("/to/"):
            status, headers, body = 302, {"Location": "http://" + self.path[4:]}, b""
        else:
            status, headers, body = routes[self.path]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def get(url, tmp_path, *, allow_private=True, limit=10000):
    with Spool(tmp_path, limit) as spool:
        name = fetch_module.fetch(url, spool, allow_private=allow_private, timeout=5)
        spool.finish()
        return name, spool.path.read_bytes()


def test_downloads_and_names_the_file(server, tmp_path):
    assert get(f"http://{server}/file.png", tmp_path) == ("file.png", BODY)
    assert get(f"http://{server}/named", tmp_path)[0] == "x y.png"


def test_follows_redirects_a_bounded_number_of_times(server, tmp_path):
    assert get(f"http://{server}/redirect", tmp_path) == ("file.png", BODY)
    with pytest.raises(PermanentError, match="redirects"):
        get(f"http://{server}/loop", tmp_path)


def test_size_limit_applies_while_streaming(server, tmp_path):
    with pytest.raises(FileTooLarge):
        get(f"http://{server}/big", tmp_path)


def test_server_errors_are_retryable_and_client_errors_permanent(server, tmp_path):
    with pytest.raises(RetryableError):
        get(f"http://{server}/broken", tmp_path)
    with pytest.raises(PermanentError):
        get(f"http://{server}/missing", tmp_path)


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


def test_only_http_and_https_are_fetched(tmp_path):
    with pytest.raises(InvalidData):
        get("ftp://example.com/x", tmp_path)
