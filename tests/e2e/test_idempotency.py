"""Idempotency-Key through the real API (granian, two API processes, Postgres, Redis), and
through the lb's real nginx (the deploy's template) in front of an api host that dies with
each request in flight: a keyed POST is resent to the other host and makes one job."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance import local_services
from tests.deploy.unit.conftest import make_fleet  # puts deploy/pyinfra on sys.path
from tests.e2e.conftest import Deployment, spawn

from fleet.render import render  # isort: skip
from roles import lb as lb_role  # isort: skip

pytestmark = pytest.mark.parametrize("deployment", ["local"], indirect=True)

UPLOAD_JOB = {"tasks": {"in": {"operation": "import/upload"}}}


def _jobs_of(deployment: Deployment, key: str) -> int:
    """The jobs of the user the API key belongs to, counted in Postgres."""
    with deployment.client(key) as api:
        user_id = api.get("/v2/users/me").json()["data"]["id"]
    return deployment.sql("SELECT count(*) AS n FROM jobs WHERE user_id = %s", user_id)[0]["n"]


def test_the_same_key_twice_gives_the_same_job_not_two(deployment):
    key = deployment.key()
    idem = {"Idempotency-Key": str(uuid.uuid4())}
    with deployment.client(key) as api:
        first = api.post("/v2/jobs", json=UPLOAD_JOB, headers=idem)
        again = api.post("/v2/jobs", json=UPLOAD_JOB, headers=idem)
        other = api.post("/v2/jobs", json={**UPLOAD_JOB, "tag": "other"}, headers=idem)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422 and other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert _jobs_of(deployment, key) == 1


def test_concurrent_requests_with_one_key_make_exactly_one_job(deployment):
    """Sent at once to the two API processes: each answer is the job or a 409 to come back
    later, and coming back gives that job."""
    key, idem = deployment.key(), {"Idempotency-Key": str(uuid.uuid4())}
    start, answers = threading.Barrier(8), []

    def send() -> None:
        with deployment.client(key) as api:
            start.wait(10)
            answers.append(api.post("/v2/jobs", json=UPLOAD_JOB, headers=idem))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(a.status_code for a in answers)
    assert len(answers) == 8 and set(statuses) <= {201, 409} and 201 in statuses, statuses
    made = {a.json()["data"]["id"] for a in answers if a.status_code == 201}
    assert len(made) == 1, made
    assert all(a.headers["retry-after"] == "1" for a in answers if a.status_code == 409)
    with deployment.client(key) as api:
        later = api.post("/v2/jobs", json=UPLOAD_JOB, headers=idem)
    assert later.status_code == 201 and later.json()["data"]["id"] in made
    assert _jobs_of(deployment, key) == 1


class DyingHost:
    """An api host that dies with every request in flight: it hands the request to the real
    API (whose job is then made) and drops the connection before any answer, as a host
    killed mid-request does ("upstream prematurely closed connection")."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                self._pass_on(conn)

    def _pass_on(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ")
        headers = dict(line.split(": ", 1) for line in lines)
        length = int(headers.get("Content-Length", "0"))
        while len(body) < length:
            body += conn.recv(65536)
        self.received.append(f"{method} {target}")
        passed = {k: v for k, v in headers.items() if k.lower() in ("authorization",
                  "content-type", "idempotency-key")}  # fmt: skip
        httpx.request(method, self.api_url + target, headers=passed, content=body, timeout=30)

    def close(self) -> None:
        self.server.close()


def _nginx_conf(prefix: Path, port: int, upstreams: list[int]) -> Path:
    """The lb's site as the deploy renders it, on loopback ports, in front of ``upstreams``
    (round robin, never marked down: each request goes to the next one)."""
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout",
         str(prefix / "k.pem"), "-out", str(prefix / "c.pem"), "-subj", "/CN=lb"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    site = render("nginx/appliance.conf.j2", **lb_role.site_context(make_fleet()))
    site = site.replace(lb_role.CERT, str(prefix / "c.pem"))
    site = site.replace(lb_role.KEY, str(prefix / "k.pem"))
    site = site.replace("/var/log/nginx/", f"{prefix}/logs/")
    site = re.sub(r"listen \[::\]:\d+[^;]*;", "", site)
    site = site.replace("listen 80 default_server;", f"listen 127.0.0.1:{port + 1};")
    site = site.replace("listen 443 ssl http2 default_server;", f"listen 127.0.0.1:{port} ssl;")
    site = site.replace("listen 127.0.0.1:8081;", f"listen 127.0.0.1:{port + 2};")
    (prefix / "site.conf").write_text(site)
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=0;\n" for p in upstreams)
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (prefix / d).mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.getuid() == 0 else "")
        + f"worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\n"
        "events { worker_connections 256; }\nhttp {\n"
        f"  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n"
        f"  fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n"
        f"  scgi_temp_path {prefix}/scgi;\n"
        f"  upstream appliance_api {{\n{servers}  }}\n  include {prefix}/site.conf;\n}}\n"
    )
    return conf


@pytest.fixture
def lb(deployment: Deployment, tmp_path: Path) -> Iterator[tuple[str, DyingHost]]:
    """The lb's nginx in front of a dying host and the real API, in that order."""
    dying = DyingHost(deployment.url)
    port = local_services.free_port()
    conf = _nginx_conf(tmp_path, port, [dying.port, int(deployment.url.rsplit(":", 1)[1])])
    cmd = ["nginx", "-c", str(conf), "-p", str(tmp_path), "-g", "daemon off;"]
    proc = spawn(cmd, dict(os.environ), tmp_path / "nginx.log")
    try:
        url = f"https://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(url + "/health/live", verify=False, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, dying
    finally:
        proc.terminate()
        proc.wait(10)
        dying.close()


def test_a_keyed_post_to_a_dying_host_is_resent_to_the_other_and_makes_one_job(deployment, lb):
    url, dying = lb
    key = deployment.key()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, verify=False, timeout=60) as api:
        keyed = [
            api.post("/v2/jobs", json=UPLOAD_JOB, headers={"Idempotency-Key": str(uuid.uuid4())})
            for _ in range(4)
        ]
        assert [r.status_code for r in keyed] == [201] * 4, [r.text for r in keyed]
        # every other request went to the dying host first: it made the job, the other
        # host answered its resend with that job
        assert dying.received.count("POST /v2/jobs") == 2, dying.received
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in keyed) == 2
        assert _jobs_of(deployment, key) == 4
        # without a key nginx never resends a POST that reached a host: one of two is lost
        keyless = sorted(api.post("/v2/jobs", json=UPLOAD_JOB).status_code for _ in range(2))
    assert keyless == [201, 502]
    assert dying.received.count("POST /v2/jobs") == 3
    assert _jobs_of(deployment, key) == 6  # the lost one's job was made all the same
