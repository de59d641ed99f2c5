"""Status reads go to APPLIANCE_DATABASE_READ_URL when set, and fall back to the primary for
rows the replica has not replayed yet. A second database stands in for the replica here: its
rows differ from the primary's on purpose, so each answer shows which server gave it (the lab
e2e in tests/deploy checks the same routing on a real streaming replica)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from appliance.db import async_pool
from tests.conftest import drop_database, new_database
from tests.integration.jobs.conftest import JobSystem

pytestmark = pytest.mark.integration


@pytest.fixture
def replica_url(postgres_server: str) -> Iterator[str]:
    url = new_database(postgres_server)
    yield url
    drop_database(url)


def _copy_job_to(url: str, system: JobSystem, job_id: str, tag: str) -> None:
    """Put the job (with a different tag) and its user into the stand-in replica."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (id, email) VALUES (%s, 'r@example.test')", (system.user_id,)
        )
        conn.execute(
            "INSERT INTO jobs (id, user_id, tag, expires_at) VALUES (%s, %s, %s, now() + '1h')",
            (uuid.UUID(job_id), system.user_id, tag),
        )


def test_job_and_task_reads_use_the_read_url_and_fall_back_to_the_primary(
    system: JobSystem, replica_url: str
) -> None:
    """With the status cache off (APPLIANCE_STATUS_CACHE=0)."""
    old = system.create({"up": {"operation": "import/upload"}}, tag="primary")
    _copy_job_to(replica_url, system, old["id"], "replayed")
    read_pool = system.call(async_pool(system.settings, replica_url))
    svc = dataclasses.replace(system.svc, read_pool=read_pool, status=None)
    try:
        shown = json.loads(system.call(svc.get_job(system.user_id, uuid.UUID(old["id"]))))
        assert shown["tag"] == "replayed"  # answered by the replica

        new = system.create({"up": {"operation": "import/upload"}}, tag="fresh")
        fresh = json.loads(system.call(svc.get_job(system.user_id, uuid.UUID(new["id"]))))
        assert fresh["tag"] == "fresh"  # not on the replica yet: the primary answers
        task_id = uuid.UUID(new["tasks"][0]["id"])
        task = json.loads(system.call(svc.get_task(system.user_id, task_id)))
        assert task["id"] == str(task_id)

        listed, _ = system.call(
            svc.list_jobs(
                system.user_id, status=None, tag=None, page=1, per_page=10, include_tasks=False
            )
        )
        assert [j["tag"] for j in json.loads(listed)] == ["replayed"]
    finally:
        system.call(read_pool.close())


def test_with_the_status_cache_job_reads_come_from_the_primary_and_lists_from_the_replica(
    system: JobSystem, replica_url: str
) -> None:
    """A replica behind the job's status token would fill the cache with an older state."""
    job = system.create({"up": {"operation": "import/upload"}}, tag="primary")
    _copy_job_to(replica_url, system, job["id"], "replayed")
    read_pool = system.call(async_pool(system.settings, replica_url))
    svc = dataclasses.replace(system.svc, read_pool=read_pool)
    assert svc.status is not None
    try:
        for _ in range(2):  # the fill, then the cached answer
            shown = json.loads(system.call(svc.get_job(system.user_id, uuid.UUID(job["id"]))))
            assert shown["tag"] == "primary"
        listed, _ = system.call(
            svc.list_jobs(
                system.user_id, status=None, tag=None, page=1, per_page=10, include_tasks=False
            )
        )
        assert [j["tag"] for j in json.loads(listed)] == ["replayed"]
    finally:
        system.call(read_pool.close())


def test_without_a_read_url_reads_go_to_the_primary(system: JobSystem) -> None:
    job = system.create({"up": {"operation": "import/upload"}}, tag="only")
    assert system.svc.read_pool is None
    assert system.job(job["id"])["tag"] == "only"
