"""Webhooks and their outbox (migration 0008): what the API reads and changes (a user's
webhooks and delivery log, JSON built by Postgres), and what senders claim and record."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from appliance.db import DEAD_PEER_SETTINGS, AsyncDictConnection, SyncPool

_WEBHOOK_JSON = (
    "json_build_object('id', w.id, 'url', w.url, 'events', w.events,"
    " 'signing_secret', w.signing_secret, 'disabled', w.disabled_at IS NOT NULL,"
    " 'disabled_at', date_trunc('second', w.disabled_at),"
    " 'created_at', date_trunc('second', w.created_at))"
)
_DELIVERY_JSON = (
    "json_build_object('id', d.id, 'webhook_id', d.webhook_id, 'job_id', d.job_id,"
    " 'event', d.event, 'url', d.url, 'status', d.status, 'attempts', d.attempts,"
    " 'response_code', d.response_code, 'last_error', d.last_error,"
    " 'created_at', date_trunc('second', d.created_at),"
    " 'next_attempt_at', CASE WHEN d.status = 'pending' THEN date_trunc('second', d.next_at) END,"
    " 'ended_at', date_trunc('second', d.ended_at))"
)
CREATE = (
    "INSERT INTO webhooks AS w (user_id, url, events, signing_secret) VALUES (%s, %s, %s, %s)"  # noqa: S608 (constants only)
    f" RETURNING {_WEBHOOK_JSON}::text AS doc"
)
COUNT = "SELECT count(*) AS n FROM webhooks WHERE user_id = %s"
LIST = (
    f"SELECT coalesce(json_agg({_WEBHOOK_JSON} ORDER BY w.created_at DESC, w.id DESC), '[]')"  # noqa: S608 (constants only)
    "::text AS doc, count(*) AS n FROM (SELECT * FROM webhooks WHERE user_id = %s"
    " AND (%s::text IS NULL OR url = %s) ORDER BY created_at DESC, id DESC"
    " LIMIT %s OFFSET %s) w"
)
RECENT_DELIVERIES = 20  # shown with a webhook; the whole log is paged through deliveries
SHOW = (
    f"SELECT ({_WEBHOOK_JSON}::jsonb || jsonb_build_object('deliveries',"  # noqa: S608 (constants only)
    f" (SELECT coalesce(jsonb_agg({_DELIVERY_JSON} ORDER BY d.seq DESC), '[]')"
    " FROM (SELECT * FROM webhook_deliveries WHERE webhook_id = w.id"
    f" ORDER BY seq DESC LIMIT {RECENT_DELIVERIES}) d)))::text AS doc"
    " FROM webhooks w WHERE w.id = %s AND w.user_id = %s"
)
DELETE = "DELETE FROM webhooks WHERE id = %s AND user_id = %s"
DELIVERIES = (
    f"SELECT coalesce(json_agg({_DELIVERY_JSON} ORDER BY d.seq DESC), '[]')::text AS doc,"  # noqa: S608 (constants only)
    " count(*) AS n FROM (SELECT * FROM webhook_deliveries WHERE user_id = %s"
    " AND (%s::uuid IS NULL OR webhook_id = %s) AND (%s::uuid IS NULL OR job_id = %s)"
    " AND (%s::text IS NULL OR status = %s) ORDER BY seq DESC LIMIT %s OFFSET %s) d"
)
# The user's secret for their jobs' webhook_url, sealed (migration 0018): the candidate is
# kept when the user has none yet; either way the one they have is returned. Racing another
# caller that stores its candidate first, the statement updates nothing and its snapshot
# still shows no secret: it answers NULL for an existing user, and is run again (RACED).
SIGNING_SECRET = (
    "WITH made AS (UPDATE users SET webhook_signing_secret = %s WHERE id = %s"  # noqa: S105
    " AND webhook_signing_secret IS NULL RETURNING webhook_signing_secret AS secret)"
    " SELECT secret FROM made UNION ALL SELECT webhook_signing_secret FROM users"
    " WHERE id = %s AND NOT EXISTS (SELECT FROM made)"
)
RACED = 3  # tries of SIGNING_SECRET; the second reads the winner's secret

# Senders. A claim takes due rows no other sender holds, counts the attempt and moves next_at
# past the time an attempt can take (the lease): the row is due again if the sender dies.
CLAIM = (
    "WITH due AS (SELECT id FROM webhook_deliveries WHERE status = 'pending'"
    " AND next_at <= now() ORDER BY next_at, seq LIMIT %s FOR UPDATE SKIP LOCKED),"
    " claimed AS (UPDATE webhook_deliveries d SET attempts = d.attempts + 1,"
    " next_at = now() + make_interval(secs => %s) FROM due WHERE d.id = due.id"
    " RETURNING d.id, d.webhook_id, d.user_id, d.url, d.body, d.attempts)"
    " SELECT c.id, c.webhook_id, c.user_id, c.url, c.body, c.attempts,"
    " coalesce(w.signing_secret, u.webhook_signing_secret) AS secret"
    " FROM claimed c JOIN users u ON u.id = c.user_id"
    " LEFT JOIN webhooks w ON w.id = c.webhook_id"
)
# Each outcome is written only while the row is still this attempt's (a sender whose lease
# lapsed while it waited on a slow receiver does not overwrite a later attempt's result).
DELIVERED = (
    "UPDATE webhook_deliveries SET status = 'delivered', response_code = %s, last_error = NULL,"
    " ended_at = now() WHERE id = %s AND attempts = %s AND status = 'pending'"
)
RETRY = (
    "UPDATE webhook_deliveries SET response_code = %s, last_error = %s,"
    " next_at = now() + make_interval(secs => %s)"
    " WHERE id = %s AND attempts = %s AND status = 'pending'"
)
FAILED = (
    "UPDATE webhook_deliveries SET status = 'failed', response_code = %s, last_error = %s,"
    " ended_at = now() WHERE id = %s AND attempts = %s AND status = 'pending'"
)
DISABLE = "UPDATE webhooks SET disabled_at = coalesce(disabled_at, now()) WHERE id = %s"
FAIL_PENDING_OF = (
    "UPDATE webhook_deliveries SET status = 'failed', last_error = %s, ended_at = now()"
    " WHERE webhook_id = %s AND status = 'pending'"
)
PURGE = (
    "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries"
    " WHERE ended_at < now() - make_interval(secs => %s) LIMIT 5000)"
)
NEXT_DUE = (
    "SELECT extract(epoch FROM min(next_at) - now()) AS wait FROM webhook_deliveries"
    " WHERE status = 'pending'"
)
LISTEN = "LISTEN appliance_webhooks"  # appliance_queue_webhooks notifies it


async def _one(conn: AsyncDictConnection, sql: Any, args: tuple[Any, ...]) -> Any:
    return await (await conn.execute(sql, args)).fetchone()


# -- the API ------------------------------------------------------------------------------
async def create(
    conn: AsyncDictConnection, user_id: uuid.UUID, url: str, events: list[str], secret: str
) -> str:
    row = await _one(conn, CREATE, (user_id, url, events, secret))
    assert row is not None
    return row["doc"]  # type: ignore[no-any-return]


async def count(conn: AsyncDictConnection, user_id: uuid.UUID) -> int:
    row = await _one(conn, COUNT, (user_id,))
    return int(row["n"]) if row else 0


async def page(
    conn: AsyncDictConnection, user_id: uuid.UUID, url: str | None, limit: int, offset: int
) -> tuple[str, int]:
    """One page of the user's webhooks (newest first): JSON text and row count."""
    row = await _one(conn, LIST, (user_id, url, url, limit, offset))
    assert row is not None
    return row["doc"], row["n"]


async def show(conn: AsyncDictConnection, user_id: uuid.UUID, webhook_id: uuid.UUID) -> str | None:
    """The webhook with its latest deliveries, or None if the user has no such webhook."""
    row = await _one(conn, SHOW, (webhook_id, user_id))
    return row["doc"] if row else None


async def delete(conn: AsyncDictConnection, user_id: uuid.UUID, webhook_id: uuid.UUID) -> bool:
    """The webhook and its deliveries (pending ones are never sent); False if none."""
    cur = await conn.execute(DELETE, (webhook_id, user_id))
    return cur.rowcount > 0


async def deliveries(
    conn: AsyncDictConnection,
    user_id: uuid.UUID,
    filters: tuple[uuid.UUID | None, uuid.UUID | None, str | None],
    limit: int,
    offset: int,
) -> tuple[str, int]:
    """One page of the user's delivery log (newest first), filtered by (webhook id, job id,
    status): JSON text and row count."""
    webhook_id, job_id, status = filters
    args = (user_id, webhook_id, webhook_id, job_id, job_id, status, status, limit, offset)
    row = await _one(conn, DELIVERIES, args)
    assert row is not None
    return row["doc"], row["n"]


async def signing_secret(
    conn: AsyncDictConnection, user_id: uuid.UUID, candidate: str
) -> str | None:
    """The user's sealed secret, ``candidate`` if they had none; None: no such user."""
    for _ in range(RACED):
        row = await _one(conn, SIGNING_SECRET, (candidate, user_id, user_id))
        if row is None or row["secret"] is not None:
            break
    return row["secret"] if row else None


def signing_secret_sync(pool: SyncPool, user_id: uuid.UUID, candidate: str) -> str | None:
    with pool.connection() as conn:
        for _ in range(RACED):
            row = conn.execute(SIGNING_SECRET, (candidate, user_id, user_id)).fetchone()
            if row is None or row["secret"] is not None:
                break
    return row["secret"] if row else None


# -- senders ------------------------------------------------------------------------------
def claim(pool: SyncPool, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
    """Up to ``limit`` due deliveries, each now this sender's attempt (id, webhook_id,
    user_id, url, body, attempts, secret: sealed, or None when the user has none yet)."""
    with pool.connection() as conn:
        return conn.execute(CLAIM, (limit, lease_seconds)).fetchall()


def delivered(pool: SyncPool, delivery: Any, attempt: int, code: int) -> None:
    with pool.connection() as conn:
        conn.execute(DELIVERED, (code, delivery, attempt))


def retry(
    pool: SyncPool, delivery: Any, attempt: int, outcome: tuple[int | None, str], delay: float
) -> None:
    code, error = outcome
    with pool.connection() as conn:
        conn.execute(RETRY, (code, error, delay, delivery, attempt))


def failed(pool: SyncPool, delivery: Any, attempt: int, outcome: tuple[int | None, str]) -> None:
    code, error = outcome
    with pool.connection() as conn:
        conn.execute(FAILED, (code, error, delivery, attempt))


def disable(pool: SyncPool, webhook_id: Any, reason: str) -> None:
    """The webhook sends nothing more: disabled, and its pending deliveries failed."""
    with pool.connection() as conn, conn.transaction():
        conn.execute(DISABLE, (webhook_id,))
        conn.execute(FAIL_PENDING_OF, (reason, webhook_id))


def purge(pool: SyncPool, keep_seconds: float) -> int:
    """Deletes deliveries that ended more than ``keep_seconds`` ago (a batch at a time)."""
    with pool.connection() as conn:
        return conn.execute(PURGE, (keep_seconds,)).rowcount


def next_due(pool: SyncPool) -> float | None:
    """Seconds until the next pending delivery is due (<= 0: now); None when none is."""
    with pool.connection() as conn:
        row = conn.execute(NEXT_DUE).fetchone()
    return None if row is None or row["wait"] is None else float(row["wait"])


def listening(database_url: str) -> psycopg.Connection[Any]:
    """A connection of its own that hears of new deliveries (``conn.notifies()``) once they
    are committed. The caller closes it."""
    conn = psycopg.connect(database_url, autocommit=True, **DEAD_PEER_SETTINGS)
    try:
        conn.execute(LISTEN)
    except BaseException:
        conn.close()
        raise
    return conn
