"""Retry over HTTP: a failed task retried into success (its job then finishes, through the
retry), and the retries refused: a task still running or waiting, a task whose file came
from the client, a task that does not exist."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import base64_import, task, upload
from tests.harness.origin import Reply, serve

# import/url fetches from this test's own loopback server, on both deployments.
DEPLOYMENT_ENV = {"APPLIANCE_ALLOW_PRIVATE_URLS": "true"}


@pytest.fixture
def flaky(png_file) -> Iterator[str]:
    """A URL whose first GET is 404 and every later one the PNG."""
    asked: list[str] = []

    def respond(path: str) -> Reply:
        asked.append(path)
        return Reply(200, png_file.read_bytes()) if len(asked) > 1 else Reply(404)

    with serve(respond) as origin:
        yield origin.url("/photo.png")


def test_a_failed_import_retried_succeeds_and_its_job_finishes(deployment, flaky, png_file):
    with deployment.client(deployment.key()) as api:
        made = api.post(
            "/v2/jobs", json={"tasks": {"i": {"operation": "import/url", "url": flaky}}}
        )
        job = api.get(f"/sync/v2/jobs/{made.json()['data']['id']}").json()["data"]
        failed = task(job, "i")
        assert (job["status"], failed["status"], failed["code"]) == (
            "error",
            "error",
            "IMPORT_FAILED",
        )
        assert "404" in failed["message"]
        r = api.post(f"/v2/tasks/{failed['id']}/retry")
        assert r.status_code == 201, r.text
        retry = api.get(f"/sync/v2/tasks/{r.json()['data']['id']}").json()["data"]
        assert retry["status"] == "finished", retry
        assert retry["retry_of_task_id"] == failed["id"] and retry["job_id"] == job["id"]
        [file] = retry["result"]["files"]
        assert file["filename"] == "photo.png" and file["size"] == png_file.stat().st_size
        job = api.get(f"/v2/jobs/{job['id']}").json()["data"]
        assert job["status"] == "finished", job  # the failed task counts through its retry
        assert task(job, "i")["code"] == "IMPORT_FAILED"  # the original stays as it ended
        export = api.post("/v2/export/url", json={"input": [retry["id"]]}).json()["data"]
        export = api.get(f"/sync/v2/tasks/{export['id']}").json()["data"]
        url = export["result"]["files"][0]["url"]
        assert httpx.get(url).content == png_file.read_bytes()  # the retry's file, intact


def _refused(r: httpx.Response, status: int, code: str) -> None:
    assert (r.status_code, r.json()["code"]) == (status, code), r.text


def test_retries_that_cannot_be_made_are_refused_with_their_reason(deployment, png_file):
    with deployment.client(deployment.key()) as api:
        job = api.post(
            "/v2/jobs",
            json={
                "tasks": {
                    "up": {"operation": "import/upload"},
                    "b": base64_import("photo.png", png_file.read_bytes()),
                    "c": {"operation": "convert", "input": "up", "output_format": "gif"},
                }
            },
        ).json()["data"]
        _refused(api.post(f"/v2/tasks/{task(job, 'c')['id']}/retry"), 422, "TASK_NOT_ENDED")
        _refused(api.post(f"/v2/tasks/{task(job, 'up')['id']}/retry"), 422, "TASK_NOT_ENDED")
        upload(task(job, "up")["result"]["form"], png_file)
        job = api.get(f"/sync/v2/jobs/{job['id']}").json()["data"]
        assert job["status"] == "finished", job
        for name in ("up", "b"):  # the client's bytes are not the appliance's to fetch again
            r = api.post(f"/v2/tasks/{task(job, name)['id']}/retry")
            _refused(r, 422, "TASK_NOT_RETRYABLE")
        _refused(api.post(f"/v2/tasks/{uuid.uuid4()}/retry"), 404, "NOT_FOUND")
        tasks = api.get("/v2/tasks", params={"filter[job_id]": job["id"]}).json()["data"]
        assert sorted(t["name"] for t in tasks) == ["b", "c", "up"]  # no task was added
