"""Messages a worker had fetched and not acked when it died go back on their queue within
seconds of its heartbeat going stale, on a real Redis: the broker runs Dramatiq's maintenance
on a clock, not with one command in a thousand at random."""

from __future__ import annotations

import time
import uuid

import dramatiq

from appliance.jobs.broker import PromptRedisBroker

HEARTBEAT_MS = 1000


def _broker(redis_url: str, namespace: str, maintenance_seconds: float) -> PromptRedisBroker:
    broker = PromptRedisBroker(
        url=redis_url,
        namespace=namespace,
        poll_ms=100,
        heartbeat_timeout=HEARTBEAT_MS,
        maintenance_seconds=maintenance_seconds,
    )
    broker.declare_queue("light")
    return broker


def _fetched_by_a_worker_that_dies(redis_url: str, namespace: str) -> None:
    dead = _broker(redis_url, namespace, maintenance_seconds=3600)
    dead.enqueue(dramatiq.Message("light", "run", (), {}, {}))
    consumer = dead.consume("light", prefetch=1, timeout=100)
    deadline = time.monotonic() + 10
    while next(consumer) is None:  # fetched, never acked; the worker then stops for good
        assert time.monotonic() < deadline
    assert _on_queue(dead, namespace) == 0


def _on_queue(broker: PromptRedisBroker, namespace: str) -> int:
    """The message ids waiting on the queue's list (not those a worker holds)."""
    return int(broker.client.llen(f"{namespace}:light"))


def _queued_after(broker: PromptRedisBroker, namespace: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        broker.do_qsize("light")  # a command, which may carry the maintenance
        if _on_queue(broker, namespace):
            return 1
        time.sleep(0.1)
    return 0


def test_a_dead_workers_fetched_message_is_queued_again_within_seconds(redis_url):
    namespace = f"maintenance-{uuid.uuid4().hex[:8]}"
    _fetched_by_a_worker_that_dies(redis_url, namespace)
    # control: without maintenance the message stays with the dead worker
    idle = _broker(redis_url, namespace, maintenance_seconds=3600)
    assert _queued_after(idle, namespace, 2 * HEARTBEAT_MS / 1000) == 0
    live = _broker(redis_url, namespace, maintenance_seconds=0.5)
    assert _queued_after(live, namespace, 5) == 1
