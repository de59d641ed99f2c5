"""Users and their API keys (only a SHA-256 of each key is stored)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from appliance.db import AsyncPool, DictConnection

# A key works while it is not revoked, not expired and its user not disabled.
KEY_LOOKUP = (
    "SELECT k.user_id, k.scopes, k.expires_at FROM api_keys k JOIN users u ON u.id = k.user_id"
    " WHERE k.key_hash = %s AND k.revoked_at IS NULL"
    " AND (k.expires_at IS NULL OR k.expires_at > now()) AND u.disabled_at IS NULL"
)
# users/me, with the user's own quotas and the CPU seconds used today and this month (UTC).
USER_DOC = (
    "SELECT id, coalesce(username, split_part(email, '@', 1)) AS username, email, created_at,"
    " quota_minutes_per_day, quota_minutes_per_month, quota_stored_bytes,"
    " m.cpu_today, m.cpu_month FROM users u,"
    " LATERAL (SELECT coalesce(sum(cpu_seconds) FILTER (WHERE day = d.today), 0) AS cpu_today,"
    " coalesce(sum(cpu_seconds), 0) AS cpu_month FROM usage_daily,"
    " (SELECT (now() AT TIME ZONE 'UTC')::date AS today) d"
    " WHERE user_id = u.id AND day >= date_trunc('month', d.today)::date) m"
    " WHERE id = %s"
)
# created: whether this statement made the user (xmax is 0 on a row it inserted)
ENSURE_USER = (
    "INSERT INTO users (email, username) VALUES (%s, split_part(%s, '@', 1))"
    " ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email"
    " RETURNING id, (xmax = 0) AS created"
)
USER_ID = "SELECT id FROM users WHERE email = %s"
LIST_USERS = (
    "SELECT u.id, u.email, u.username, u.created_at, u.disabled_at,"
    " (SELECT count(*) FROM api_keys k WHERE k.user_id = u.id AND k.revoked_at IS NULL) AS keys"
    " FROM users u ORDER BY u.created_at, u.email"
)
DISABLE_USER = "UPDATE users SET disabled_at = now() WHERE email = %s AND disabled_at IS NULL"
ENABLE_USER = "UPDATE users SET disabled_at = NULL WHERE email = %s"
DELETE_USER = "DELETE FROM users WHERE email = %s RETURNING id"
LIST_KEYS = (
    "SELECT k.id, u.email, k.name, k.prefix, k.scopes, k.created_at, k.expires_at,"
    " k.revoked_at FROM api_keys k JOIN users u ON u.id = k.user_id"
    " WHERE %s::text IS NULL OR u.email = %s ORDER BY k.created_at"
)
REVOKE_KEY = (
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
    " RETURNING key_hash, user_id"
)


async def principal_of(pool: AsyncPool, digest: bytes) -> dict[str, Any] | None:
    """The user id, scopes and expiry of a working key, by its hash."""
    async with pool.connection() as conn:
        return await (await conn.execute(KEY_LOOKUP, (digest,))).fetchone()


async def user_doc(pool: AsyncPool, user_id: uuid.UUID) -> dict[str, Any] | None:
    async with pool.connection() as conn:
        return await (await conn.execute(USER_DOC, (user_id,))).fetchone()


def ensure_user(conn: DictConnection, email: str) -> uuid.UUID:
    """The user with this email, created if new."""
    return ensure_user_created(conn, email)[0]


def ensure_user_created(conn: DictConnection, email: str) -> tuple[uuid.UUID, bool]:
    """The user with this email, created if new; and whether it was."""
    row = conn.execute(ENSURE_USER, (email, email)).fetchone()
    assert row is not None
    return row["id"], bool(row["created"])


class NewKey(NamedTuple):
    id: uuid.UUID
    user_id: uuid.UUID
    user_created: bool  # the key's user was made with it


def user_id(conn: DictConnection, email: str) -> uuid.UUID | None:
    row = conn.execute(USER_ID, (email,)).fetchone()
    return None if row is None else row["id"]


def create_user_key(
    conn: DictConnection,
    email: str,
    digest: bytes,
    prefix: str,
    scopes: list[str],
    name: str | None = None,
    expires_at: datetime | None = None,
) -> NewKey:
    """The user (created if new) gets a key with this hash, shown prefix, scopes, name and
    expiry. In a transaction."""
    with conn.transaction():
        owner, created = ensure_user_created(conn, email)
        row = conn.execute(
            "INSERT INTO api_keys (user_id, key_hash, prefix, scopes, name, expires_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (owner, digest, prefix, scopes, name, expires_at),
        ).fetchone()
    assert row is not None
    return NewKey(row["id"], owner, created)


def list_users(conn: DictConnection) -> list[dict[str, Any]]:
    return conn.execute(LIST_USERS).fetchall()


def set_disabled(conn: DictConnection, email: str, disabled: bool) -> bool:
    """Disable (or enable again) the user; False when there is no such user or nothing
    changed."""
    return conn.execute(DISABLE_USER if disabled else ENABLE_USER, (email,)).rowcount > 0


def delete_user(conn: DictConnection, email: str) -> uuid.UUID | None:
    """Delete the user with their keys, jobs, tasks and files (their stored objects are
    released for the cleaner); their id, or None."""
    row = conn.execute(DELETE_USER, (email,)).fetchone()
    return None if row is None else row["id"]


def list_keys(conn: DictConnection, email: str | None) -> list[dict[str, Any]]:
    return conn.execute(LIST_KEYS, (email, email)).fetchall()


def revoke_key(conn: DictConnection, key_id: uuid.UUID) -> tuple[bytes, uuid.UUID] | None:
    """Revoke the key; its hash (to tell the API hosts) and its user, or None when there is
    no such key."""
    row = conn.execute(REVOKE_KEY, (key_id,)).fetchone()
    return None if row is None else (bytes(row["key_hash"]), row["user_id"])
