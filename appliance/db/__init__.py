"""PostgreSQL access: connection pools (psycopg 3) and numbered SQL migrations.

Postgres is the source of truth for users, keys, jobs, tasks, file references and the
conversion cache. The API uses the async pool, workers and the CLI the sync one. Rows come
back as dicts.
"""

from __future__ import annotations

from typing import TypeAlias

from psycopg import AsyncConnection, Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from appliance.settings import Settings

SyncPool: TypeAlias = ConnectionPool[Connection[DictRow]]
AsyncPool: TypeAlias = AsyncConnectionPool[AsyncConnection[DictRow]]
DictConnection: TypeAlias = Connection[DictRow]
AsyncDictConnection: TypeAlias = AsyncConnection[DictRow]


def _utc(conn: Connection[DictRow]) -> None:
    conn.execute("SET TIME ZONE 'UTC'")  # timestamps in API JSON read +00:00


async def _utc_async(conn: AsyncConnection[DictRow]) -> None:
    await conn.execute("SET TIME ZONE 'UTC'")


def sync_pool(settings: Settings, *, min_size: int = 1) -> SyncPool:
    pool = ConnectionPool(
        settings.effective_database_url,
        connection_class=Connection[DictRow],
        min_size=min_size,
        max_size=settings.db_pool_size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        configure=_utc,
        open=False,
        name="appliance",
    )
    pool.open(wait=True, timeout=30)
    return pool


async def async_pool(settings: Settings, url: str | None = None) -> AsyncPool:
    """The API's pool on ``url`` (default: the primary)."""
    pool = AsyncConnectionPool(
        url or settings.effective_database_url,
        connection_class=AsyncConnection[DictRow],
        min_size=min(2, settings.db_pool_size),
        max_size=settings.db_pool_size,
        kwargs={"row_factory": dict_row, "autocommit": True},
        configure=_utc_async,
        open=False,
        name="appliance-api" if url is None else "appliance-api-read",
    )
    await pool.open(wait=True, timeout=30)
    return pool
