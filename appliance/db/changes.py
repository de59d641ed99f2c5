"""The ids of the jobs a connection's own writes changed, handed over as each write commits.

Migration 0025's triggers notify a writing session, on a channel of its own, of the jobs (and
job-less tasks) its statements changed; Postgres delivers those notifications with the
COMMIT's answer, so ``on_change`` runs after the change is committed and before the call that
committed it returns. ``StatusTokens.renew`` is that callback for the status cache
(``conversions.status_cache``): each changed job gets a new version token in Redis, whichever
code path wrote. The API's connections gather the changes of a ``connection`` block instead
and await ``LoopStatusTokens.renew`` as it ends (``db.ApiPool``): no Redis round trip inside
the event loop. Only connections to the primary listen (a standby cannot).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import redis
from psycopg import AsyncConnection, Connection, Notify

from appliance.db.redis_pipe import PipelinedRedis

OnChange = Callable[[list[str]], None]
AsyncOnChange = Callable[[list[str]], Coroutine[Any, Any, None]]
log = logging.getLogger(__name__)
STATUS_KEYS = "appliance:status:"
# Redis forgets a job's token an hour after its last change, or when the job itself expires if
# that is sooner (``token_seconds``). A token made again is a new random one, so no document
# cached under the old one is served after that (each is served at most
# ``status_cache_seconds`` anyway): the time only bounds Redis's memory (a token for each job
# changed in the last hour, not each of the day's) against a database read per job and hour.
TOKEN_SECONDS = 3_600
PENDING_MAX = 10_000  # changes kept for a later write while Redis is unreachable


def token_seconds(job_retention_hours: float) -> int:
    """How long a job's token is kept: an hour, or the jobs' retention if shorter."""
    return max(1, min(TOKEN_SECONDS, math.ceil(job_retention_hours * 3600)))


def token_key(scope: str) -> str:
    """The Redis key of a job's (or job-less task's) status version token."""
    return STATUS_KEYS + scope


class _Tokens:
    """What both writers' sides share: the changes whose new token could not be written yet."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds  # each token's life (token_seconds)
        self._pending: set[str] = set()
        self._lock = threading.Lock()  # a worker's threads share one pool

    def _take(self, scopes: list[str]) -> set[str]:
        """``scopes`` and the changes left from a failed renewal, to renew now."""
        with self._lock:
            todo, self._pending = self._pending | set(scopes), set()
        return todo

    def _keep(self, todo: set[str], error: redis.RedisError) -> None:
        """A renewal failed (Redis unreachable): ``todo`` goes with the next change."""
        log.warning("could not renew %d job status tokens", len(todo), exc_info=error)
        with self._lock:
            self._pending |= set(list(todo)[:PENDING_MAX])


class StatusTokens(_Tokens):
    """A new random version token for every job a committed write changed, written as the
    change commits (the workers' and the CLI's: a thread waits for Redis). Writes that fail
    (Redis unreachable) are retried with the next change."""

    def __init__(self, client: redis.Redis, seconds: int = TOKEN_SECONDS) -> None:
        super().__init__(seconds)
        self.client = client

    @classmethod
    def at(cls, url: str, job_retention_hours: float) -> StatusTokens:
        return cls(redis.Redis.from_url(url), token_seconds(job_retention_hours))

    def renew(self, scopes: list[str]) -> None:
        todo = self._take(scopes)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for scope in todo:
                    pipe.set(token_key(scope), secrets.token_hex(8), ex=self.seconds)
                pipe.execute()
        except redis.RedisError as exc:
            self._keep(todo, exc)


class LoopStatusTokens(_Tokens):
    """The API's side: the same tokens, written through the event loop's pipelined Redis
    connection (``redis_pipe``), awaited, so the loop serves other requests meanwhile and a
    Redis that stops answering fails the renewal within the client's timeout instead of
    holding the process (the API's pool awaits it as a connection block ends:
    ``db.ApiPool``)."""

    def __init__(self, client: PipelinedRedis, seconds: int = TOKEN_SECONDS) -> None:
        super().__init__(seconds)
        self.client = client

    @classmethod
    def at(cls, url: str, job_retention_hours: float) -> LoopStatusTokens:
        return cls(PipelinedRedis(url, patient=True), token_seconds(job_retention_hours))

    async def renew(self, scopes: list[str]) -> None:
        todo = self._take(scopes)
        done = await asyncio.gather(
            *(self.client.set(token_key(s), secrets.token_hex(8), ex=self.seconds) for s in todo),
            return_exceptions=True,
        )
        failed: redis.RedisError | None = None
        for outcome in done:
            if isinstance(outcome, redis.RedisError):
                failed = failed or outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        if failed is not None:
            self._keep(todo, failed)


def channel(backend_pid: int) -> str:
    return f"appliance_changed_{backend_pid}"


def _handler(on_change: OnChange) -> Callable[[Notify], None]:
    def handle(notify: Notify) -> None:
        on_change(notify.payload.split())

    return handle


def watch(conn: Connection[Any], on_change: OnChange) -> None:
    conn.execute(f"LISTEN {channel(conn.info.backend_pid)}")
    conn.add_notify_handler(_handler(on_change))


async def watch_async(conn: AsyncConnection[Any], on_change: OnChange) -> None:
    await conn.execute(f"LISTEN {channel(conn.info.backend_pid)}")
    conn.add_notify_handler(_handler(on_change))
