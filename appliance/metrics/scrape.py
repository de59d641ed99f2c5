"""Gauges computed when a group's metrics port is scraped: whether the host reaches each
dependency (every group), and on the API's port the shared state: queue depth and the age of
the oldest waiting message (Redis), storage use, and the users with the most conversions and
the most failed tasks over the last hour (Postgres).

Per-tenant figures come from Postgres here, never from a label per user on the request
path's counters: the ``user`` label of ``appliance_user_*_last_hour`` holds at most
``TOP_USERS`` user ids a scrape, so the series stay few however many users there are.

Every API host reports the same values (they describe the whole appliance, not the host), so
dashboards and alerts take ``max`` over instances, never ``sum``.

The queue figures come from each queue's pending set (``appliance:pending:<queue>``, kept by
the dispatcher, ``jobs/dispatch.py``):
a task id scored with the time its message became due, removed when a worker picks the
message up. Due entries are the backlog; their lowest score gives the oldest message's age.
Dramatiq's own lists (``dramatiq:<queue>`` and its delay queue ``.DQ``) are reported beside
them, as a cross-check of the broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

DRAMATIQ_NAMESPACE = "dramatiq"
TOP_USERS = 10  # users in each per-tenant list
TOP_USERS_SECONDS = 3600.0  # the window of the per-tenant lists


@dataclass(eq=False)  # collectors are registered by identity
class Snapshot(Collector):
    """Values read at one scrape, presented as a prometheus-client collector."""

    queues: dict[str, tuple[int, int, float, int]] = field(default_factory=dict)
    storage: tuple[int, int] | None = None  # (objects, bytes)
    # {"conversions": {user id: n}, "errors": {user id: n}} (db.queries.activity.top_users)
    top_users: dict[str, dict[str, int]] | None = None
    # {dependency: reached}, as this host's group sees it now (every group's port)
    reachable: dict[str, bool] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.reachable is not None:
            up = GaugeMetricFamily(
                "appliance_dependency_up",
                "Whether this host's process group reached the dependency at the scrape (1) or"
                " not (0): postgres, redis, storage, and clamd where files are scanned.",
                labels=["dependency"],
            )
            for name, reached in self.reachable.items():
                up.add_metric([name], 1 if reached else 0)
            yield up
        depth = GaugeMetricFamily(
            "appliance_queue_depth",
            "Tasks whose message is due and not yet picked up by a worker, by queue.",
            labels=["queue"],
        )
        delayed = GaugeMetricFamily(
            "appliance_queue_delayed",
            "Tasks waiting for a delayed retry (message not yet due), by queue.",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "appliance_queue_oldest_age_seconds",
            "How long the oldest due message has waited for a worker (0 when none), by queue.",
            labels=["queue"],
        )
        broker = GaugeMetricFamily(
            "appliance_queue_broker_messages",
            "Messages in Dramatiq's Redis lists for the queue (ready and delayed).",
            labels=["queue"],
        )
        for queue, (n_due, n_delayed, oldest, n_broker) in self.queues.items():
            depth.add_metric([queue], n_due)
            delayed.add_metric([queue], n_delayed)
            age.add_metric([queue], oldest)
            broker.add_metric([queue], n_broker)
        yield from (depth, delayed, age, broker)
        if self.storage is not None:
            yield GaugeMetricFamily(
                "appliance_storage_objects",
                "Objects in content-addressed storage (each distinct file once).",
                value=self.storage[0],
            )
            yield GaugeMetricFamily(
                "appliance_storage_bytes",
                "Bytes in content-addressed storage.",
                value=self.storage[1],
            )
        if self.top_users is not None:
            yield from self._top_users(self.top_users)

    @staticmethod
    def _top_users(top: dict[str, dict[str, int]]) -> Iterator[GaugeMetricFamily]:
        helps = {
            "conversions": "Convert tasks ended in the last hour, for the users with the most.",
            "errors": "Tasks ended in error in the last hour, for the users with the most.",
        }
        for kind, text in helps.items():
            family = GaugeMetricFamily(
                f"appliance_user_{kind}_last_hour", f"{text} (at most {TOP_USERS})", labels=["user"]
            )
            for user, n in top.get(kind, {}).items():
                family.add_metric([user], n)
            yield family


def queues(client: Any, pending: dict[str, str]) -> dict[str, tuple[int, int, float, int]]:
    """(due, delayed, oldest due age s, broker messages) per queue, in one round trip of a
    synchronous Redis ``client``; ``pending``: each queue's pending set."""
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for queue, key in pending.items():
        pipe.zcount(key, "-inf", now)
        pipe.zcount(key, f"({now}", "+inf")
        pipe.zrange(key, 0, 0, withscores=True)
        pipe.llen(f"{DRAMATIQ_NAMESPACE}:{queue}")
        pipe.llen(f"{DRAMATIQ_NAMESPACE}:{queue}.DQ")
    replies = pipe.execute()
    out: dict[str, tuple[int, int, float, int]] = {}
    for i, queue in enumerate(pending):
        due, later, first, ready, dq = replies[i * 5 : i * 5 + 5]
        oldest = max(0.0, now - first[0][1]) if due and first else 0.0
        out[queue] = (int(due), int(later), oldest, int(ready) + int(dq))
    return out
