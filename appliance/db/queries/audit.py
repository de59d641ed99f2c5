"""The audit log (migrations 0015, 0027): appends through appliance_audit_append (into
audit_pending), sealing onto the chain, reads in chain order, the chain head, retention's
anchors and prunes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from appliance.db import AsyncDictConnection, DictConnection

APPEND = "SELECT appliance_audit_append(%s, %s, %s, %s, %s) AS seq"
# A download names its object, not its user: the user is whoever holds the file.
APPEND_DOWNLOAD = (
    "SELECT appliance_audit_append('file.downloaded',"
    " (SELECT user_id FROM task_files WHERE sha256 = %s LIMIT 1), %s, %s, %s) AS seq"
)
SEAL = "SELECT appliance_audit_seal(%s) AS sealed"
CHAIN = (
    "SELECT seq, at, event, user_id, actor, subject, details, prev, hash FROM audit_log"
    " WHERE seq > %s ORDER BY seq"
)
HEAD = "SELECT seq, hash FROM audit_head"
LAST_ANCHOR = (
    "SELECT seq, hash, records, pruned_at, signature FROM audit_anchors ORDER BY seq DESC LIMIT 1"
)
SHOW = (
    "SELECT a.seq, a.at, a.event, a.user_id, u.email, a.actor, a.subject, a.details"
    " FROM audit_log a LEFT JOIN users u ON u.id = a.user_id"
    " WHERE (%(user)s::uuid IS NULL OR a.user_id = %(user)s)"
    " AND (%(since)s::timestamptz IS NULL OR a.at >= %(since)s)"
    " AND (%(event)s::text IS NULL OR a.event = %(event)s OR a.event LIKE %(event)s || '.%%')"
    " ORDER BY a.seq DESC LIMIT %(limit)s"
)
USER_BY_EMAIL = "SELECT id FROM users WHERE email = %s"
OF_USER = (
    "SELECT seq, at, event, actor, subject, details FROM audit_log WHERE user_id = %s ORDER BY seq"
)
# The prefix retention removes: everything up to the last record older than the cutoff.
PRUNE_END = (
    "SELECT seq, hash, (SELECT count(*) FROM audit_log WHERE seq <= l.seq) AS records"
    " FROM audit_log l WHERE at < %s ORDER BY seq DESC LIMIT 1"
)
ALLOW_PRUNING = "SELECT set_config('appliance.audit_pruning', 'on', true)"
PRUNE = "DELETE FROM audit_log WHERE seq <= %s"
ANCHOR = "INSERT INTO audit_anchors (seq, hash, records, signature) VALUES (%s, %s, %s, %s)"


def append(
    conn: DictConnection, event: str, user_id: Any, actor: str, subject: str, details: str
) -> int:
    row = conn.execute(APPEND, (event, user_id, actor, subject, details)).fetchone()
    assert row is not None
    return int(row["seq"])


async def append_async(
    conn: AsyncDictConnection, event: str, user_id: Any, actor: str, subject: str, details: str
) -> int:
    row = await (await conn.execute(APPEND, (event, user_id, actor, subject, details))).fetchone()
    assert row is not None
    return int(row["seq"])


async def append_download(
    conn: AsyncDictConnection, sha256: str, actor: str, subject: str, details: str
) -> None:
    await conn.execute(APPEND_DOWNLOAD, (sha256, actor, subject, details))


def seal(conn: DictConnection, limit: int) -> int:
    """Chain up to ``limit`` committed pending records onto the log; how many."""
    row = conn.execute(SEAL, (limit,)).fetchone()
    assert row is not None
    return int(row["sealed"])


def chain(conn: DictConnection, after: int) -> Iterator[dict[str, Any]]:
    """The records after sequence number ``after``, in chain order, read in batches (a
    server-side cursor: the log may be long). Needs a transaction."""
    with conn.cursor(name="audit_chain") as cur:
        cur.itersize = 2000
        cur.execute(CHAIN, (after,))
        yield from cur


def head(conn: DictConnection) -> dict[str, Any]:
    row = conn.execute(HEAD).fetchone()
    assert row is not None
    return row


def last_anchor(conn: DictConnection) -> dict[str, Any] | None:
    return conn.execute(LAST_ANCHOR).fetchone()


def of_user(conn: DictConnection, user_id: Any) -> list[dict[str, Any]]:
    """Every record about one user, in chain order (a user's export)."""
    return conn.execute(OF_USER, (user_id,)).fetchall()


def user_by_email(conn: DictConnection, email: str) -> Any:
    row = conn.execute(USER_BY_EMAIL, (email,)).fetchone()
    return None if row is None else row["id"]


def show(
    conn: DictConnection, user_id: Any, since: datetime | None, event: str | None, limit: int
) -> list[dict[str, Any]]:
    args = {"user": user_id, "since": since, "event": event, "limit": limit}
    return conn.execute(SHOW, args).fetchall()


def prune_end(conn: DictConnection, cutoff: datetime) -> dict[str, Any] | None:
    return conn.execute(PRUNE_END, (cutoff,)).fetchone()


def prune(conn: DictConnection, seq: int, hash_: str, records: int, signature: str) -> None:
    """In a transaction: delete the records up to ``seq`` and keep their anchor."""
    conn.execute(ALLOW_PRUNING)
    conn.execute(PRUNE, (seq,))
    conn.execute(ANCHOR, (seq, hash_, records, signature))
