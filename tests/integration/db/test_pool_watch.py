"""The API's pool figures read from a real psycopg pool on a real Postgres: a request holding
a connection is in use, one waiting for it is counted as waiting (appliance/metrics/runtime.py)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from appliance.metrics.runtime import RuntimeWatch

pytestmark = pytest.mark.integration


def _figures() -> tuple[float | None, ...]:
    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"pool": "itest", **labels})

    return (
        value("appliance_db_pool_connections", state="in_use"),
        value("appliance_db_pool_connections", state="idle"),
        value("appliance_db_pool_waiting_requests"),
    )


def test_a_held_connection_and_a_waiting_request_are_counted(postgres_url: str) -> None:
    seen = []

    async def scene() -> None:
        async with AsyncConnectionPool(postgres_url, min_size=2, max_size=2, open=False) as pool:
            await pool.wait()
            watch = RuntimeWatch({"itest": pool})
            watch.sample()
            seen.append(_figures())
            held = [await pool.getconn(), await pool.getconn()]
            waiter = asyncio.create_task(pool.getconn(timeout=5))
            await asyncio.sleep(0.2)
            watch.sample()
            seen.append(_figures())
            await pool.putconn(held.pop())
            await pool.putconn(await waiter)
            await pool.putconn(held.pop())
            watch.sample()
            seen.append(_figures())

    asyncio.run(scene())
    assert seen == [(0.0, 2.0, 0.0), (2.0, 0.0, 1.0), (0.0, 2.0, 0.0)]
