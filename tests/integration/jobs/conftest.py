"""A real job system in-process: JobService (the API's service layer), Dramatiq workers on the
private Redis, the TaskRunner on the private Postgres, storage on disk or Swift+s3api."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import psycopg
import pytest
import pyvips
from psycopg.rows import dict_row

from appliance.conversions.operations.convert import Convert
from appliance.conversions.runner import TaskRunner
from appliance.conversions.runtime import Runtime, build_runtime
from appliance.conversions.service import JobService
from appliance.conversions.status_cache import StatusCache
from appliance.db import async_pool
from appliance.db.changes import LoopStatusTokens
from appliance.jobs.broker import declare_actors, make_broker, make_dispatcher
from appliance.settings import Settings


@dataclass
class JobSystem:
    settings: Settings
    rt: Runtime
    runner: TaskRunner
    svc: JobService
    loop: asyncio.AbstractEventLoop
    broker: Any
    user_id: uuid.UUID
    worker: dramatiq.Worker | None = None

    def call(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def create(self, tasks: dict[str, Any], tag: str | None = None) -> dict[str, Any]:
        return json.loads(self.call(self.svc.create_job(self.user_id, tasks, tag)))

    def upload(self, task_id: str, path: Path) -> dict[str, Any]:
        data = path.read_bytes()

        async def chunks():
            for i in range(0, len(data), 65536):
                yield data[i : i + 65536]

        return json.loads(
            self.call(self.svc.accept_upload(uuid.UUID(task_id), lambda: path.name, chunks()))
        )

    def job(self, job_id: str) -> dict[str, Any]:
        return json.loads(self.call(self.svc.get_job(self.user_id, uuid.UUID(job_id))))

    def wait(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("finished", "error"):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not end in {timeout}s: {job}")

    def start_worker(self) -> None:
        self.worker = dramatiq.Worker(self.broker, worker_threads=2, worker_timeout=100)
        self.worker.start()

    def stop_worker(self) -> None:
        if self.worker:
            self.worker.stop(timeout=10_000)
            self.worker = None

    def sql(self, query: str, *args: Any) -> list[dict[str, Any]]:
        with psycopg.connect(
            self.settings.effective_database_url, autocommit=True, row_factory=dict_row
        ) as conn:
            cur = conn.execute(query, args)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []


@pytest.fixture
def system(settings: Settings, api_key: str) -> Iterator[JobSystem]:
    broker = make_broker(settings)
    dispatcher = make_dispatcher(settings, broker)
    rt = build_runtime(settings, dispatcher)
    runner = TaskRunner(rt)
    declare_actors(broker, lambda task_id, queue: runner.run(task_id, queue), dispatcher)
    loop = asyncio.new_event_loop()
    tokens = LoopStatusTokens.at(settings.effective_redis_url, settings.job_retention_hours)
    pool = loop.run_until_complete(async_pool(settings, on_change=tokens.renew))
    status = StatusCache.for_settings(settings)
    svc = JobService(
        settings, pool, rt.storage, rt.registry, rt.dispatcher, status=status, tokens=tokens
    )
    with psycopg.connect(settings.effective_database_url, autocommit=True) as conn:
        user_id = conn.execute("SELECT user_id FROM api_keys LIMIT 1").fetchone()[0]
    js = JobSystem(settings, rt, runner, svc, loop, broker, user_id)
    js.start_worker()
    try:
        yield js
    finally:
        js.stop_worker()
        loop.run_until_complete(svc.close())
        loop.close()
        rt.pool.close()
        broker.close()


@pytest.fixture(scope="session")
def png_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "photo.png"
    base = pyvips.Image.xyz(320, 200).extract_band(0).cast("uchar")
    base.bandjoin([base.flip("horizontal"), base]).write_to_file(str(path))
    return path


def as_operation(run: Any) -> Convert:
    """A convert operation whose worker run is ``run(rt, task, progress)`` (a test double)."""

    class Replaced(Convert):
        def run(self, rt: Any, task: Any, progress: Any) -> Any:
            return run(rt, task, progress)

    return Replaced()


UPLOAD_CONVERT_EXPORT = {
    "up": {"operation": "import/upload"},
    "c": {"operation": "convert", "input": "up", "output_format": "webp", "width": 100},
    "e": {"operation": "export/url", "input": "c"},
}


def task(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in job["tasks"] if t["name"] == name)
