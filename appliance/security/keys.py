"""API keys: ``apl_`` + 43 url-safe characters (256 random bits). Only a SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from appliance.db import DictConnection
from appliance.db.queries.keys import create_user_key
from appliance.security import audit

KEY_PREFIX = "apl_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


SCOPES = ("task.read", "task.write", "webhook.read", "webhook.write", "user.read", "user.write")
# Erasing the user (DELETE /v2/users/me) cannot be undone: a key does it only when made with
# this scope by name, never by default.
ERASE_SCOPE = "user.erase"
KNOWN_SCOPES = (*SCOPES, ERASE_SCOPE)


def create_key(
    conn: DictConnection,
    email: str,
    scopes: list[str] | tuple[str, ...] = SCOPES,
    name: str | None = None,
    expires_at: datetime | None = None,
    actor: str = "system",
) -> str:
    """Create the user if needed and a new key for them, audited as ``actor``'s doing;
    returns the key (shown once)."""
    unknown = sorted(set(scopes) - set(KNOWN_SCOPES))
    if unknown:
        raise ValueError(f"unknown scopes {unknown}; known: {', '.join(KNOWN_SCOPES)}")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise ValueError(f"the expiry {expires_at.isoformat()} has passed")
    key = new_key()
    with conn.transaction():
        made = create_user_key(conn, email, key_hash(key), key[:8], list(scopes), name, expires_at)
        if made.user_created:
            audit.record(conn, "user.created", made.user_id, f"user:{made.user_id}", actor=actor)
        details = {"prefix": key[:8], "scopes": list(scopes), "name": name, "expires": expires_at}
        audit.record(conn, "key.created", made.user_id, f"key:{made.id}", details, actor=actor)
    return key
