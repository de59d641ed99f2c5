"""`appliance up` with no configuration, started as root as `scripts/run` does: starts its own
Postgres and Redis (Unix sockets, passwords generated into the data directory), migrates,
serves, converts as the unprivileged service user, scans uploads with a clamd of its own, and
stops cleanly on Ctrl-C (SIGINT) leaving no process behind. The tests run in file order against
one running appliance; the last stops it."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import pyvips
import redis
from psycopg.rows import dict_row

from appliance import local_services
from appliance.db.migrate import migrate
from appliance.security.keys import create_key
from appliance.settings import EMBEDDED_POSTGRES_PORT, EMBEDDED_REDIS_PORT
from tests.e2e.conftest import task, upload
from tests.harness.clamd import EICAR, write_signatures

SERVICE_USER = "appliance"
ROOT = Path(__file__).parents[2]
API_METRICS_PORT = 9179  # the defaults of `appliance up`
WORKER_METRICS_PORTS = (9181, 9182, 9183)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Up:
    proc: subprocess.Popen
    base: str
    port: int
    data: Path
    env: dict[str, str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()[-3000:]


def _wait_ready(up: Up) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert up.proc.poll() is None, up.output()
        try:
            if httpx.get(up.base + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("not ready: " + up.output())


@pytest.fixture(scope="module")
def up(tmp_path_factory, work_root, system_python) -> Iterator[Up]:
    ports = (EMBEDDED_POSTGRES_PORT, EMBEDDED_REDIS_PORT, API_METRICS_PORT, *WORKER_METRICS_PORTS)
    assert not any(_port_open(p) for p in ports)
    data = work_root / "up-data"  # its parents are open to the service user
    data.mkdir()
    port = local_services.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env |= {"APPLIANCE_DATA_DIR": str(data), "APPLIANCE_PORT": str(port)}
    # its own clamd loads the test's signatures (none can be downloaded here)
    env["APPLIANCE_CLAMD_DATABASE_DIR"] = str(write_signatures(work_root / "up-signatures"))
    log = tmp_path_factory.mktemp("up") / "up.log"
    proc = subprocess.Popen(
        [system_python, "-m", "appliance.cli", "up"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = Up(proc, f"http://127.0.0.1:{port}", port, data, env, log)
    try:
        _wait_ready(running)
        yield running
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> int:
    """Ctrl-C, as in a terminal: `up` stops its children and servers, then itself."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def test_up_converts_with_no_configuration(up, png_file):
    key = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "keys", "create", "--user", "op@example.test"],
        env=up.env,  # as root: the database URL names the password file, root may read it
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with httpx.Client(base_url=up.base, headers={"Authorization": f"Bearer {key}"}) as api:
        job = api.post(
            "/v2/jobs",
            json={
                "tasks": {
                    "up": {"operation": "import/upload"},
                    "c": {"operation": "convert", "input": "up", "output_format": "gif"},
                    "e": {"operation": "export/url", "input": "c"},
                }
            },
        ).json()["data"]
        assert upload(task(job, "up")["result"]["form"], png_file).status_code == 201
        job = api.get(f"/sync/v2/jobs/{job['id']}", timeout=60).json()["data"]
        assert job["status"] == "finished", job
        url = task(job, "e")["result"]["files"][0]["url"]
        gif = pyvips.Image.new_from_buffer(httpx.get(url).content, "")
        png = pyvips.Image.new_from_file(str(png_file))
        assert (gif.get("vips-loader"), gif.width, gif.height) == (
            "gifload_buffer",
            png.width,
            png.height,
        )
    # Each queue group serves its own metrics and health port: 9180 + 1, 2, 3.
    for port in WORKER_METRICS_PORTS:
        ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10)
        assert ready.status_code == 200 and ready.json()["failed"] == [], ready.text
    light = httpx.get("http://127.0.0.1:9181/metrics", timeout=10).text
    assert 'appliance_tasks_ended_total{operation="convert",status="finished"} 1.0' in light


def test_up_scans_uploads_with_its_own_clamd(up, tmp_path):
    key = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "keys", "create", "--user", "op@example.test"],
        env=up.env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    eicar = tmp_path / "eicar.png"
    eicar.write_bytes(EICAR)
    with httpx.Client(base_url=up.base, headers={"Authorization": f"Bearer {key}"}) as api:
        tasks = {
            "up": {"operation": "import/upload"},
            "c": {"operation": "convert", "input": "up", "output_format": "gif"},
        }
        job = api.post("/v2/jobs", json={"tasks": tasks}).json()["data"]
        assert upload(task(job, "up")["result"]["form"], eicar).status_code == 201
        job = api.get(f"/sync/v2/jobs/{job['id']}", timeout=60).json()["data"]
    assert task(job, "up")["code"] == "VIRUS_FOUND", job
    assert httpx.get(up.base + "/health/ready", timeout=10).json()["virus_scan"] == "on"
    assert (up.data / "run" / "clamd.sock").is_socket()


def test_api_metrics_are_on_their_own_port_not_the_apis(up):
    assert httpx.get(up.base + "/metrics", timeout=10).status_code == 404
    text = httpx.get(f"http://127.0.0.1:{API_METRICS_PORT}/metrics", timeout=10).text
    assert 'appliance_http_requests_total{method="POST",route="/v2/jobs",status="2xx"}' in text


def test_postgres_and_redis_listen_on_no_tcp_port(up):
    assert not _port_open(EMBEDDED_POSTGRES_PORT) and not _port_open(EMBEDDED_REDIS_PORT)
    run = up.data / "run"
    assert (run / f".s.PGSQL.{EMBEDDED_POSTGRES_PORT}").exists() and (run / "redis.sock").exists()
    assert run.stat().st_mode & 0o777 == 0o700


def test_postgres_refuses_a_connection_without_the_password(up):
    where = f"host={up.data / 'run'} port={EMBEDDED_POSTGRES_PORT} dbname=appliance"
    for user in ("appliance_app", "appliance", "postgres"):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"{where} user={user}", connect_timeout=5).close()
    password = (up.data / "credentials" / "postgres").read_text().strip()
    with psycopg.connect(f"{where} user=appliance_app password={password}") as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert row.fetchone() == (False,)


def test_redis_refuses_a_client_without_the_password(up):
    sock = str(up.data / "run" / "redis.sock")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(unix_socket_path=sock).ping()
    password = (up.data / "credentials" / "redis").read_text().strip()
    assert redis.Redis(unix_socket_path=sock, password=password).ping()


def test_credential_files_are_the_service_users_alone(up):
    user = pwd.getpwnam(SERVICE_USER)
    folder = up.data / "credentials"
    assert folder.stat().st_mode & 0o777 == 0o700 and folder.stat().st_uid == user.pw_uid
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["pgpass", "postgres", "redis"]
    for path in folder.iterdir():
        info = path.stat()
        assert (info.st_mode & 0o777, info.st_uid) == (0o600, user.pw_uid), path


def _uids(pid: int) -> tuple[int, ...]:
    """Real, effective, saved and filesystem uid of ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(ln for ln in status.splitlines() if ln.startswith("Uid:"))
    return tuple(int(n) for n in line.split()[1:])


def _descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid``, with its command line."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rpartition(")")[2].split()[1]
                )
            except (OSError, IndexError):
                continue
    found, todo = {}, [pid]
    while todo:
        current = todo.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                try:
                    cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                found[child] = cmd.decode(errors="replace")
                todo.append(child)
    return found


def test_no_process_of_the_appliance_runs_as_root(up):
    user = pwd.getpwnam(SERVICE_USER)
    # pg_ctl detaches the postmaster: it is found through its pid file
    postmaster = int((up.data / "postgres" / "postmaster.pid").read_text().split()[0])
    procs = {up.proc.pid: "appliance up", postmaster: "postgres", **_descendants(up.proc.pid)}
    procs |= _descendants(postmaster)
    for what in ("granian", "dramatiq", "health_server", "postgres", "redis-server"):
        assert any(what in cmd for cmd in procs.values()), (what, procs)
    wrong = {pid: (cmd, _uids(pid)) for pid, cmd in procs.items() if 0 in _uids(pid)}
    assert wrong == {}
    servers = [pid for pid, cmd in procs.items() if "postgres" in cmd or "redis" in cmd]
    assert {_uids(pid)[0] for pid in servers} == {user.pw_uid}


def test_up_stops_on_ctrl_c_leaving_nothing(up):
    assert _stop(up.proc) == 0, up.output()
    assert not _port_open(up.port) and not _port_open(API_METRICS_PORT)
    assert not (up.data / "run" / "redis.sock").exists()
    assert not (up.data / "run" / "clamd.sock").exists()
    assert (up.data / "postgres" / "PG_VERSION").exists() and (up.data / "files").is_dir()


def test_a_data_directory_from_a_root_run_before_passwords_keeps_its_data(
    work_root, system_python, tmp_path
):
    """The cluster of an earlier `appliance up` as root: trusting, owned by the postgres
    user, its tables owned by its superuser. A key made then still works after the upgrade."""
    data = work_root / "old-data"
    data.mkdir()
    old = local_services.start_postgres(data / "postgres", local_services.free_port())
    try:
        migrate(old.url)
        with psycopg.connect(old.url, autocommit=True, row_factory=dict_row) as conn:
            key = create_key(conn, "old@example.test")
    finally:
        old.stop()
    assert (data / "postgres").stat().st_uid == pwd.getpwnam("postgres").pw_uid
    port = local_services.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env |= {"APPLIANCE_DATA_DIR": str(data), "APPLIANCE_PORT": str(port)}
    env["APPLIANCE_VIRUS_SCAN"] = "off"  # this one is about the database
    log = tmp_path / "up.log"
    proc = subprocess.Popen(
        [system_python, "-m", "appliance.cli", "up"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    upgraded = Up(proc, f"http://127.0.0.1:{port}", port, data, env, log)
    try:
        _wait_ready(upgraded)
        jobs = httpx.get(
            upgraded.base + "/v2/jobs", headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert jobs.status_code == 200, jobs.text
    finally:
        assert _stop(proc) == 0, upgraded.output()
    assert (data / "postgres").stat().st_uid == pwd.getpwnam(SERVICE_USER).pw_uid
