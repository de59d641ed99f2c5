"""Stored objects (``files``, one row per content hash) and the conversion cache."""

from __future__ import annotations

from typing import Any

from appliance.db import AsyncDictConnection, AsyncPool, SyncPool

# Before bytes are stored under a hash, the hash gets a `files` row (refcount 0 if new, its
# grace period restarted if unreferenced). The cleaner only deletes rows unreferenced for an
# hour, so it cannot delete an object being stored now, and an object that never gets a
# reference (a failed job, a rejected upload) is still found and deleted later.
RESERVE_FILE = (
    "INSERT INTO files (sha256, size, refcount, released_at) VALUES (%s, %s, 0, now())"
    " ON CONFLICT (sha256) DO UPDATE SET released_at ="
    " CASE WHEN files.refcount <= 0 THEN now() ELSE files.released_at END"
)
CACHE_HIT = (
    "UPDATE conversion_cache SET last_hit_at = now() WHERE input_sha256 = %s AND"
    " output_format = %s AND options_hash = %s AND engine_version = %s"
    " RETURNING output_sha256, size"
)
STORAGE_USE = "SELECT count(*) AS n, coalesce(sum(size), 0) AS b FROM files"
# In the transaction that deleted tasks: the cached results made from their files go too
# (a deleted job leaves nothing behind), then the stored objects this transaction left
# without any reference (released_at = now(): released by it). Their rows are deleted here
# and their objects by the caller before the commit, holding the rows' locks: an upload of
# the same bytes at that moment waits, then finds no row and no object, and stores anew.
FORGET_CACHED_OUTPUTS = (
    "DELETE FROM conversion_cache WHERE output_sha256 IN"
    " (SELECT f.sha256 FROM task_files f WHERE f.task_id = ANY(%s))"
)
RELEASED_NOW = (
    "DELETE FROM files WHERE sha256 IN (SELECT sha256 FROM files"
    " WHERE refcount <= 0 AND released_at = now() FOR UPDATE) RETURNING sha256"
)


def reserve(pool: SyncPool, sha256: str, size: int) -> None:
    with pool.connection() as conn:
        conn.execute(RESERVE_FILE, (sha256, size))


async def reserve_async(pool: AsyncPool, sha256: str, size: int) -> None:
    async with pool.connection() as conn:
        await conn.execute(RESERVE_FILE, (sha256, size))


async def forget_cached_outputs(conn: AsyncDictConnection, task_ids: list[Any]) -> None:
    await conn.execute(FORGET_CACHED_OUTPUTS, (task_ids,))


async def released_now(conn: AsyncDictConnection) -> list[str]:
    """The addresses this transaction left unreferenced, their rows deleted (see above)."""
    return [r["sha256"] for r in await (await conn.execute(RELEASED_NOW)).fetchall()]


def cache_hit(pool: SyncPool, key: tuple[str, str, str, str]) -> tuple[str, int] | None:
    """The cached output (sha256, size) for (input sha256, output format, options hash,
    engine versions), marked as used now; None on a miss."""
    with pool.connection() as conn:
        row = conn.execute(CACHE_HIT, key).fetchone()
    return (row["output_sha256"], row["size"]) if row else None


def storage_use(conn: Any) -> tuple[int, int]:
    """(objects, bytes) from the ``files`` table, which has one row per stored object; on a
    synchronous connection (the metrics port reads it at scrape time)."""
    n, b = conn.execute(STORAGE_USE).fetchone()
    return int(n), int(b)
