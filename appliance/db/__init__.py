"""PostgreSQL access: connection pools (psycopg 3) and numbered SQL migrations.

Postgres is the source of truth for users, keys, jobs, tasks, file references and the
conversion cache. The API uses the async pool, workers and the CLI the sync one. Rows come
back as dicts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any, TypeAlias

import msgspec
from psycopg import AsyncConnection, Connection, OperationalError
from psycopg.errors import IdleInTransactionSessionTimeout
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from appliance.db.changes import AsyncOnChange, OnChange, watch, watch_async
from appliance.errors import Unavailable
from appliance.metrics import ADMISSION_REJECTIONS
from appliance.settings import Settings

log = logging.getLogger(__name__)
DATABASE_RETRY_AFTER = 5  # seconds a client is told to wait: a failover, a pool drained
# Seconds an API connection's transaction may go without a statement before Postgres ends it.
# An api host that dies inside a transaction (power cut, link down) leaves Postgres waiting on
# a silent connection, holding the transaction's locks: an idempotency key's, say. API
# transactions run statements milliseconds apart; this stays well under the lb's read timeout
# (15 s in the lab), so requests waiting on those locks are answered in time. Not for the
# workers' pool, whose clean-up deletes objects between a transaction's statements.
API_IDLE_LIMIT = 5
# A database host that dies without a word (power cut, link down, a partition) sends no reset:
# without these a statement sent to it, or a result awaited from it, would wait for the
# kernel's retransmissions to give up (about 15 minutes), holding the pooled connection and
# the request or task. With them the connection fails within seconds and the next one is
# made to whichever host is then the primary. Keepalives cover a connection waiting for a
# result (the server's kernel answers probes while a query runs); the user timeout covers
# data sent and never acknowledged (a statement sent to a dead host fails in ~10 s; a silent
# wait for notifications failed after 42 s, measured). libpq ignores both on Unix sockets.
DEAD_PEER_SETTINGS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,  # seconds of silence before the first probe
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms that sent data may stay unacknowledged
}


# psycopg_pool tries again to make a connection it lost after a delay that doubles with each
# failure (1, 2, 4, 8, 16 s...). A failover leaves no primary for 15 s or so: the pool's next
# try could come up to 16 s after the new primary took writes, every request meanwhile
# answered 503 (seen in the lab's drill: requests failed some 4 s past the moment writes
# could resume). Its tries are at most this far apart.
RECONNECT_MAX_DELAY = 2.0


class SteadyBackoff(AttemptWithBackoff):
    """psycopg_pool's backoff, its delay capped at RECONNECT_MAX_DELAY."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_DELAY)


class WorkerPool(ConnectionPool[Connection[DictRow]]):
    """The workers' and the CLI's pool: reconnects with SteadyBackoff."""

    def _add_connection(self, attempt: AttemptWithBackoff | None, growing: bool = False) -> None:
        attempt = attempt or SteadyBackoff(timeout=self.reconnect_timeout)
        super()._add_connection(attempt, growing)


# The jobs changed by the writes committed inside the ApiPool.connection block a task runs.
_CHANGED: ContextVar[list[str] | None] = ContextVar("appliance_changed", default=None)


class ApiPool(AsyncConnectionPool[AsyncConnection[DictRow]]):
    """The API's pool. Postgres failing to serve a request (no free connection within the
    pool's timeout, unreachable, the connection lost, a statement cancelled, a transaction
    ended past the idle limit) becomes ``Unavailable``: the client is answered 503 with
    Retry-After, not 500 or a timeout. Reconnects with SteadyBackoff.

    ``on_change`` (``db.changes.LoopStatusTokens.renew``) is awaited for the jobs a
    ``connection`` block's writes changed as the block ends, before its caller goes on, so a
    read after the write never meets the old token; it runs on the loop without holding it
    (called from each commit's notification, a synchronous Redis round trip held every
    request of the process)."""

    def __init__(self, *args: Any, on_change: AsyncOnChange | None = None, **kwargs: Any):
        self.on_change = on_change
        self._renewing: set[asyncio.Task[None]] = set()
        heard = self._heard if on_change is not None else None
        super().__init__(*args, configure=partial(_configure_async, on_change=heard), **kwargs)

    @asynccontextmanager
    async def connection(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (psycopg_pool's own signature)
    ) -> AsyncIterator[AsyncConnection[DictRow]]:
        changed: list[str] = []
        gathering = _CHANGED.set(changed)
        try:
            async with super().connection(timeout) as conn:
                yield conn
        except (OperationalError, IdleInTransactionSessionTimeout) as exc:
            log.warning("database unavailable: %r", exc)
            ADMISSION_REJECTIONS.labels("database").inc()
            raise Unavailable(
                "The database is unavailable; try again shortly",
                retry_after=DATABASE_RETRY_AFTER,
            ) from exc
        finally:
            _CHANGED.reset(gathering)
            if changed:
                # shielded: a request cancelled meanwhile still leaves its tokens renewed
                await asyncio.shield(self._renew(changed))

    def _heard(self, scopes: list[str]) -> None:
        """A commit's changed jobs: kept for the end of the block that wrote them; heard
        outside any block (the pool's own statements), renewed at once in the background."""
        gathering = _CHANGED.get()
        if gathering is not None:
            gathering.extend(scopes)
        else:
            self._renew(scopes)

    def _renew(self, scopes: list[str]) -> asyncio.Task[None]:
        assert self.on_change is not None
        task = asyncio.get_running_loop().create_task(self.on_change(scopes))
        self._renewing.add(task)
        task.add_done_callback(self._renewing.discard)
        return task

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        attempt = attempt or SteadyBackoff(timeout=self.reconnect_timeout)
        await super()._add_connection(attempt, growing)


SyncPool: TypeAlias = ConnectionPool[Connection[DictRow]]
AsyncPool: TypeAlias = AsyncConnectionPool[AsyncConnection[DictRow]]
DictConnection: TypeAlias = Connection[DictRow]
AsyncDictConnection: TypeAlias = AsyncConnection[DictRow]


def _json_by_msgspec(conn: Any) -> None:
    """json/jsonb values in and out through msgspec, several times faster than the standard
    library's json, which psycopg uses by default (task payloads, results, files)."""
    set_json_loads(msgspec.json.decode, conn)
    set_json_dumps(msgspec.json.encode, conn)


def _configure(conn: Connection[DictRow], on_change: OnChange | None = None) -> None:
    _json_by_msgspec(conn)
    conn.execute("SET TIME ZONE 'UTC'")  # timestamps in API JSON read +00:00
    if on_change is not None:
        watch(conn, on_change)


async def _configure_async(
    conn: AsyncConnection[DictRow], on_change: OnChange | None = None
) -> None:
    _json_by_msgspec(conn)
    await conn.execute("SET TIME ZONE 'UTC'")
    if on_change is not None:
        await watch_async(conn, on_change)


def _connection_kwargs(settings: Settings, idle_limit: int | None = None) -> dict[str, Any]:
    """Every pooled connection: rows as dicts, autocommit, a dead peer noticed within seconds
    (``DEAD_PEER_SETTINGS``), and the session settings the database functions read
    (``appliance.metering``, migration 0011); with ``idle_limit``, Postgres ends a
    transaction left that many seconds without a statement."""
    kwargs: dict[str, Any] = {"row_factory": dict_row, "autocommit": True, **DEAD_PEER_SETTINGS}
    options = []
    if not settings.usage_metering:
        options.append("-c appliance.metering=off")
    if idle_limit is not None:
        options.append(f"-c idle_in_transaction_session_timeout={idle_limit}s")
    if options:
        kwargs["options"] = " ".join(options)
    return kwargs


def sync_pool(
    settings: Settings, *, min_size: int = 1, on_change: OnChange | None = None
) -> SyncPool:
    """A pool on the primary; ``on_change`` gets the ids of the jobs each of its writes
    changed, as the write commits (``db.changes``)."""
    pool = WorkerPool(
        settings.effective_database_url,
        connection_class=Connection[DictRow],
        min_size=min_size,
        max_size=settings.db_pool_size,
        kwargs=_connection_kwargs(settings),
        configure=partial(_configure, on_change=on_change),
        open=False,
        name="appliance",
    )
    pool.open(wait=True, timeout=30)
    return pool


async def async_pool(
    settings: Settings, url: str | None = None, on_change: AsyncOnChange | None = None
) -> AsyncPool:
    """The API's pool on ``url`` (default: the primary); ``on_change``, the primary's only,
    is awaited with the jobs each ``connection`` block's writes changed as the block ends
    (``ApiPool``)."""
    pool = ApiPool(
        url or settings.effective_database_url,
        connection_class=AsyncConnection[DictRow],
        min_size=min(2, settings.db_pool_size),
        max_size=settings.db_pool_size,
        kwargs=_connection_kwargs(settings, API_IDLE_LIMIT),
        on_change=on_change,
        timeout=settings.db_pool_timeout_seconds,
        open=False,
        name="appliance-api" if url is None else "appliance-api-read",
    )
    await pool.open(wait=True, timeout=30)
    return pool
