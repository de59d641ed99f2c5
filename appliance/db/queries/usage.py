"""Usage per user and UTC day (``usage_daily``, migrations 0011 and 0028), its export for
billing, and the quotas an operator sets per user."""

from __future__ import annotations

from datetime import date
from typing import Any

from appliance.db import DictConnection, SyncPool

# The counted columns, in export order.
COLUMNS = (
    "jobs_created",
    "tasks_ended",
    "tasks_failed",
    "cpu_seconds",
    "bytes_in",
    "bytes_out",
    "bytes_exported",
    "stored_byte_hours",
)
FLUSH_STORED = "SELECT appliance_flush_stored_usage() AS n"
FOLD = "SELECT appliance_fold_usage() AS n"
# Days from..to (both included), of one user (by email) or of all; a deleted user's rows stay,
# with no email.
EXPORT = (
    "SELECT u.email, d.user_id, d.day, "  # noqa: S608 (constant column names only)
    + ", ".join(f"d.{c}" for c in COLUMNS)
    + " FROM usage_daily d LEFT JOIN users u ON u.id = d.user_id"
    " WHERE d.day BETWEEN %(from)s AND %(to)s"
    " AND (%(email)s::text IS NULL OR u.email = %(email)s)"
    " ORDER BY d.day, u.email NULLS LAST, d.user_id"
)
SET_QUOTA = (
    "UPDATE users SET quota_minutes_per_day = %s, quota_minutes_per_month = %s,"
    " quota_stored_bytes = %s WHERE email = %s"
)
QUOTA = (
    "SELECT quota_minutes_per_day, quota_minutes_per_month, quota_stored_bytes"
    " FROM users WHERE email = %s"
)


def flush_stored(pool: SyncPool) -> int:
    """The stored byte-hours accrued until now go into today's rows; how many users had some."""
    with pool.connection() as conn:
        row = conn.execute(FLUSH_STORED).fetchone()
    return int(row["n"]) if row else 0


def fold(pool: SyncPool) -> int:
    """Each past day's counts folded into one row per user (migration 0028: a day is counted
    in several rows per user while it runs); how many rows went."""
    with pool.connection() as conn:
        row = conn.execute(FOLD).fetchone()
    return int(row["n"]) if row else 0


def export(conn: DictConnection, start: date, end: date, email: str | None) -> list[dict[str, Any]]:
    return conn.execute(EXPORT, {"from": start, "to": end, "email": email}).fetchall()


def quota(conn: DictConnection, email: str) -> dict[str, Any] | None:
    """A user's own quotas (None in a column: the setting's default), or None: no such user."""
    return conn.execute(QUOTA, (email,)).fetchone()


def set_quota(
    conn: DictConnection,
    email: str,
    minutes_per_day: int | None,
    minutes_per_month: int | None,
    stored_bytes: int | None,
) -> None:
    conn.execute(SET_QUOTA, (minutes_per_day, minutes_per_month, stored_bytes, email))
