"""Signed-URL bases and the jobs their cache keys ran (migration 0012): a user's bases (JSON
built by Postgres), the base a signed URL names, and the cache_key -> job record."""

from __future__ import annotations

import uuid
from typing import Any

from appliance.db import AsyncDictConnection

_BASE_JSON = (
    "json_build_object('id', b.id, 'name', b.name, 'url', b.url,"
    " 'signing_secret', b.signing_secret, 'created_at', date_trunc('second', b.created_at))"
)
CREATE = (
    "INSERT INTO signed_url_bases AS b (id, user_id, name, url, signing_secret)"  # noqa: S608 (constants only)
    f" VALUES (%s, %s, %s, %s, %s) RETURNING {_BASE_JSON}::text AS doc"
)
COUNT = "SELECT count(*) AS n FROM signed_url_bases WHERE user_id = %s"
LIST = (
    f"SELECT coalesce(json_agg({_BASE_JSON} ORDER BY b.created_at DESC, b.id DESC), '[]')"  # noqa: S608 (constants only)
    "::text AS doc, count(*) AS n FROM (SELECT * FROM signed_url_bases WHERE user_id = %s"
    " ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s) b"
)
SHOW = (
    f"SELECT {_BASE_JSON}::text AS doc FROM signed_url_bases b"  # noqa: S608 (constants only)
    " WHERE b.id = %s AND b.user_id = %s"
)
DELETE = "DELETE FROM signed_url_bases WHERE id = %s AND user_id = %s"
# What a signed URL needs of its base: the owner (while not disabled), the URL it was shown
# with and the secret.
SIGNER = (
    "SELECT b.user_id, b.url, b.signing_secret AS secret FROM signed_url_bases b"
    " JOIN users u ON u.id = b.user_id WHERE b.id = %s AND u.disabled_at IS NULL"
)
# A cached job counts while it has not failed and its exported URLs stay valid for a while:
# they were made when the job ended, valid for %s seconds from then (url_ttl_seconds less a
# margin, measured from the job's creation, which is earlier), and the job is not expiring.
CACHED = (
    "SELECT r.job_id FROM signed_url_results r JOIN jobs j ON j.id = r.job_id"
    " WHERE r.base_id = %s AND r.cache_key = %s AND j.status <> 'error'"
    " AND j.created_at > now() - make_interval(secs => %s)"
    " AND j.expires_at > now() + make_interval(secs => %s)"
)
REMEMBER = (
    "INSERT INTO signed_url_results (base_id, cache_key, job_id) VALUES (%s, %s, %s)"
    " ON CONFLICT (base_id, cache_key) DO UPDATE"
    " SET job_id = EXCLUDED.job_id, created_at = now()"
)


async def _one(conn: AsyncDictConnection, sql: Any, args: tuple[Any, ...]) -> Any:
    return await (await conn.execute(sql, args)).fetchone()


async def create(
    conn: AsyncDictConnection,
    base_id: uuid.UUID,
    user_id: uuid.UUID,
    name: str | None,
    url_and_secret: tuple[str, str],
) -> str:
    url, secret = url_and_secret
    row = await _one(conn, CREATE, (base_id, user_id, name, url, secret))
    assert row is not None
    return row["doc"]  # type: ignore[no-any-return]


async def count(conn: AsyncDictConnection, user_id: uuid.UUID) -> int:
    row = await _one(conn, COUNT, (user_id,))
    return int(row["n"]) if row else 0


async def page(
    conn: AsyncDictConnection, user_id: uuid.UUID, limit: int, offset: int
) -> tuple[str, int]:
    """One page of the user's bases (newest first): JSON text and row count."""
    row = await _one(conn, LIST, (user_id, limit, offset))
    assert row is not None
    return row["doc"], row["n"]


async def show(conn: AsyncDictConnection, user_id: uuid.UUID, base_id: uuid.UUID) -> str | None:
    row = await _one(conn, SHOW, (base_id, user_id))
    return row["doc"] if row else None


async def delete(conn: AsyncDictConnection, user_id: uuid.UUID, base_id: uuid.UUID) -> bool:
    """The base and its cached results (the jobs stay until they expire); False if none."""
    cur = await conn.execute(DELETE, (base_id, user_id))
    return cur.rowcount > 0


async def signer(conn: AsyncDictConnection, base_id: uuid.UUID) -> dict[str, Any] | None:
    """user_id, url and secret of the base, or None (no such base, or its owner disabled)."""
    return await _one(conn, SIGNER, (base_id,))  # type: ignore[no-any-return]


async def cached(
    conn: AsyncDictConnection, base_id: uuid.UUID, cache_key: str, windows: tuple[float, float]
) -> uuid.UUID | None:
    """The job the base's ``cache_key`` ran, while it counts (``CACHED``): ``windows`` are
    (seconds its exported URLs stay valid, seconds it must still have before it expires)."""
    row = await _one(conn, CACHED, (base_id, cache_key, *windows))
    return row["job_id"] if row else None


async def remember(
    conn: AsyncDictConnection, base_id: uuid.UUID, cache_key: str, job_id: uuid.UUID
) -> None:
    await conn.execute(REMEMBER, (base_id, cache_key, job_id))
