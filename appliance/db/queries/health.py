"""Readiness probes: does Postgres answer."""

from __future__ import annotations

from typing import Any

from appliance.db import AsyncPool

PING = "SELECT 1"


async def ping(pool: AsyncPool) -> None:
    """Raise unless Postgres gives a connection within 2 s and answers."""
    async with pool.connection(timeout=2) as conn:
        await conn.execute(PING)


def ping_sync(conn: Any) -> None:
    conn.execute(PING)
