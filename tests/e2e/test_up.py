"""`appliance up` with no configuration: starts its own Postgres and Redis, migrates, serves,
converts, and stops cleanly on Ctrl-C (SIGINT) leaving no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from appliance import local_services
from appliance.settings import EMBEDDED_POSTGRES_PORT, EMBEDDED_REDIS_PORT
from tests.e2e.conftest import task, upload


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_up_runs_everything_with_no_configuration_and_stops_on_ctrl_c(
    tmp_path, work_root, png_file
):
    assert not _port_open(EMBEDDED_POSTGRES_PORT) and not _port_open(EMBEDDED_REDIS_PORT)
    data = work_root / "up-data"  # reachable by the postgres user, unlike pytest's tmp_path
    data.mkdir()
    port = local_services.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env |= {"APPLIANCE_DATA_DIR": str(data), "APPLIANCE_PORT": str(port)}
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "up"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "up.log").read_text()
            try:
                if httpx.get(base + "/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("not ready: " + (tmp_path / "up.log").read_text()[-3000:])
        key = subprocess.run(
            [sys.executable, "-m", "appliance.cli", "keys", "create", "--user", "op@example.test"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as api:
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
            assert httpx.get(url).content[:6] == b"GIF89a"
        # Each queue group serves its own metrics and health port: 9180 + 1, 2, 3.
        for n in (1, 2, 3):
            ready = httpx.get(f"http://127.0.0.1:{9180 + n}/health/ready", timeout=10)
            assert ready.status_code == 200 and ready.json()["failed"] == [], ready.text
        light = httpx.get("http://127.0.0.1:9181/metrics", timeout=10).text
        assert 'appliance_tasks_ended_total{operation="convert",status="finished"} 1.0' in light
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, (tmp_path / "up.log").read_text()[-3000:]
    assert not _port_open(port)
    assert not _port_open(EMBEDDED_POSTGRES_PORT) and not _port_open(EMBEDDED_REDIS_PORT)
    assert (data / "postgres" / "PG_VERSION").exists() and (data / "files").is_dir()
