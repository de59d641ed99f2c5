"""What the web UI reads and writes of users, invitations and keys: always one user's own rows
(every statement that touches a user's data takes that user's id)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from appliance.db import AsyncPool, DictConnection

SIGN_IN = (
    "SELECT id, email, password_hash, operator FROM users WHERE email = %s AND disabled_at IS NULL"
)
SESSION_USER = "SELECT id, email, operator FROM users WHERE id = %s AND disabled_at IS NULL"
INVITED_USER = (
    "INSERT INTO users (email, username, password_hash, operator)"
    " VALUES (%s, split_part(%s, '@', 1), %s, %s)"
    " ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash,"
    " operator = users.operator OR EXCLUDED.operator RETURNING id"
)
REGISTER = (
    "INSERT INTO users (email, username, password_hash) VALUES (%s, split_part(%s, '@', 1), %s)"
    " ON CONFLICT (email) DO NOTHING RETURNING id"
)
INVITE = "INSERT INTO invitations (token_hash, email, operator, expires_at) VALUES (%s, %s, %s, %s)"
TAKE_INVITATION = (
    "UPDATE invitations SET used_at = now()"
    " WHERE token_hash = %s AND used_at IS NULL AND expires_at > now()"
    " RETURNING email, operator"
)
SHOW_INVITATION = (
    "SELECT email FROM invitations WHERE token_hash = %s AND used_at IS NULL AND expires_at > now()"
)
USER_KEYS = (
    "SELECT id, name, prefix, scopes, created_at, expires_at, revoked_at FROM api_keys"
    " WHERE user_id = %s ORDER BY created_at DESC"
)
NEW_KEY = (
    "INSERT INTO api_keys (user_id, key_hash, prefix, scopes, name)"
    " VALUES (%s, %s, %s, %s, %s) RETURNING id"
)
REVOKE_USER_KEY = (
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
    " WHERE id = %s AND user_id = %s RETURNING key_hash"
)
USAGE_DAYS = (
    "SELECT day, jobs_created, tasks_ended, tasks_failed, cpu_seconds, bytes_in, bytes_out"
    " FROM usage_daily"
    " WHERE user_id = %s AND day >= %s ORDER BY day DESC"
)
OPERATOR_USERS = (
    "SELECT u.id, u.email, u.created_at, u.disabled_at, u.operator,"
    " u.password_hash IS NOT NULL AS can_sign_in,"
    " (SELECT count(*) FROM api_keys k WHERE k.user_id = u.id AND k.revoked_at IS NULL) AS keys,"
    " (SELECT count(*) FROM jobs j WHERE j.user_id = u.id) AS jobs"
    " FROM users u ORDER BY u.created_at, u.email LIMIT %s"
)


async def one(pool: AsyncPool, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
    async with pool.connection() as conn:
        return await (await conn.execute(sql, args)).fetchone()


async def rows(pool: AsyncPool, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        return await (await conn.execute(sql, args)).fetchall()


async def sign_in_row(pool: AsyncPool, email: str) -> dict[str, Any] | None:
    return await one(pool, SIGN_IN, (email,))


async def session_user(pool: AsyncPool, user_id: uuid.UUID) -> dict[str, Any] | None:
    return await one(pool, SESSION_USER, (user_id,))


async def register(pool: AsyncPool, email: str, password_hash: str) -> uuid.UUID | None:
    """A new user with this password; None when the e-mail is taken."""
    row = await one(pool, REGISTER, (email, email, password_hash))
    return None if row is None else row["id"]


async def accept_invitation(
    pool: AsyncPool, token_hash: bytes, password_hash: str
) -> uuid.UUID | None:
    """Use the invitation (once) to set its user's password; the user's id, or None when
    the invitation is unknown, used or expired."""
    async with pool.connection() as conn, conn.transaction():
        invited = await (await conn.execute(TAKE_INVITATION, (token_hash,))).fetchone()
        if invited is None:
            return None
        email = invited["email"]
        args = (email, email, password_hash, invited["operator"])
        row = await (await conn.execute(INVITED_USER, args)).fetchone()
    assert row is not None
    return row["id"]  # type: ignore[no-any-return]


async def invitation_email(pool: AsyncPool, token_hash: bytes) -> str | None:
    row = await one(pool, SHOW_INVITATION, (token_hash,))
    return None if row is None else row["email"]


def invite(
    conn: DictConnection, token_hash: bytes, email: str, operator: bool, expires_at: datetime
) -> None:
    conn.execute(INVITE, (token_hash, email, operator, expires_at))


async def user_keys(pool: AsyncPool, user_id: uuid.UUID) -> list[dict[str, Any]]:
    return await rows(pool, USER_KEYS, (user_id,))


async def new_key(
    pool: AsyncPool, user_id: uuid.UUID, digest: bytes, prefix: str, scopes: list[str], name: str
) -> uuid.UUID:
    row = await one(pool, NEW_KEY, (user_id, digest, prefix, scopes, name))
    assert row is not None
    return row["id"]  # type: ignore[no-any-return]


async def revoke_key(pool: AsyncPool, key_id: uuid.UUID, user_id: uuid.UUID) -> bytes | None:
    """Revoke the user's own key; its hash, or None when the user has no such key."""
    row = await one(pool, REVOKE_USER_KEY, (key_id, user_id))
    return None if row is None else bytes(row["key_hash"])


async def usage_days(pool: AsyncPool, user_id: uuid.UUID, since: Any) -> list[dict[str, Any]]:
    return await rows(pool, USAGE_DAYS, (user_id, since))


async def operator_users(pool: AsyncPool, limit: int) -> list[dict[str, Any]]:
    return await rows(pool, OPERATOR_USERS, (limit,))
