"""Users and their API keys (only a SHA-256 of each key is stored)."""

from __future__ import annotations

from typing import Any

from appliance.db import AsyncPool, DictConnection

KEY_LOOKUP = "SELECT user_id, scopes FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL"


async def principal_of(pool: AsyncPool, digest: bytes) -> dict[str, Any] | None:
    """The user id and scopes of a live key, by its hash."""
    async with pool.connection() as conn:
        return await (await conn.execute(KEY_LOOKUP, (digest,))).fetchone()


def create_user_key(
    conn: DictConnection, email: str, digest: bytes, prefix: str, scopes: list[str]
) -> None:
    """The user (created if new) gets a key with this hash, shown prefix and scopes."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO users (email) VALUES (%s) ON CONFLICT (email) DO UPDATE"
            " SET email = EXCLUDED.email RETURNING id",
            (email,),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO api_keys (user_id, key_hash, prefix, scopes) VALUES (%s, %s, %s, %s)",
            (row["id"], digest, prefix, scopes),
        )
