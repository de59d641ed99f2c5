"""What an operator does to users and keys (``appliance users|keys ...``): each change is made
in the database, then told to the API processes (``revocation``) so that a revoked key, an
expired one and a disabled or deleted user's keys stop working at once."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from appliance.db import AsyncPool, DictConnection
from appliance.db.changes import StatusTokens, watch
from appliance.db.queries import keys as key_rows
from appliance.db.queries import web as web_rows
from appliance.errors import NotFound
from appliance.security import audit, keys, revocation
from appliance.security.quotas import Quota
from appliance.settings import Settings


class AccountError(ValueError):
    """No such user or key, or a value that cannot be taken; the message says which."""


@contextmanager
def connect(settings: Settings, *, changes_jobs: bool = False) -> Iterator[DictConnection]:
    """A connection of its own for one operator command (autocommit, rows as dicts). One
    that ``changes_jobs`` renews their status tokens as it commits (``db.changes``), so no
    API process serves their cached state after."""
    with psycopg.connect(
        settings.effective_database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        if changes_jobs:
            watch(
                conn,
                StatusTokens.at(settings.effective_redis_url, settings.job_retention_hours).renew,
            )
        yield conn


def create_user(settings: Settings, email: str) -> uuid.UUID:
    if "@" not in email:
        raise AccountError(f"{email!r} is not an email address")
    with connect(settings) as conn, conn.transaction():
        user, created = key_rows.ensure_user_created(conn, email)
        if created:
            audit.record(conn, "user.created", user, f"user:{user}", actor=audit.operator())
    return user


def invite(settings: Settings, email: str, operator: bool = False) -> str:
    """An invitation to the web UI: the link where ``email`` chooses a password (once, within
    ``web_invitation_hours``); ``operator`` also opens the operator page."""
    if "@" not in email:
        raise AccountError(f"{email!r} is not an email address")
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(hours=settings.web_invitation_hours)
    with connect(settings) as conn:
        web_rows.invite(conn, hashlib.sha256(token.encode()).digest(), email, operator, expires)
    return f"{settings.effective_public_url}/invitations/{token}"


def list_users(settings: Settings) -> list[dict[str, Any]]:
    with connect(settings) as conn:
        return key_rows.list_users(conn)


def set_disabled(settings: Settings, email: str, disabled: bool) -> bool:
    """Disable (or enable) a user; True when the API processes were told at once."""
    with connect(settings) as conn, conn.transaction():
        owner = key_rows.user_id(conn, email)
        if owner is None:
            raise AccountError(f"no user {email}")
        if key_rows.set_disabled(conn, email, disabled):
            event = "user.disabled" if disabled else "user.enabled"
            audit.record(conn, event, owner, f"user:{owner}", actor=audit.operator())
    return revocation.announce(settings.effective_redis_url, users=[owner]) if disabled else True


def delete_user(settings: Settings, email: str) -> bool:
    """Delete a user and everything they own (keys, jobs, tasks; their stored files are
    released to the cleaner); True when the API processes were told at once."""
    with connect(settings, changes_jobs=True) as conn, conn.transaction():
        owner = key_rows.delete_user(conn, email)
        if owner is None:
            raise AccountError(f"no user {email}")
        audit.record(conn, "user.deleted", owner, f"user:{owner}", actor=audit.operator())
    return revocation.announce(settings.effective_redis_url, users=[owner])


def create_key(
    settings: Settings,
    email: str,
    scopes: list[str],
    name: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    with connect(settings) as conn:
        try:
            return keys.create_key(conn, email, scopes, name, expires_at, audit.operator())
        except ValueError as exc:
            raise AccountError(str(exc)) from exc


def list_keys(settings: Settings, email: str | None = None) -> list[dict[str, Any]]:
    with connect(settings) as conn:
        return key_rows.list_keys(conn, email)


def revoke_key(settings: Settings, key_id: str) -> bool:
    """Revoke a key by its id; True when the API processes were told at once."""
    try:
        ident = uuid.UUID(key_id)
    except ValueError:
        raise AccountError(f"{key_id!r} is not a key id (see `appliance keys list`)") from None
    with connect(settings) as conn, conn.transaction():
        revoked = key_rows.revoke_key(conn, ident)
        if revoked is None:
            raise AccountError(f"no key {key_id}")
        digest, owner = revoked
        audit.record(conn, "key.revoked", owner, f"key:{ident}", actor=audit.operator())
    return revocation.announce(settings.effective_redis_url, keys=[digest])


async def user_document(pool: AsyncPool, settings: Settings, user_id: uuid.UUID) -> dict[str, Any]:
    """``GET /v2/users/me``: CloudConvert's user object. ``credits``: the whole conversion
    minutes the user's quota leaves today and this month (the fewer), null when unlimited."""
    row = await key_rows.user_doc(pool, user_id)
    if row is None:  # deleted since its key was checked
        raise NotFound("The user no longer exists")
    return {
        "id": str(row["id"]),
        "username": row["username"],
        "email": row["email"],
        "credits": Quota.of(row, settings).credits(row["cpu_today"], row["cpu_month"]),
        "created_at": row["created_at"].isoformat(),
    }
