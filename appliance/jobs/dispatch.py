"""Putting ready tasks on their Dramatiq queue, and remembering which are on one.

Every enqueued task id is also added to the Redis set ``appliance:pending:<queue>``; a worker
removes it when it picks the message up. The reconciler re-enqueues ready tasks that are in
Postgres but not in that set: their message was lost (Redis restarted, or the process died
between the commit and the enqueue). Enqueue happens before the SADD, so a crash between the
two causes at most a duplicate message, which the claim in Postgres makes harmless.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import dramatiq
import redis

PENDING_KEY = "appliance:pending:{queue}"


def actor_name(queue: str) -> str:
    return f"run_task_{queue}"


@dataclass(frozen=True)
class Ready:
    task_id: uuid.UUID | str
    queue: str


class Dispatcher(Protocol):
    def dispatch(self, tasks: Iterable[Ready], delay_ms: int | None = None) -> None: ...


class DramatiqDispatcher:
    def __init__(self, broker: dramatiq.Broker, client: redis.Redis) -> None:
        self.broker = broker
        self.redis = client

    def dispatch(self, tasks: Iterable[Ready], delay_ms: int | None = None) -> None:
        for task in tasks:
            message: dramatiq.Message[None] = dramatiq.Message(
                queue_name=task.queue,
                actor_name=actor_name(task.queue),
                args=(str(task.task_id),),
                kwargs={},
                options={},
            )
            self.broker.enqueue(message, delay=delay_ms)
            self.redis.sadd(PENDING_KEY.format(queue=task.queue), str(task.task_id))

    def picked_up(self, task_id: str, queue: str) -> None:
        self.redis.srem(PENDING_KEY.format(queue=queue), task_id)

    def pending(self, queue: str, task_ids: list[str]) -> list[bool]:
        if not task_ids:
            return []
        return [bool(x) for x in self.redis.smismember(PENDING_KEY.format(queue=queue), task_ids)]
