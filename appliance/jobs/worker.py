"""Entry module for ``dramatiq appliance.jobs.worker -Q <queue>``: wiring only.

Importing it builds the broker and declares the actors. Each worker process builds its
``Runtime`` (pools, storage, engines) on boot, and runs a reconciler thread.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import redis

from appliance.db import sync_pool
from appliance.engines.enabled import enabled_engines
from appliance.engines.registry import Registry
from appliance.jobs.broker import declare_actors, make_broker, make_dispatcher
from appliance.jobs.operations import OPERATIONS
from appliance.jobs.reconciler import ReconcilerThread
from appliance.jobs.runner import Runtime, TaskRunner
from appliance.settings import Settings
from appliance.storage import make_storage

settings = Settings.from_env()
logging.basicConfig(
    level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
)
broker = make_broker(settings)
dramatiq.set_broker(broker)
_runner: TaskRunner | None = None


def build_runtime(s: Settings, b: Any) -> Runtime:
    storage = make_storage(s)
    if hasattr(storage, "ensure_bucket"):
        storage.ensure_bucket()
    return Runtime(
        settings=s,
        pool=sync_pool(s),
        storage=storage,
        registry=Registry(enabled_engines()),
        dispatcher=make_dispatcher(s, b),
        redis=redis.Redis.from_url(s.effective_redis_url),
    )


def _run(task_id: str, queue: str) -> None:
    assert _runner is not None, "worker process did not boot"
    _runner.run(task_id, queue)


class _Boot(dramatiq.Middleware):
    """Builds the process's Runtime when its worker boots; starts the reconciler."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        global _runner
        rt = build_runtime(settings, broker)
        _runner = TaskRunner(rt, OPERATIONS)
        self.reconciler = ReconcilerThread(rt)
        self.reconciler.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if hasattr(self, "reconciler"):
            self.reconciler.stop()


broker.add_middleware(_Boot())
declare_actors(broker, _run)
