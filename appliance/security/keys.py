"""API keys: ``apl_`` + 43 url-safe characters (256 random bits). Only a SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets

from appliance.db import DictConnection

KEY_PREFIX = "apl_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


SCOPES = ("task.read", "task.write", "webhook.read", "webhook.write", "user.read")


def create_key(
    conn: DictConnection,
    email: str,
    scopes: list[str] | tuple[str, ...] = ("task.read", "task.write"),
) -> str:
    """Create the user if needed and a new key for them; returns the key (shown once)."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scopes {unknown}; known: {', '.join(SCOPES)}")
    key = new_key()
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO users (email) VALUES (%s) ON CONFLICT (email) DO UPDATE"
            " SET email = EXCLUDED.email RETURNING id",
            (email,),
        ).fetchone()
        assert row is not None
        user_id = row["id"]
        conn.execute(
            "INSERT INTO api_keys (user_id, key_hash, prefix, scopes) VALUES (%s, %s, %s, %s)",
            (user_id, key_hash(key), key[:8], list(scopes)),
        )
    return key
