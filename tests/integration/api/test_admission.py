"""Overload answered with 503 and Retry-After at once, never by a timeout, and nothing of a
refused request kept: a queue class past its backlog cap refuses new jobs (accepted ones stay
and run), and a request that cannot get a Postgres connection in time is refused."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg.rows import dict_row

from appliance.api.app import create_app
from appliance.conversions import admission
from appliance.jobs.broker import dramatiq_dispatcher
from appliance.security.keys import create_key
from tests.conftest import make_settings

pytestmark = pytest.mark.integration
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63f8cfc0f01f0005000201a5f3a1d80000000049454e44ae426082"
    )
).decode()
CONVERT = {
    "tasks": {
        "in": {"operation": "import/base64", "file": PNG, "filename": "a.png"},
        "c": {"operation": "convert", "input": "in", "output_format": "webp"},
    }
}


def _client(postgres_url: str, redis_url: str, data_dir: Path, **extra: str) -> TestClient:
    settings = make_settings(
        {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "data_dir": str(data_dir),
            "requests_per_minute_per_address": "0",
            "requests_per_minute_per_key": "0",
            "conversions_per_minute_per_address": "0",
            **extra,
        }
    )
    return TestClient(create_app(dramatiq_dispatcher, settings))


def test_past_the_backlog_cap_new_jobs_are_refused_and_accepted_ones_kept(
    postgres_url, redis_url, data_dir, api_key, monkeypatch
):
    monkeypatch.setattr(admission, "CHECK_SECONDS", 0.0)  # read the backlog every time
    with _client(postgres_url, redis_url, data_dir, max_queue_backlog="2") as api:
        api.headers["Authorization"] = f"Bearer {api_key}"
        accepted = [api.post("/v2/jobs", json=CONVERT) for _ in range(2)]  # no worker runs
        assert [r.status_code for r in accepted] == [201, 201]
        refused = api.post("/v2/jobs", json=CONVERT)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "30"
        assert refused.json()["code"] == "QUEUE_FULL" and "light" in refused.json()["message"]
        refused_task = api.post("/v2/convert", json={"input": "x", "output_format": "webp"})
        assert refused_task.status_code in (422, 503)  # a bad single task is still a 422
        listed = api.get("/v2/jobs").json()["data"]
        assert sorted(j["id"] for j in listed) == sorted(r.json()["data"]["id"] for r in accepted)
        for job in accepted:
            assert api.get(f"/v2/jobs/{job.json()['data']['id']}").status_code == 200


def test_without_a_free_database_connection_in_time_the_answer_is_503(
    postgres_url, redis_url, data_dir
):
    with psycopg.connect(postgres_url, autocommit=True, row_factory=dict_row) as conn:
        keys = [create_key(conn, f"u{i}@example.test") for i in range(2)]
    settings = {"db_pool_size": "1", "db_pool_timeout_seconds": "0.5"}
    with _client(postgres_url, redis_url, data_dir, **settings) as api:
        blocker = psycopg.connect(postgres_url)
        blocker.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")  # a key's first look-up
        first: dict[str, int] = {}

        def held() -> None:  # waits on the lock, holding the pool's one connection
            auth = {"Authorization": f"Bearer {keys[0]}"}
            first["status"] = api.get("/v2/jobs", headers=auth).status_code

        thread = threading.Thread(target=held)
        thread.start()
        try:
            second = None
            for _ in range(50):  # until the first request holds the connection
                waiting = blocker.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'api_keys'::regclass"
                    " AND NOT granted"
                ).fetchone()[0]
                if waiting:
                    auth = {"Authorization": f"Bearer {keys[1]}"}
                    second = api.get("/v2/jobs", headers=auth)
                    break
                thread.join(0.1)
            assert second is not None, "the first request never waited on the lock"
            assert second.status_code == 503, second.text
            assert second.headers["retry-after"] == "5"
            assert second.json()["code"] == "SERVICE_UNAVAILABLE"
        finally:
            blocker.rollback()
            blocker.close()
            thread.join(30)
        assert first["status"] == 200  # the held request went on once the lock was gone
