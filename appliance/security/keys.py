"""API keys: ``apl_`` + 43 url-safe characters (256 random bits). Only a SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from appliance.db import DictConnection
from appliance.db.queries.keys import create_user_key

KEY_PREFIX = "apl_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


SCOPES = ("task.read", "task.write", "webhook.read", "webhook.write", "user.read", "user.write")


def create_key(
    conn: DictConnection,
    email: str,
    scopes: list[str] | tuple[str, ...] = SCOPES,
    name: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Create the user if needed and a new key for them; returns the key (shown once)."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scopes {unknown}; known: {', '.join(SCOPES)}")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise ValueError(f"the expiry {expires_at.isoformat()} has passed")
    key = new_key()
    create_user_key(conn, email, key_hash(key), key[:8], list(scopes), name, expires_at)
    return key
