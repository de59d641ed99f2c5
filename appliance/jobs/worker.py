"""Entry module for ``dramatiq appliance.jobs.worker -Q <queue>``: wiring only.

Importing it builds the broker and declares the actors. Each worker process builds its
``Runtime`` (pools, storage, engines) on boot, and runs a reconciler thread.
"""

from __future__ import annotations

import logging

import dramatiq

from appliance.jobs.broker import declare_actors, make_broker
from appliance.jobs.derived import DERIVED
from appliance.jobs.operations import OPERATIONS
from appliance.jobs.reconciler import ReconcilerThread
from appliance.jobs.runner import TaskRunner, build_runtime
from appliance.settings import Settings

settings = Settings.from_env()
logging.basicConfig(
    level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
)
broker = make_broker(settings)
dramatiq.set_broker(broker)
_runner: TaskRunner | None = None


def _run(task_id: str, queue: str) -> None:
    assert _runner is not None, "worker process did not boot"
    _runner.run(task_id, queue)


class _Boot(dramatiq.Middleware):
    """Builds the process's Runtime when its worker boots; starts the reconciler."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        global _runner
        rt = build_runtime(settings, broker)
        _runner = TaskRunner(rt, {**OPERATIONS, **DERIVED})
        self.reconciler = ReconcilerThread(rt)
        self.reconciler.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if hasattr(self, "reconciler"):
            self.reconciler.stop()


broker.add_middleware(_Boot())
declare_actors(broker, _run)
