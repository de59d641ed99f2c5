"""Wakes sync (blocking) requests when a task or job ends, via Redis pub/sub.

One subscription per API process; waiters register the ids they care about. Messages are only
a hint to look again: waiters re-read Postgres then. A message is lost only while the
subscription is down, and every waiter is woken once it is back; waiters also look again every
``sync_recheck_seconds`` (15 s by default) anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis

from appliance.conversions.events import EVENTS_CHANNEL

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, url: str) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

    @property
    def client(self) -> aioredis.Redis:
        """The Redis connection, for other reads at scrape time (metrics)."""
        return self._redis

    async def ping(self) -> None:
        """Raise if Redis is unreachable (readiness)."""
        await self._redis.ping()

    async def wait(self, key: str, timeout: float) -> None:  # noqa: ASYNC109
        """Return when ``key`` (a task or job id) is announced or after ``timeout`` s."""
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[key]

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(EVENTS_CHANNEL)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._wake(message["data"].decode().split())
                        elif message["type"] == "subscribe":
                            # (Re)subscribed: what ended while no subscription listened was
                            # never heard; every waiter looks again.
                            self._wake(list(self._waiters))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("event subscription lost; retrying", exc_info=True)
                await asyncio.sleep(1.0)

    def _wake(self, keys: list[str]) -> None:
        for key in keys:
            for event in self._waiters.get(key, ()):
                event.set()
