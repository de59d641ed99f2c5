"""Job and task status reads from the API process's cache (conversions/status_cache.py), on the
real job system: served without the database while the job is unchanged, and never an older
state once a change has committed, whichever process wrote it."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from appliance.conversions.status_cache import READS, StatusCache
from appliance.db.queries import jobs as job_rows
from appliance.db.queries import tasks as task_rows
from appliance.errors import NotFound, Unavailable
from appliance.security import accounts
from tests.integration.jobs.conftest import JobSystem

pytestmark = pytest.mark.integration
UPLOAD = {"up": {"operation": "import/upload"}}


def _fail_in_worker(system: JobSystem, task_id: str) -> None:
    """End the task the way a worker does: its own pool, its own process's token writer."""
    with system.rt.pool.connection() as conn:
        task_rows.fail(conn, uuid.UUID(task_id), "TEST", "ended by the test")


def status_hits() -> float:
    READS.flush()  # the reads' tally, written now rather than within the second
    return REGISTRY.get_sample_value("appliance_status_reads_total", {"result": "hit"}) or 0.0


def _status(system: JobSystem, job_id: str) -> str:
    return system.job(job_id)["tasks"][0]["status"]


def test_an_unchanged_job_is_answered_without_the_database(system: JobSystem) -> None:
    job = system.create(UPLOAD)
    first = system.job(job["id"])
    system.call(system.svc.pool.close())  # no database from here on
    assert system.job(job["id"]) == first
    task_id = uuid.UUID(job["tasks"][0]["id"])
    with pytest.raises(Unavailable):  # a task's first read learns its job from the database
        system.call(system.svc.get_task(system.user_id, task_id))


def test_a_task_is_cached_from_its_second_read_and_fresh_after_its_end(
    system: JobSystem,
) -> None:
    job = system.create(UPLOAD)
    task_id = uuid.UUID(job["tasks"][0]["id"])
    read = lambda: system.call(system.svc.get_task(system.user_id, task_id))  # noqa: E731
    read()
    read()
    hits = status_hits()
    assert '"waiting"' in read() and status_hits() == hits + 1
    _fail_in_worker(system, str(task_id))
    assert '"error"' in read()


def test_a_read_that_raced_a_task_end_is_not_served_after_it(system: JobSystem) -> None:
    """The worst order, forced: the read takes the job's token and reads the database, the
    task ends and commits before that read keeps its answer, and then the next read comes."""
    job = system.create(UPLOAD)
    cache = system.svc.status
    assert cache is not None

    async def stale_fill() -> str | None:
        async with system.svc.pool.connection() as conn:
            doc = await job_rows.job_doc(conn, uuid.UUID(job["id"]), system.user_id)
        ended = threading.Thread(target=_fail_in_worker, args=(system, job["tasks"][0]["id"]))
        ended.start()
        ended.join()  # committed (and its token renewed) before this read keeps its answer
        return doc

    old = system.call(cache.job(uuid.UUID(job["id"]), system.user_id, stale_fill))
    assert '"waiting"' in old  # what the racing read answered: it began before the end
    assert _status(system, job["id"]) == "error"


def test_reads_racing_task_ends_never_see_an_end_undone(system: JobSystem) -> None:
    """Many rounds of a worker thread ending a task while the API process reads its job in a
    loop; every read that began after the end had committed must show it."""
    rounds, stale = 40, []
    for _ in range(rounds):
        job = system.create(UPLOAD)
        system.job(job["id"])  # cached while waiting
        committed = threading.Event()

        def end(task_id: str = job["tasks"][0]["id"], done: threading.Event = committed) -> None:
            _fail_in_worker(system, task_id)
            done.set()

        worker = threading.Thread(target=end)
        worker.start()
        while True:
            after_end = committed.is_set()  # taken before the read begins
            status = _status(system, job["id"])
            if after_end:
                if status != "error":
                    stale.append((job["id"], status))
                break
        worker.join()
    assert stale == []


def test_a_deleted_job_is_gone_at_once(system: JobSystem) -> None:
    job = system.create(UPLOAD)
    system.job(job["id"])
    system.job(job["id"])
    system.call(system.svc.delete_job(system.user_id, uuid.UUID(job["id"])))
    with pytest.raises(NotFound):
        system.job(job["id"])


def test_a_deleted_users_jobs_are_gone_at_once(system: JobSystem) -> None:
    owner = system.sql("INSERT INTO users (email) VALUES ('d@x.test') RETURNING id")[0]["id"]
    job = json.loads(system.call(system.svc.create_job(owner, UPLOAD, None)))
    read = lambda: system.call(system.svc.get_job(owner, uuid.UUID(job["id"])))  # noqa: E731
    read()
    read()
    accounts.delete_user(system.settings, "d@x.test")
    with pytest.raises(NotFound):
        read()


def test_another_users_read_of_a_cached_job_is_not_found(system: JobSystem) -> None:
    job = system.create(UPLOAD)
    system.job(job["id"])
    stranger = system.sql("INSERT INTO users (email) VALUES ('s@x.test') RETURNING id")[0]["id"]
    with pytest.raises(NotFound):
        system.call(system.svc.get_job(stranger, uuid.UUID(job["id"])))


def test_without_redis_reads_go_to_the_database(system: JobSystem) -> None:
    job = system.create(UPLOAD)
    system.job(job["id"])
    away = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    cache = StatusCache(away, 1 << 20, 300)
    loads = []

    async def load() -> str | None:
        loads.append(1)
        async with system.svc.pool.connection() as conn:
            return await job_rows.job_doc(conn, uuid.UUID(job["id"]), system.user_id)

    for _ in range(2):
        assert '"waiting"' in system.call(cache.job(uuid.UUID(job["id"]), system.user_id, load))
    assert len(loads) == 2
    system.call(away.aclose())


def test_the_cache_holds_no_more_than_its_bytes(system: JobSystem) -> None:
    small = StatusCache(system.svc.status.client, 3000, 300)
    jobs = [system.create(UPLOAD) for _ in range(12)]

    async def fill() -> None:
        for job in jobs:
            job_id = uuid.UUID(job["id"])

            async def load(job_id: uuid.UUID = job_id) -> str | None:
                async with system.svc.pool.connection() as conn:
                    return await job_rows.job_doc(conn, job_id, system.user_id)

            await small.job(job_id, system.user_id, load)

    system.call(fill())
    assert 0 < small.size()[0] < len(jobs)
    assert small.size()[1] <= 3000
