"""Everything held about one user, to export it or to erase it (conversions/personal.py).

What the tables hold per user: ``users`` (the account), ``api_keys`` (metadata; the key's
hash is never exported), ``data_keys`` (metadata; never the wrapped key), ``jobs``,
``tasks`` (as the API shows them: sealed secrets left out), ``task_files`` (their files),
``usage_daily`` (the sum of ``usage_counts``' rows; no reference to ``users``: it is kept
for billing after a job goes, and deleted here), ``webhooks``, ``webhook_deliveries``,
``signed_url_bases``, ``invitations`` (to the web UI, by e-mail: no reference to ``users``
either, deleted here; only a hash of the token). Everything else goes with the user by
``ON DELETE CASCADE``. The password's hash (web UI) is never exported.
"""

from __future__ import annotations

import uuid
from typing import Any

from appliance.db import DictConnection

USER_FOR_UPDATE = "SELECT id FROM users WHERE email = %s FOR UPDATE"
USER_ID_FOR_UPDATE = "SELECT id FROM users WHERE id = %s FOR UPDATE"
ACCOUNT = (
    "SELECT id, email, username, created_at, disabled_at, operator, quota_minutes_per_day,"
    " quota_minutes_per_month, quota_stored_bytes FROM users WHERE id = %s"
)
# One query per section of the export: (name, statement with one %s for the user id).
SECTIONS = {
    "api_keys": (
        "SELECT id, name, prefix, scopes, created_at, expires_at, revoked_at FROM api_keys"
        " WHERE user_id = %s ORDER BY created_at"
    ),
    "data_keys": (
        "SELECT id, master_key_id, created_at FROM data_keys WHERE user_id = %s ORDER BY created_at"
    ),
    "jobs": (
        "SELECT id, tag, status, webhook_url, created_at, started_at, ended_at, expires_at"
        " FROM jobs WHERE user_id = %s ORDER BY created_at"
    ),
    "tasks": (
        "SELECT appliance_task_json(t) AS task FROM tasks t WHERE user_id = %s ORDER BY t.seq"
    ),
    "files": (
        "SELECT task_id, position, filename, size, sha256 AS address FROM task_files"
        " WHERE user_id = %s ORDER BY task_id, position"
    ),
    "usage": (
        "SELECT day, jobs_created, tasks_ended, tasks_failed, cpu_seconds, bytes_in,"
        " bytes_out, bytes_exported, stored_byte_hours FROM usage_daily WHERE user_id = %s"
        " ORDER BY day"
    ),
    "webhooks": (
        "SELECT id, url, events, created_at, disabled_at FROM webhooks WHERE user_id = %s"
        " ORDER BY created_at"
    ),
    "webhook_deliveries": (
        "SELECT id, webhook_id, job_id, event, url, body, status, attempts, response_code,"
        " last_error, created_at, ended_at FROM webhook_deliveries WHERE user_id = %s"
        " ORDER BY seq"
    ),
    "signed_url_bases": (
        "SELECT id, name, url, created_at FROM signed_url_bases WHERE user_id = %s"
        " ORDER BY created_at"
    ),
    "invitations": (
        "SELECT operator, created_at, expires_at, used_at FROM invitations"
        " WHERE email = (SELECT email FROM users WHERE id = %s) ORDER BY created_at"
    ),
}
# Erasing: the cached results made from the user's files (their inputs or outputs), then the
# user (the cascade takes the rest), their usage, and the stored objects this transaction
# left without a reference (db/queries/files.py's RELEASED_NOW).
FORGET_CACHE = (
    "DELETE FROM conversion_cache WHERE input_sha256 IN"
    " (SELECT sha256 FROM task_files WHERE user_id = %s)"
    " OR output_sha256 IN (SELECT sha256 FROM task_files WHERE user_id = %s)"
)
FORGET_INVITATIONS = "DELETE FROM invitations WHERE email = (SELECT email FROM users WHERE id = %s)"
DELETE_USER = "DELETE FROM users WHERE id = %s"
DELETE_USAGE = "DELETE FROM usage_counts WHERE user_id = %s"
RELEASED_NOW = (
    "DELETE FROM files WHERE sha256 IN (SELECT sha256 FROM files"
    " WHERE refcount <= 0 AND released_at = now() FOR UPDATE) RETURNING sha256"
)


def lock_user(conn: DictConnection, who: str | uuid.UUID) -> uuid.UUID | None:
    """The user's id, by e-mail or id, their row locked till the transaction ends."""
    sql = USER_ID_FOR_UPDATE if isinstance(who, uuid.UUID) else USER_FOR_UPDATE
    row = conn.execute(sql, (who,)).fetchone()
    return None if row is None else row["id"]


def account(conn: DictConnection, user_id: uuid.UUID) -> dict[str, Any] | None:
    return conn.execute(ACCOUNT, (user_id,)).fetchone()


def section(conn: DictConnection, name: str, user_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = conn.execute(SECTIONS[name], (user_id,)).fetchall()
    return [r["task"] for r in rows] if name == "tasks" else rows


def erase(conn: DictConnection, user_id: uuid.UUID) -> list[str]:
    """In a transaction: the user and everything of theirs deleted; the addresses of the
    stored objects left without any reference (their rows deleted, locked till commit)."""
    conn.execute(FORGET_CACHE, (user_id, user_id))
    conn.execute(FORGET_INVITATIONS, (user_id,))
    conn.execute(DELETE_USER, (user_id,))
    conn.execute(DELETE_USAGE, (user_id,))
    return [r["sha256"] for r in conn.execute(RELEASED_NOW).fetchall()]
