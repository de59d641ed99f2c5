"""What a client sends that must not rest in clear: import/url request headers are sealed
until the task ends and never shown; the fetched file is sealed in storage."""

from __future__ import annotations

import http.server
import threading

import msgspec
import pytest

from appliance.storage import object_key
from tests.integration.jobs.conftest import task

TOKEN = "Bearer s3cr3t-t0ken-of-the-user"
BODY = b"\x89PNG\r\n\x1a\n" + b"private pixels " * 4000


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(settings, allow_private_urls=True)


@pytest.fixture
def origin():
    seen: list[dict[str, str]] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(dict(self.headers))
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/photo.png", seen
    httpd.shutdown()


def test_import_url_headers_reach_the_origin_but_never_rest_or_show_in_clear(system, origin):
    url, seen = origin
    system.stop_worker()  # the task waits: its stored payload is what rests meanwhile
    job = system.create(
        {"in": {"operation": "import/url", "url": url, "headers": {"Authorization": TOKEN}}}
    )
    assert "s3cr3t" not in str(job)
    waiting = system.sql("SELECT payload::text AS p FROM tasks WHERE job_id = %s", job["id"])
    assert "s3cr3t" not in waiting[0]["p"] and "_sealed" in waiting[0]["p"]
    system.start_worker()
    job = system.wait(job["id"])
    assert job["status"] == "finished", job
    assert seen and seen[0]["Authorization"] == TOKEN
    ended = system.sql("SELECT payload::text AS p FROM tasks WHERE job_id = %s", job["id"])
    assert "s3cr3t" not in ended[0]["p"] and "_sealed" not in ended[0]["p"]
    stored = system.sql("SELECT sha256 FROM task_files WHERE task_id = %s", task(job, "in")["id"])
    key = object_key(stored[0]["sha256"])
    raw = b"".join(system.rt.storage.backend.iter_bytes(key))
    assert b"private pixels" not in raw
    assert b"".join(system.rt.storage.iter_bytes(key)) == BODY
