"""Password hashes: argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile:
3 passes, 64 MiB), a random salt each; only the hash is stored."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASHER = PasswordHasher()
MIN_LENGTH = 10  # characters
MAX_LENGTH = 1024  # characters: hashing a megabyte of "password" is work for nothing
# Checked when no such user exists, so that the answer takes as long as for a real one.
_DUMMY = HASHER.hash("not a password anyone has")


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify(stored: str | None, password: str) -> bool:
    try:
        return HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def problem(password: str) -> str | None:
    """What is wrong with a new password, in words, or None."""
    if len(password) < MIN_LENGTH:
        return f"The password needs at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"The password may have at most {MAX_LENGTH} characters."
    return None
