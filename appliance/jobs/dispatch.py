"""Putting ready tasks on their Dramatiq queue, and remembering which are on one.

Before a task is enqueued its id goes into the Redis sorted set ``appliance:pending:<queue>``,
scored with the time its message becomes due; a worker removes it when it picks the message
up. The reconciler re-enqueues ready tasks that Postgres knows and that set does not hold, or
holds for much longer than any message should wait: their message was lost (Redis restarted,
or the process died between the commit and the enqueue). Adding before enqueueing means a
worker's removal always comes after the add; a crash between the two is caught by the age.
A duplicate message is harmless: the claim in Postgres lets only one run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import dramatiq
import redis

from appliance import logs
from appliance.conversions import events
from appliance.conversions.task import Ready

PENDING_KEY = "appliance:pending:{queue}"


def actor_name(queue: str) -> str:
    return f"run_task_{queue}"


class DramatiqDispatcher:
    """The domain's ``Dispatcher`` on Dramatiq's Redis broker."""

    def __init__(self, broker: dramatiq.Broker, client: redis.Redis) -> None:
        self.broker = broker
        self.redis = client

    def dispatch(self, tasks: Iterable[Ready], delay_ms: int | None = None) -> None:
        due = time.time() + (delay_ms or 0) / 1000
        # The request that made the task ready: the worker logs with the same id.
        rid = logs.request_id.get()
        options = {"request_id": rid} if rid else {}
        for task in tasks:
            self.redis.zadd(PENDING_KEY.format(queue=task.queue), {str(task.task_id): due})
            message: dramatiq.Message[None] = dramatiq.Message(
                queue_name=task.queue,
                actor_name=actor_name(task.queue),
                args=(str(task.task_id),),
                kwargs={},
                options=dict(options),
            )
            self.broker.enqueue(message, delay=delay_ms)

    def announce(self, task_ids: Iterable[Any], ended_job_id: Any = None) -> None:
        events.announce(self.redis, *task_ids, ended_job_id=ended_job_id)

    def close(self) -> None:
        self.broker.close()
        self.redis.close()

    def backlog(self, queues: Iterable[str]) -> dict[str, int]:
        now = time.time()
        names = list(queues)
        with self.redis.pipeline(transaction=False) as pipe:
            for queue in names:
                pipe.zcount(PENDING_KEY.format(queue=queue), "-inf", now)
            counts = pipe.execute()
        return dict(zip(names, map(int, counts), strict=True))

    def picked_up(self, task_id: str, queue: str) -> None:
        self.redis.zrem(PENDING_KEY.format(queue=queue), task_id)

    def pending(self, queue: str, task_ids: list[str], max_wait: float) -> list[bool]:
        """For each task: is a message for it on the queue, due less than ``max_wait`` s ago
        and since Redis last started? A restart may bring an entry of the pending set back
        (from its last save) without its message (fetched by a worker before the restart, or
        saved apart from it): an entry older than the server is not trusted, so the
        reconciler enqueues the task again (a second message for a task already taken finds
        it claimed, and is dropped)."""
        if not task_ids:
            return []
        scores = self.redis.zmscore(PENDING_KEY.format(queue=queue), task_ids)
        now = time.time()
        started = now - float(self.redis.info("server")["uptime_in_seconds"])
        oldest = max(now - max_wait, started)
        return [score is not None and score >= oldest for score in scores]
