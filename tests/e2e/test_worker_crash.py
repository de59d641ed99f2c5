"""A worker process killed with SIGKILL in the middle of a task: the task runs again on a new
worker once its lease lapses, and the job finishes. Real processes, real kill."""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import pytest
import pyvips

from appliance import local_services
from appliance.supervisor import stop_process_groups
from tests.conftest import drop_database, new_database
from tests.e2e.conftest import WORKER_CMD, Deployment, _start, _wait_ready, spawn, task, upload


def _slow_input(path):
    # Large enough that the AVIF encode outlasts a status poll (18 s on this machine idle; the
    # 3000-pixel square it was took 51 s, and more than the test's 300 s wait in a whole run).
    size = 1500
    x = pyvips.Image.xyz(size, size)
    noise = pyvips.Image.gaussnoise(size, size, sigma=30)
    img = (x[0] * 255 / size + noise).bandjoin([x[1] * 255 / size + noise, noise + 128])
    img.cast("uchar").write_to_file(str(path))
    return path


def _processing(api, job_id):
    job = api.get(f"/v2/jobs/{job_id}").json()["data"]
    return task(job, "c")["status"] == "processing"


def _wait_for_end(api, job_id, seconds):
    """Sync waits (60 s each) until the job ends or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        job = api.get(f"/sync/v2/jobs/{job_id}", timeout=90).json()["data"]
        if job["status"] in ("finished", "error") or time.monotonic() > deadline:
            return job


# Its own wait for the job's end is 300 s (the AVIF encode runs twice, for a minute or more on a
# loaded machine), so the suite's 300 s a test is too short; set-up and the first run come on top.
@pytest.mark.timeout(900)
def test_killed_worker_task_is_picked_up_again(
    postgres_server, redis_server, tmp_path_factory, tmp_path
):
    data = tmp_path_factory.mktemp("crash")
    logs = tmp_path_factory.mktemp("crash-logs")
    port = local_services.free_port()
    db = new_database(postgres_server)
    env = {
        **os.environ,
        "APPLIANCE_DATABASE_URL": db,
        "APPLIANCE_REDIS_URL": redis_server.rsplit("/", 1)[0] + "/3",
        "APPLIANCE_DATA_DIR": str(data),
        "APPLIANCE_PORT": str(port),
        "APPLIANCE_TASK_LEASE_SECONDS": "10",
        "APPLIANCE_RECONCILE_INTERVAL_SECONDS": "1",
        "APPLIANCE_SYNC_TIMEOUT_SECONDS": "60",
        # The AVIF encode takes seconds alone but minutes on a loaded 2-core machine; the
        # test is about the lost worker, not the engine's time limit.
        "APPLIANCE_ENGINE_TIMEOUT_SECONDS": "600",
        # No clamd here (the e2e deployments scan nothing either): uploads end at once.
        "APPLIANCE_VIRUS_SCAN": "off",
    }
    dep = Deployment("crash", f"http://127.0.0.1:{port}", env, db, data)
    dep.procs = _start("crash", env, logs)
    try:
        _wait_ready(dep, logs)
        src = _slow_input(tmp_path / f"big-{uuid.uuid4().hex[:6]}.png")
        with dep.client(dep.key()) as api:
            job = api.post(
                "/v2/jobs",
                json={
                    "tasks": {
                        "up": {"operation": "import/upload"},
                        "c": {
                            "operation": "convert",
                            "input": "up",
                            "output_format": "avif",
                            "quality": 90,
                        },
                        "e": {"operation": "export/url", "input": "c"},
                    }
                },
            ).json()["data"]
            assert upload(task(job, "up")["result"]["form"], src).status_code == 201
            deadline = time.monotonic() + 30
            while not _processing(api, job["id"]):
                assert time.monotonic() < deadline, "the convert task never started"
                time.sleep(0.05)
            worker = dep.procs[1]
            os.killpg(worker.pid, signal.SIGKILL)  # the whole worker, mid-conversion
            worker.wait()
            assert _processing(api, job["id"])  # nobody finished it
            dep.procs[1] = spawn(WORKER_CMD, env, logs / "crash-2.log")  # a replacement
            job = _wait_for_end(api, job["id"], seconds=300)
            assert job["status"] == "finished", job
            assert httpx.get(task(job, "e")["result"]["files"][0]["url"]).status_code == 200
        rows = dep.sql("SELECT attempts FROM tasks WHERE name = 'c'")
        assert rows[0]["attempts"] == 2
    finally:
        stop_process_groups(dep.procs, 20)
        drop_database(db)
