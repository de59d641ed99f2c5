"""Idempotency-Key on the creating routes, in-process on the harness's Postgres and Redis: a
repeat gets the first answer and makes nothing; another body with the key is a 422; a key held
by a request in progress is a 409; keys are per user, stored only with what they made, and
expire."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg.rows import dict_row

from appliance.db import API_IDLE_LIMIT, async_pool, sync_pool
from appliance.db.queries import idempotency as rows
from appliance.db.queries import maintenance
from appliance.errors import Unavailable
from appliance.security.keys import create_key
from tests.conftest import make_settings

UPLOAD_JOB = {"tasks": {"in": {"operation": "import/upload"}}, "tag": "idem"}


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _sql(url: str, query: str, *args: object) -> list[dict]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(query, args)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _me(api: TestClient) -> str:
    return api.get("/v2/users/me").json()["data"]["id"]


def _jobs_of(url: str, user_id: str) -> int:
    return _sql(url, "SELECT count(*) AS n FROM jobs WHERE user_id = %s", user_id)[0]["n"]


def test_a_repeated_job_request_gets_the_first_answer_and_makes_no_second_job(api, postgres_url):
    key = _key()
    first = api.post("/v2/jobs", json=UPLOAD_JOB, headers=key)
    again = api.post("/v2/jobs", json=UPLOAD_JOB, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _jobs_of(postgres_url, _me(api)) == 1
    # audited once, as the first request's (its record goes out with the commit)
    _sql(postgres_url, "SELECT appliance_audit_seal(100000)")  # as the reconciler does
    audited = "SELECT count(*) AS n FROM audit_log WHERE event = 'job.created' AND subject = %s"
    assert _sql(postgres_url, audited, f"job:{first.json()['data']['id']}")[0]["n"] == 1


def test_requests_without_a_key_make_a_job_each(api, postgres_url):
    ids = {api.post("/v2/jobs", json=UPLOAD_JOB).json()["data"]["id"] for _ in range(2)}
    assert len(ids) == 2
    assert _jobs_of(postgres_url, _me(api)) == 2


def test_the_same_key_with_another_body_is_refused_with_422(api, postgres_url):
    key = _key()
    assert api.post("/v2/jobs", json=UPLOAD_JOB, headers=key).status_code == 201
    other = api.post("/v2/jobs", json={**UPLOAD_JOB, "tag": "other"}, headers=key)
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert "Idempotency-Key" in other.json()["errors"]
    assert _jobs_of(postgres_url, _me(api)) == 1


def test_the_same_key_on_another_route_is_refused_with_422(api):
    key = _key()
    assert api.post("/v2/jobs", json=UPLOAD_JOB, headers=key).status_code == 201
    task = api.post("/v2/import/upload", json={}, headers=key)
    assert task.status_code == 422, task.text
    assert task.json()["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_a_key_held_by_a_request_in_progress_is_answered_409_with_retry_after(api, postgres_url):
    key, user_id = _key(), _me(api)
    with psycopg.connect(postgres_url, row_factory=dict_row) as holder:  # a transaction open
        held = holder.execute(rows.LOCK, (rows.LOCK_CLASS, user_id, key["Idempotency-Key"]))
        assert held.fetchone()["free"]
        busy = api.post("/v2/jobs", json=UPLOAD_JOB, headers=key)
        assert busy.status_code == 409, busy.text
        assert busy.json()["code"] == "IDEMPOTENCY_KEY_IN_USE"
        assert busy.headers["Retry-After"] == "1"
        assert _jobs_of(postgres_url, user_id) == 0
    # the holder's transaction ended without a job: the key is free for the request again
    assert api.post("/v2/jobs", json=UPLOAD_JOB, headers=key).status_code == 201


def test_keys_are_per_user(app, api, postgres_url):
    key = _key()
    mine = api.post("/v2/jobs", json=UPLOAD_JOB, headers=key).json()["data"]["id"]
    with psycopg.connect(postgres_url, autocommit=True, row_factory=dict_row) as conn:
        other_key = create_key(conn, f"other-{uuid.uuid4().hex[:8]}@example.test")
    with TestClient(app) as other:
        other.headers["Authorization"] = f"Bearer {other_key}"
        theirs = other.post("/v2/jobs", json=UPLOAD_JOB, headers=key)
        assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
        assert theirs.json()["data"]["id"] != mine
        assert _jobs_of(postgres_url, _me(other)) == 1


def test_a_failed_request_keeps_no_key(api, postgres_url):
    key = _key()
    bad = api.post("/v2/jobs", json={"tasks": {"c": {"operation": "convert"}}}, headers=key)
    assert bad.status_code == 422 and bad.json()["code"] != "IDEMPOTENCY_KEY_REUSED", bad.text
    assert (
        _sql(postgres_url, "SELECT 1 FROM idempotency_keys WHERE key = %s", key["Idempotency-Key"])
        == []
    )
    assert api.post("/v2/jobs", json=UPLOAD_JOB, headers=key).status_code == 201


def test_a_repeated_single_task_request_gets_the_same_task(api, postgres_url):
    key = _key()
    first = api.post("/v2/import/upload", json={"filename": "a.png"}, headers=key)
    again = api.post("/v2/import/upload", json={"filename": "a.png"}, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    tasks = _sql(postgres_url, "SELECT count(*) AS n FROM tasks WHERE user_id = %s", _me(api))
    assert tasks[0]["n"] == 1


def test_a_repeated_webhook_request_gets_the_same_webhook_and_secret(api, postgres_url):
    key, body = _key(), {"url": "https://93.184.216.34/hook", "events": ["job.finished"]}
    first = api.post("/v2/webhooks", json=body, headers=key)
    again = api.post("/v2/webhooks", json=body, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    secret = first.json()["data"]["signing_secret"]
    assert again.json()["data"]["signing_secret"] == secret and len(secret) == 64
    stored = _sql(
        postgres_url, "SELECT body FROM idempotency_keys WHERE key = %s", key["Idempotency-Key"]
    )
    assert secret not in stored[0]["body"]  # kept sealed, as in the webhooks table
    hooks = _sql(postgres_url, "SELECT count(*) AS n FROM webhooks WHERE user_id = %s", _me(api))
    assert hooks[0]["n"] == 1


def test_a_repeated_sync_job_request_waits_on_the_first_job(api, postgres_url):
    key = _key()
    first = api.post("/sync/v2/jobs", json=UPLOAD_JOB, headers=key)
    again = api.post("/sync/v2/jobs", json=UPLOAD_JOB, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert _jobs_of(postgres_url, _me(api)) == 1
    # the sync route's key is its own: the same key and body on /v2/jobs is another request
    assert api.post("/v2/jobs", json=UPLOAD_JOB, headers=key).status_code == 422


def test_an_expired_key_is_free_again_and_pruned_by_the_reconciler(api, postgres_url):
    key = _key()
    first = api.post("/v2/jobs", json=UPLOAD_JOB, headers=key).json()["data"]["id"]
    expire = "UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = %s"
    _sql(postgres_url, expire, key["Idempotency-Key"])
    second = api.post("/v2/jobs", json=UPLOAD_JOB, headers=key)
    assert second.status_code == 201 and second.json()["data"]["id"] != first
    _sql(postgres_url, expire, key["Idempotency-Key"])
    pool = sync_pool(make_settings({"database_url": postgres_url}))
    try:
        maintenance.expire(pool, lambda _sha: None)
    finally:
        pool.close()
    assert (
        _sql(postgres_url, "SELECT 1 FROM idempotency_keys WHERE key = %s", key["Idempotency-Key"])
        == []
    )


@pytest.mark.parametrize("header", ["", "x" * 256, b"caf\xe9"])
def test_an_invalid_key_is_refused_with_400_and_makes_nothing(api, postgres_url, header):
    r = api.post("/v2/jobs", json=UPLOAD_JOB, headers={"Idempotency-Key": header})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "INVALID_IDEMPOTENCY_KEY"
    assert _jobs_of(postgres_url, _me(api)) == 0


def test_a_repeated_signed_url_base_request_gets_the_same_base_and_secret(api, postgres_url):
    key, body = _key(), {"name": "idem"}
    first = api.post("/v2/signed-urls", json=body, headers=key)
    again = api.post("/v2/signed-urls", json=body, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert again.json()["data"]["signing_secret"] == first.json()["data"]["signing_secret"]
    bases = "SELECT count(*) AS n FROM signed_url_bases WHERE user_id = %s"
    assert _sql(postgres_url, bases, _me(api))[0]["n"] == 1


def test_a_transaction_an_api_host_left_idle_is_ended(postgres_url):
    """An api host that dies inside a transaction (a keyed creation's, holding the key's lock,
    or one holding the audit chain's head) leaves it open on a silent connection; Postgres
    ends any API connection's transaction after the pool's idle limit, freeing its locks."""
    user_id = _sql(
        postgres_url, "INSERT INTO users (email) VALUES (%s) RETURNING id", f"{uuid.uuid4()}@t"
    )[0]["id"]
    free = "SELECT pg_try_advisory_lock(%s, hashtext(%s::text || ' ' || %s)) AS free"

    async def die_inside_a_transaction() -> None:
        pool = await async_pool(make_settings({"database_url": postgres_url}))
        try:
            with pytest.raises(Unavailable):
                async with pool.connection() as dead, dead.transaction():
                    assert await rows.lock(dead, user_id, "k")
                    # a live API transaction's lock holds: another session cannot take it
                    assert not _sql(postgres_url, free, rows.LOCK_CLASS, user_id, "k")[0]["free"]
                    await asyncio.sleep(API_IDLE_LIMIT + 2)
                    # ended by Postgres meanwhile: the lock is free again
                    assert _sql(postgres_url, free, rows.LOCK_CLASS, user_id, "k")[0]["free"]
                    await dead.execute("SELECT 1")
        finally:
            await pool.close()

    asyncio.run(die_inside_a_transaction())
