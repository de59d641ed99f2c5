"""What an API process's event loop and database pools are doing, sampled every second.

A call that blocks inside the event loop (a synchronous socket, a long computation) holds
every request of the process while it lasts; requests waiting for a pooled Postgres
connection are answered 503 after the pool's timeout. Neither shows in CPU or in Postgres's
own figures (a connection checked out and waiting on something else is an idle backend), so
the process reports them itself: how late a timer due every ``SAMPLE_SECONDS`` runs, and its
pools' connections in use and requests waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Protocol

from appliance.metrics import DB_POOL_CONNECTIONS, DB_POOL_WAITING, EVENT_LOOP_LAG

SAMPLE_SECONDS = 1.0


class Pool(Protocol):
    """What is read of a pool: psycopg_pool's ``get_stats``."""

    def get_stats(self) -> dict[str, int]: ...


class RuntimeWatch:
    """Samples the running loop's lag and ``pools`` (by name) every ``seconds`` while
    started."""

    def __init__(self, pools: Mapping[str, Pool], seconds: float = SAMPLE_SECONDS) -> None:
        self.pools = dict(pools)
        self.seconds = seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for name in self.pools:  # a process that stops holds nothing
            self._set(name, 0, 0, 0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.seconds
            await asyncio.sleep(self.seconds)
            EVENT_LOOP_LAG.observe(max(0.0, loop.time() - due))
            self.sample()

    def sample(self) -> None:
        for name, pool in self.pools.items():
            stats = pool.get_stats()
            size, free = stats.get("pool_size", 0), stats.get("pool_available", 0)
            self._set(name, size - free, free, stats.get("requests_waiting", 0))

    @staticmethod
    def _set(name: str, in_use: int, idle: int, waiting: int) -> None:
        DB_POOL_CONNECTIONS.labels(name, "in_use").set(in_use)
        DB_POOL_CONNECTIONS.labels(name, "idle").set(idle)
        DB_POOL_WAITING.labels(name).set(waiting)
