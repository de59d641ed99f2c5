"""Entry module for ``dramatiq appliance.jobs.worker -Q <queue>``: wiring only.

Importing it builds the broker and declares the actors. Each worker process builds its
``Runtime`` (pools, storage, engines) on boot, and runs a reconciler thread and the webhook
senders.
"""

from __future__ import annotations

import dramatiq

from appliance import logs
from appliance.conversions.runner import TaskRunner
from appliance.conversions.runtime import build_runtime
from appliance.engines import QUEUE_CLASSES
from appliance.jobs.broker import declare_actors, make_broker, make_dispatcher
from appliance.jobs.health_server import serve
from appliance.jobs.reconciler import ReconcilerThread
from appliance.jobs.webhooks import WebhookSenderThread
from appliance.metrics import preset
from appliance.settings import Settings

settings = Settings.from_env()
logs.configure(settings.log_level, settings.log_format)
broker = make_broker(settings)
dramatiq.set_broker(broker)
dispatcher = make_dispatcher(settings, broker)
_runner: TaskRunner | None = None


def _run(task_id: str, queue: str) -> None:
    assert _runner is not None, "worker process did not boot"
    _runner.run(task_id, queue)


class _Boot(dramatiq.Middleware):
    """Builds the process's Runtime when its worker boots; starts the reconciler and the
    webhook senders."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        global _runner
        rt = build_runtime(settings, dispatcher)
        preset(queues=QUEUE_CLASSES)
        _runner = TaskRunner(rt)
        self.reconciler = ReconcilerThread(rt)
        self.reconciler.start()
        self.webhooks = WebhookSenderThread(rt)
        self.webhooks.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if hasattr(self, "reconciler"):
            self.reconciler.stop()
        if hasattr(self, "webhooks"):
            self.webhooks.stop()


class _MetricsPort(dramatiq.Middleware):
    """Dramatiq forks one process running ``serve``: the group's metrics and health port."""

    forks = [serve]  # type: ignore[list-item]  # Dramatiq ignores the return value


broker.add_middleware(_Boot())
if settings.worker_metrics_port:
    broker.add_middleware(_MetricsPort())
declare_actors(broker, _run, dispatcher)
