"""The Dramatiq broker and the actors: one actor per queue class, all running the domain's
``TaskRunner``.

Dramatiq's own retries are off (``max_retries=0``): retry policy lives in ``TaskRunner``, which
records attempts in Postgres, so it survives Redis and worker restarts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import MAINTENANCE_COMMAND_BLACKLIST, RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, ShutdownNotifications

from appliance import logs
from appliance.engines import QUEUE_CLASSES
from appliance.jobs.dispatch import DramatiqDispatcher, actor_name
from appliance.settings import Settings

# Long conversions must not be killed by Dramatiq's default 10-minute TimeLimit; engines get
# their own timeouts. Retries and time limits are our own, so only these middlewares stay.
MIDDLEWARE = [AgeLimit, ShutdownNotifications, Callbacks, Pipelines]


class RequestIds(dramatiq.Middleware):
    """Log lines of a task carry the id of the API request that made it ready (message
    option ``request_id``, set by the dispatcher)."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        logs.request_id.set(message.options.get("request_id"))

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: Any = None
    ) -> None:
        logs.request_id.set(None)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        logs.request_id.set(None)


class PromptRedisBroker(RedisBroker):
    """Dramatiq's Redis broker with a bound on how long a consumer sleeps between fetches,
    and on how long a dead worker's fetched messages wait to go back on their queue.

    A consumer that finds its queue empty, or has as many messages out as it may prefetch,
    sleeps with exponential backoff up to the worker timeout (1 s by default) before it
    fetches again. With tasks shorter than that, a worker's threads finish their prefetched
    messages and then idle until the sleep ends, however long the queue is.

    The messages a worker had fetched and not acked when it died go back on their queue in
    Dramatiq's maintenance, which runs with one command in a thousand, at random: with a
    handful of workers polling, that took minutes, with no bound (the lab's worker-host
    drill). Here a process runs it with its next command once ``maintenance_seconds`` have
    passed since it last did; it costs a sorted-set range when no worker is dead."""

    def __init__(self, *, poll_ms: int, maintenance_seconds: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poll_ms = poll_ms
        self.maintenance_seconds = maintenance_seconds
        self._next_maintenance = 0.0

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        return super().consume(queue_name, prefetch, min(timeout, self.poll_ms))

    def _should_do_maintenance(self, command: str) -> int:
        now = time.monotonic()
        if command in MAINTENANCE_COMMAND_BLACKLIST or now < self._next_maintenance:
            return 0
        self._next_maintenance = now + self.maintenance_seconds
        return 1


def make_broker(settings: Settings) -> RedisBroker:
    middleware = [m() for m in MIDDLEWARE] + [RequestIds()]
    broker = PromptRedisBroker(
        url=settings.effective_redis_url, middleware=middleware, poll_ms=settings.worker_poll_ms
    )
    for queue in QUEUE_CLASSES:
        broker.declare_queue(queue)
    return broker


def make_dispatcher(settings: Settings, broker: RedisBroker) -> DramatiqDispatcher:
    return DramatiqDispatcher(broker, redis.Redis.from_url(settings.effective_redis_url))


def dramatiq_dispatcher(settings: Settings) -> DramatiqDispatcher:
    """A dispatcher with a broker of its own (the API process's; closed with it)."""
    return make_dispatcher(settings, make_broker(settings))


def declare_actors(
    broker: dramatiq.Broker, run: Callable[[str, str], None], dispatcher: DramatiqDispatcher
) -> None:
    """Register ``run(task_id, queue)`` as one actor per queue class; a message picked up
    leaves its queue's pending set first (``dispatch``)."""
    for queue in QUEUE_CLASSES:

        def handler(task_id: str, _queue: str = queue) -> None:
            dispatcher.picked_up(task_id, _queue)
            run(task_id, _queue)

        dramatiq.Actor(
            handler,
            broker=broker,
            actor_name=actor_name(queue),
            queue_name=queue,
            priority=0,
            options={"max_retries": 0},
        )
