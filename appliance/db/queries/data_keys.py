"""Data keys (``data_keys``), always wrapped by a master key; see security/envelope.py."""

from __future__ import annotations

import uuid

import msgspec

from appliance.db import DictConnection

# The first key made for a scope wins; a loser of that race reads the winner's, on a second
# try when the winner committed after this statement's snapshot was taken (see ``ensure``).
ENSURE = (
    "WITH made AS (INSERT INTO data_keys (id, scope, user_id, master_key_id, wrapped)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (scope) DO NOTHING"
    " RETURNING id, scope, master_key_id, wrapped)"
    " SELECT * FROM made UNION ALL"
    " SELECT id, scope, master_key_id, wrapped FROM data_keys WHERE scope = %s"
    " AND NOT EXISTS (SELECT FROM made)"
)
BY_ID = "SELECT id, scope, master_key_id, wrapped FROM data_keys WHERE id = %s"
NOT_UNDER = "SELECT id, scope, master_key_id, wrapped FROM data_keys WHERE master_key_id <> %s"
REWRAP = (
    "UPDATE data_keys SET master_key_id = %s, wrapped = %s WHERE id = %s AND master_key_id = %s"
)
BY_MASTER = "SELECT master_key_id, count(*) AS n FROM data_keys GROUP BY 1 ORDER BY 1"
OF_USER = "SELECT id, master_key_id, created_at FROM data_keys WHERE user_id = %s"


class WrappedKey(msgspec.Struct, frozen=True):
    id: uuid.UUID
    scope: str
    master_key_id: str
    wrapped: bytes


def ensure(
    conn: DictConnection,
    key_id: uuid.UUID,
    scope: str,
    user_id: uuid.UUID | None,
    master_key_id: str,
    wrapped: bytes,
) -> WrappedKey:
    """The scope's key: this one when it had none, else the one it has. In autocommit.

    A statement racing another that inserts the same scope waits for it, then inserts nothing;
    if the other committed, its row is not in this statement's snapshot either, so it returns
    no row. Run again, in a snapshot of its own, it reads that row."""
    for _ in range(3):
        row = conn.execute(
            ENSURE, (key_id, scope, user_id, master_key_id, wrapped, scope)
        ).fetchone()
        if row is not None:
            return msgspec.convert(row, WrappedKey)
    raise RuntimeError(f"no data key for {scope!r} after three tries")


def by_id(conn: DictConnection, key_id: uuid.UUID) -> WrappedKey | None:
    row = conn.execute(BY_ID, (key_id,)).fetchone()
    return None if row is None else msgspec.convert(row, WrappedKey)


def not_under(conn: DictConnection, master_key_id: str) -> list[WrappedKey]:
    return [msgspec.convert(r, WrappedKey) for r in conn.execute(NOT_UNDER, (master_key_id,))]


def rewrap(
    conn: DictConnection, key_id: uuid.UUID, old_master: str, new_master: str, wrapped: bytes
) -> int:
    """Store the key wrapped anew, unless another rewrap moved it first; 1 if stored."""
    return conn.execute(REWRAP, (new_master, wrapped, key_id, old_master)).rowcount


def count_by_master(conn: DictConnection) -> dict[str, int]:
    return {r["master_key_id"]: r["n"] for r in conn.execute(BY_MASTER)}


def of_user(conn: DictConnection, user_id: uuid.UUID) -> list[dict[str, object]]:
    """The user's key's metadata (never the key): id, master key id, created_at."""
    return conn.execute(OF_USER, (user_id,)).fetchall()
