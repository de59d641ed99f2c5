"""Idempotency keys (migration 0026): the response a user's key answered with, kept with what
its request created."""

from __future__ import annotations

import uuid
from typing import Any

from appliance.db import AsyncDictConnection

# The class of the two-key advisory locks that mark a key's request in progress; the second
# key is a hash of user and key (a collision only makes a request wait for a 409's retry).
LOCK_CLASS = 0x69646D70  # "idmp"
# Taken in the transaction that creates; a dead api host's is ended by the API pool's idle
# limit (``db.API_IDLE_LIMIT``), which frees the key.
LOCK = "SELECT pg_try_advisory_xact_lock(%s, hashtext(%s::text || ' ' || %s)) AS free"
FIND = (
    "SELECT fingerprint, status, body FROM idempotency_keys"
    " WHERE user_id = %s AND key = %s AND expires_at > now()"
)
# Holding the key's lock and having seen no live row: a conflict is an expired row not yet
# pruned, which the new request replaces.
STORE = (
    "INSERT INTO idempotency_keys AS k (user_id, key, fingerprint, status, body, expires_at)"
    " VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))"
    " ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,"
    " status = EXCLUDED.status, body = EXCLUDED.body, created_at = now(),"
    " expires_at = EXCLUDED.expires_at"
)
PRUNE = "DELETE FROM idempotency_keys WHERE expires_at < now()"


async def lock(conn: AsyncDictConnection, user_id: uuid.UUID, key: str) -> bool:
    """In a transaction: whether this user's key was free (now held to the transaction's end)."""
    args = (LOCK_CLASS, user_id, key)
    row = await (await conn.execute(LOCK, args)).fetchone()
    return bool(row and row["free"])


async def find(conn: AsyncDictConnection, user_id: uuid.UUID, key: str) -> dict[str, Any] | None:
    """The live row of this user's key: fingerprint, status, body."""
    return await (await conn.execute(FIND, (user_id, key))).fetchone()  # type: ignore[no-any-return]


async def store(
    conn: AsyncDictConnection,
    user_id: uuid.UUID,
    key: str,
    fingerprint: str,
    answer: tuple[int, str],
    hours: float,
) -> None:
    status, body = answer
    await conn.execute(STORE, (user_id, key, fingerprint, status, body, hours * 3600))
