"""Wakes sync (blocking) requests when a task or job ends, and hears key revocations, via
Redis pub/sub.

One subscription per API process; waiters register the ids they care about. Messages are only
a hint to look again: waiters re-read Postgres then. A message is lost only while the
subscription is down, and every waiter is woken once it is back; waiters also look again every
``sync_recheck_seconds`` (15 s by default) anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from appliance.conversions.events import EVENTS_CHANNEL
from appliance.security.revocation import REVOCATIONS_CHANNEL

log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.2


class Notifier:
    def __init__(self, url: str) -> None:
        self._redis = aioredis.Redis.from_url(url)
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        # Revocations (``security.revocation``) go to ``on_revoked``; ``on_heard_again`` runs
        # each time the revocations are heard again (what was said meanwhile was missed).
        self.on_revoked: Callable[[list[str]], None] = lambda words: None
        self.on_heard_again: Callable[[], None] = lambda: None
        self.hearing_revocations = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task:
            # redis-py can lose a cancellation inside its read (the task then reads on, and a
            # lifespan that awaited it hung, about one stop in five right after a start):
            # cancel again until the task has ended.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=STOP_POLL_SECONDS)
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
                    await pubsub.subscribe(EVENTS_CHANNEL, REVOCATIONS_CHANNEL)
                    async for message in pubsub.listen():
                        self._heard(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("event subscription lost; retrying", exc_info=True)
            finally:
                self.hearing_revocations = False
            await asyncio.sleep(1.0)

    def _heard(self, message: dict[str, Any]) -> None:
        channel = message["channel"].decode()
        if message["type"] == "message":
            words = message["data"].decode().split()
            if channel == REVOCATIONS_CHANNEL:
                self.on_revoked(words)
            else:
                self._wake(words)
        elif message["type"] == "subscribe":
            # (Re)subscribed: what was said while nobody listened was never heard. Every
            # waiter looks again; every cached key is checked again.
            if channel == REVOCATIONS_CHANNEL:
                self.on_heard_again()
                self.hearing_revocations = True
            else:
                self._wake(list(self._waiters))

    def _wake(self, keys: list[str]) -> None:
        for key in keys:
            for event in self._waiters.get(key, ()):
                event.set()
