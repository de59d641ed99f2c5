"""The sync routes (``/v2/jobs/{id}/wait``, ``/v2/tasks/{id}/wait`` and their ``/sync/v2``
twins): a wait on something that does not end answers at the sync timeout with the state
it has; a wait on a task that ends is woken by the end, long before the timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pyvips
from litestar.testing import TestClient

from appliance.api.app import create_app
from appliance.jobs.broker import dramatiq_dispatcher
from tests.conftest import make_settings


def _client(postgres_url, redis_url, data_dir, api_key, timeout: float) -> TestClient:
    settings = make_settings(
        {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "data_dir": str(data_dir),
            "sync_timeout_seconds": str(timeout),
            "requests_per_minute_per_address": "0",
            "requests_per_minute_per_key": "0",
            "conversions_per_minute_per_address": "0",
            "auth_failures_per_minute": "0",
        }
    )
    client = TestClient(create_app(dramatiq_dispatcher, settings), timeout=60)
    client.headers["Authorization"] = f"Bearer {api_key}"
    return client


@pytest.fixture
def patient(postgres_url, redis_url, data_dir, api_key) -> Iterator[TestClient]:
    with _client(postgres_url, redis_url, data_dir, api_key, 20) as client:
        yield client


@pytest.fixture
def hasty(postgres_url, redis_url, data_dir, api_key) -> Iterator[TestClient]:
    with _client(postgres_url, redis_url, data_dir, api_key, 1) as client:
        yield client


def _upload_job(client: TestClient) -> dict:
    r = client.post("/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}})
    assert r.status_code == 201, r.text
    return r.json()["data"]


@pytest.mark.parametrize("route", ["/v2/{kind}/{id}/wait", "/sync/v2/{kind}/{id}"])
@pytest.mark.parametrize("kind", ["jobs", "tasks"])
def test_a_wait_that_times_out_answers_with_the_state_at_the_timeout(hasty, route, kind):
    job = _upload_job(hasty)
    ident = job["id"] if kind == "jobs" else job["tasks"][0]["id"]
    started = time.monotonic()
    r = hasty.get(route.format(kind=kind, id=ident))
    waited = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.json()["data"]["id"] == ident and r.json()["data"]["status"] == "waiting"
    assert 0.9 <= waited < 10, waited  # the 1 s sync timeout, not at once, not forever


def _waited_while(client: TestClient, path: str, act) -> tuple[dict, float]:
    """GET ``path`` (a wait) in a thread, ``act()`` meanwhile; the answer and its seconds."""
    answers: list = []
    asked = threading.Event()

    def wait() -> None:
        asked.set()
        started = time.monotonic()
        answers.append(client.get(path))
        answers.append(time.monotonic() - started)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert asked.wait(5)
    act()
    waiter.join(30)
    r, waited = answers
    assert r.status_code == 200, r.text
    return r.json()["data"], waited


def test_a_task_wait_is_woken_by_the_uploads_end(patient, tmp_path: Path):
    """The upload is ended by the API itself, not by a worker: it announces the end too."""
    up = _upload_job(patient)["tasks"][0]
    picture = tmp_path / "p.png"
    pyvips.Image.black(16, 16).write_to_file(str(picture))
    form = up["result"]["form"]

    def upload() -> None:
        with open(picture, "rb") as fh:
            done = patient.post(
                urlsplit(form["url"]).path, data=form["parameters"], files={"file": ("p.png", fh)}
            )
        assert done.status_code == 201, done.text

    data, waited = _waited_while(patient, f"/v2/tasks/{up['id']}/wait", upload)
    assert data["status"] == "finished"
    assert waited < 10  # woken, not the 20 s timeout


def test_a_job_wait_is_woken_by_a_cancel(patient):
    job = _upload_job(patient)

    def cancel() -> None:
        assert patient.post(f"/v2/tasks/{job['tasks'][0]['id']}/cancel").status_code == 200

    data, waited = _waited_while(patient, f"/v2/jobs/{job['id']}/wait", cancel)
    assert data["status"] == "error"
    assert waited < 10
