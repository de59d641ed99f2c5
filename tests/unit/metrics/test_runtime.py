"""An API process's event loop lag and pool use, sampled every period
(appliance/metrics/runtime.py)."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from appliance.metrics.runtime import RuntimeWatch

LAG = "appliance_api_event_loop_lag_seconds"


def _lag(bucket: str) -> float:
    return REGISTRY.get_sample_value(f"{LAG}_bucket", {"le": bucket}) or 0.0


def _pool(name: str, state: str) -> float | None:
    labels = {"pool": name, "state": state}
    return REGISTRY.get_sample_value("appliance_db_pool_connections", labels)


class Stats:
    """A pool's ``get_stats`` answer, set by the test."""

    def __init__(self, size: int, available: int, waiting: int) -> None:
        self.stats = {"pool_size": size, "pool_available": available, "requests_waiting": waiting}

    def get_stats(self) -> dict[str, int]:
        return self.stats


def test_a_blocking_call_in_the_loop_is_measured_as_lag() -> None:
    count = REGISTRY.get_sample_value(f"{LAG}_count") or 0.0
    slow_before = count - _lag("0.25")  # samples later than 0.25 s so far

    async def blocked() -> None:
        watch = RuntimeWatch({}, seconds=0.05)
        watch.start()
        await asyncio.sleep(0.12)  # a few samples on time
        time.sleep(0.4)  # noqa: ASYNC251 (the point: the loop held, its timer ~0.35 s late)
        await asyncio.sleep(0.12)
        await watch.stop()

    asyncio.run(blocked())
    count_after = REGISTRY.get_sample_value(f"{LAG}_count") or 0.0
    assert count_after - count >= 3
    assert count_after - _lag("0.25") - slow_before == 1  # exactly the held one was late


def test_pools_in_use_idle_and_waiting_are_set_each_sample_and_cleared_on_stop() -> None:
    primary, replica = Stats(10, 3, 4), Stats(2, 2, 0)
    seen: list[tuple[float | None, ...]] = []

    async def sampled() -> None:
        watch = RuntimeWatch({"primary": primary, "replica": replica}, seconds=0.02)
        watch.start()
        await asyncio.sleep(0.1)
        seen.append((_pool("primary", "in_use"), _pool("primary", "idle"),
                     _pool("replica", "in_use"), _pool("replica", "idle")))  # fmt: skip
        seen.append((REGISTRY.get_sample_value("appliance_db_pool_waiting_requests",
                                               {"pool": "primary"}),))  # fmt: skip
        primary.stats = {"pool_size": 10, "pool_available": 10, "requests_waiting": 0}
        await asyncio.sleep(0.1)
        seen.append((_pool("primary", "in_use"),))
        primary.stats["pool_available"] = 1
        await watch.stop()

    asyncio.run(sampled())
    assert seen == [(7.0, 3.0, 0.0, 2.0), (4.0,), (0.0,)]
    assert (_pool("primary", "in_use"), _pool("primary", "idle")) == (0.0, 0.0)
