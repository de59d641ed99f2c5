"""What an API client does is audited by the code path that does it: jobs and single tasks
created and deleted, webhooks created and deleted, signed downloads, rate-limit refusals
(sampled), each with the user it concerns."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg.rows import dict_row

from appliance.api.app import create_app
from appliance.jobs.broker import dramatiq_dispatcher
from appliance.security import audit
from tests.conftest import make_settings


@pytest.fixture
def app(postgres_url, redis_url, data_dir):
    """As the conftest's, but webhooks may point at this host (none is delivered here)."""
    settings = make_settings(
        {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "data_dir": str(data_dir),
            "requests_per_minute_per_address": "0",
            "requests_per_minute_per_key": "0",
            "allow_private_urls": "true",
        }
    )
    return create_app(dramatiq_dispatcher, settings)


@pytest.fixture
def records(postgres_url):
    def read(event: str) -> list[dict]:
        with psycopg.connect(postgres_url, row_factory=dict_row) as conn:
            conn.execute("SELECT appliance_audit_seal(100000)")  # as the reconciler does
            return conn.execute(
                "SELECT user_id, actor, subject, details FROM audit_log WHERE event = %s"
                " ORDER BY seq",
                (event,),
            ).fetchall()

    return read


@pytest.fixture
def user_id(postgres_url, api_key):
    with psycopg.connect(postgres_url) as conn:
        return conn.execute("SELECT user_id FROM api_keys").fetchone()[0]


def base64_job(api: TestClient) -> dict:
    data = base64.b64encode(b"hello audit").decode()
    tasks = {"b": {"operation": "import/base64", "file": data, "filename": "a.txt"}}
    answer = api.post("/v2/jobs", json={"tasks": tasks, "tag": "t1"})
    assert answer.status_code == 201, answer.text
    return answer.json()["data"]


def test_a_job_created_and_deleted_is_recorded(api, records, user_id):
    job = base64_job(api)
    assert api.delete(f"/v2/jobs/{job['id']}").status_code == 204
    (created,) = records("job.created")
    (deleted,) = records("job.deleted")
    assert created["user_id"] == deleted["user_id"] == user_id
    assert created["subject"] == deleted["subject"] == f"job:{job['id']}"
    assert '"tag":"t1"' in created["details"] and '"tasks":1' in created["details"]
    assert '"objects_deleted":1' in deleted["details"]


def test_a_job_made_in_one_statement_is_recorded_by_that_statement(api, records, user_id):
    tasks = {"up": {"operation": "import/upload"}}  # no file to settle: one statement
    job = api.post("/v2/jobs", json={"tasks": tasks}).json()["data"]
    (created,) = records("job.created")
    assert created["subject"] == f"job:{job['id']}" and created["user_id"] == user_id
    assert created["actor"] == "api" and '"tag":null' in created["details"]


def test_a_single_task_created_and_deleted_is_recorded(api, records, user_id):
    answer = api.post("/v2/import/upload", json={})
    assert answer.status_code == 201, answer.text
    task_id = answer.json()["data"]["id"]
    assert api.delete(f"/v2/tasks/{task_id}").status_code == 204
    assert [r["subject"] for r in records("task.created")] == [f"task:{task_id}"]
    assert [r["user_id"] for r in records("task.deleted")] == [user_id]


def test_webhooks_created_and_deleted_are_recorded_without_their_url(api, records, user_id):
    url = "http://127.0.0.1:9/hook?token=s3cret"
    answer = api.post("/v2/webhooks", json={"url": url, "events": ["job.finished"]})
    assert answer.status_code == 201, answer.text
    hook = answer.json()["data"]["id"]
    assert api.delete(f"/v2/webhooks/{hook}").status_code == 204
    (created,) = records("webhook.created")
    assert created["subject"] == f"webhook:{hook}" and created["user_id"] == user_id
    assert "s3cret" not in created["details"] and "127.0.0.1" in created["details"]
    assert [r["subject"] for r in records("webhook.deleted")] == [f"webhook:{hook}"]


def test_a_signed_download_is_recorded_as_the_file_holders(
    app, api, records, user_id, postgres_url
):
    job = base64_job(api)
    (f,) = api.get(f"/v2/jobs/{job['id']}").json()["data"]["tasks"][0]["result"]["files"]
    storage = app.state.services.jobs.storage
    with psycopg.connect(postgres_url) as conn:  # the address an export/url signs
        sha = conn.execute("SELECT sha256 FROM task_files").fetchone()[0]
    url = urlsplit(storage.download_url(f"sha256/{sha[:2]}/{sha}", f["filename"], 60))
    got = api.get(f"{url.path}?{url.query}")
    assert got.status_code == 200 and got.content == b"hello audit"
    (downloaded,) = records("file.downloaded")
    assert downloaded["user_id"] == user_id and downloaded["subject"] == f"file:{sha}"
    assert '"filename":"a.txt"' in downloaded["details"] and "address" in downloaded["details"]


def test_rate_limit_refusals_are_recorded_sampled(
    postgres_url, redis_url, data_dir, api_key, records
):
    settings = make_settings(
        {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "data_dir": str(data_dir),
            "requests_per_minute_per_key": "1",
            "requests_per_minute_per_address": "0",
        }
    )
    with TestClient(create_app(dramatiq_dispatcher, settings)) as api:
        api.headers["Authorization"] = f"Bearer {api_key}"
        statuses = [api.get("/v2/jobs").status_code for _ in range(4)]
    assert statuses[0] == 200 and statuses[1:] == [429, 429, 429]
    (hit,) = records("limit.hit")  # three refusals, one record a minute
    assert hit["subject"].startswith("key:") and '"rule":"requests-per-key"' in hit["details"]
    assert api_key not in hit["subject"]


def test_a_refusal_at_the_users_cap_of_jobs_in_flight_is_recorded_as_theirs(
    postgres_url, redis_url, data_dir, api_key, records, user_id
):
    settings = make_settings(
        {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "data_dir": str(data_dir),
            "requests_per_minute_per_key": "0",
            "requests_per_minute_per_address": "0",
            "max_jobs_in_flight_per_user": "1",
            # one connection: the record is written once the refused creation gave it back
            # (it waited for a second one before, and the record was lost to the timeout)
            "db_pool_size": "1",
            "db_pool_timeout_seconds": "2",
        }
    )
    tasks = {"up": {"operation": "import/upload"}}  # waits for its file: in flight
    with TestClient(create_app(dramatiq_dispatcher, settings)) as api:
        api.headers["Authorization"] = f"Bearer {api_key}"
        statuses = [api.post("/v2/jobs", json={"tasks": tasks}).status_code for _ in range(3)]
    assert statuses == [201, 429, 429]
    (hit,) = records("limit.hit")
    assert hit["user_id"] == user_id and hit["subject"] == f"user:{user_id}"
    assert '"rule":"jobs-in-flight-per-user"' in hit["details"]


def test_every_event_the_log_knows_is_documented_here_or_in_the_security_tests():
    recorded_by_tests = {
        "job.created", "job.deleted", "task.created", "task.deleted", "webhook.created",
        "webhook.deleted", "file.downloaded", "limit.hit",  # this module
        "user.created", "user.disabled", "user.enabled", "user.deleted", "key.created",
        "key.revoked", "operator.command", "audit.pruned",  # security/test_audit.py
        "file.infected",  # jobs/test_virus_scan.py
        "user.erased", "user.exported",  # recorded by `appliance users erase|export`
    }  # fmt: skip
    assert recorded_by_tests == audit.EVENTS
