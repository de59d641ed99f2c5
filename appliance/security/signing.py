"""HMAC-signed, expiring tokens for URLs the API serves itself (upload forms, local downloads)."""

from __future__ import annotations

import hashlib
import hmac
import time


def sign(secret: bytes, purpose: str, subject: str, expires: int) -> str:
    msg = f"{purpose}\n{subject}\n{expires}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


def verify(secret: bytes, purpose: str, subject: str, expires: int, signature: str) -> bool:
    if expires < time.time():
        return False
    # Bytes: compare_digest refuses non-ASCII str, and the signature is client input.
    return hmac.compare_digest(
        sign(secret, purpose, subject, expires).encode(), signature.encode("utf-8", "replace")
    )
