"""A hot path's counts, tallied in the process and written to their counter at most once a
flush period (appliance/metrics/tally.py)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter

from appliance.metrics.tally import Tally


def _counter() -> tuple[Counter, CollectorRegistry]:
    registry = CollectorRegistry()
    return Counter("t_reads", "test", ["result"], registry=registry), registry


def _written(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("t_reads_total", {"result": result}) or 0.0


def test_counts_on_a_loop_are_written_once_the_period_has_passed() -> None:
    counter, registry = _counter()
    tally = Tally(counter, seconds=0.05)
    seen: list[float] = []

    async def reads() -> None:
        for _ in range(3):
            tally.inc("hit")
        tally.inc("miss")
        seen.append(_written(registry, "hit"))  # not yet: within the period
        await asyncio.sleep(0.2)

    asyncio.run(reads())
    assert seen == [0.0]
    assert (_written(registry, "hit"), _written(registry, "miss")) == (3.0, 1.0)


def test_without_a_loop_each_count_is_written_at_once() -> None:
    counter, registry = _counter()
    Tally(counter).inc("hit")
    assert _written(registry, "hit") == 1.0


def test_a_loop_that_ended_with_a_flush_pending_leaves_it_to_the_next_loop() -> None:
    counter, registry = _counter()
    tally = Tally(counter, seconds=0.05)

    async def one_read() -> None:
        tally.inc("hit")

    asyncio.run(one_read())  # ends before its flush is due
    assert _written(registry, "hit") == 0.0

    async def read_and_wait() -> None:
        tally.inc("hit")
        await asyncio.sleep(0.2)

    asyncio.run(read_and_wait())
    assert _written(registry, "hit") == 2.0
