"""Idempotency keys on the creating requests (the IETF httpapi draft "The Idempotency-Key HTTP
Header Field"): a request sent again with the key of one already answered gets that answer
again, not a second job.

- Same user, key and fingerprint (route and body): the stored status and document (``Replayed``).
- Same user and key, another fingerprint: 422 ``IDEMPOTENCY_KEY_REUSED``.
- Same user and key while the first request is still being answered: 409
  ``IDEMPOTENCY_KEY_IN_USE`` with ``Retry-After``.

A service looks first (``replay_if_done``: a repeat costs no work), then, in the transaction that
creates, claims the key (``claim``) and stores the answer with what it created (``record``).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import msgspec

from appliance.db import AsyncDictConnection
from appliance.db.queries import idempotency as rows
from appliance.errors import ClientError, IdempotencyKeyInUse, IdempotencyKeyReused

MAX_KEY_LENGTH = 255  # characters; a UUID is 36


class Idempotency(msgspec.Struct, frozen=True):
    """A request's key and the fingerprint of what it asks for."""

    key: str
    fingerprint: str


class Replayed(Exception):
    """The request was already answered: this is that answer (status and document)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def parse_key(header: str) -> str:
    """The key of an ``Idempotency-Key`` header: the draft's Structured Field string
    (``"..."``), or the bare token many clients send. 400 ``INVALID_IDEMPOTENCY_KEY`` unless it
    is 1 to 255 printable ASCII characters."""
    value = header.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not 0 < len(value) <= MAX_KEY_LENGTH or not all(" " <= c <= "~" for c in value):
        raise ClientError(
            f"The Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable ASCII"
            " characters (a UUID, for example)",
            code="INVALID_IDEMPOTENCY_KEY",
            errors={"Idempotency-Key": [f"must be 1 to {MAX_KEY_LENGTH} printable ASCII chars"]},
        )
    return value


def fingerprint(route: str, body: bytes) -> str:
    """SHA-256 (hex) of the route and the body: JSON as canonical JSON (sorted keys, no
    spaces), so a client that encodes the same request again another way still matches."""
    try:
        canonical = msgspec.json.encode(msgspec.json.decode(body), order="sorted")
    except msgspec.DecodeError:
        canonical = body
    return hashlib.sha256(route.encode() + b"\n" + canonical).hexdigest()


def _answer(stored: dict[str, Any], wanted: Idempotency) -> Replayed:
    if stored["fingerprint"] != wanted.fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for another request (another route or"
            " body); send a new key for a new request",
            errors={"Idempotency-Key": ["was already used with another request"]},
        )
    return Replayed(stored["status"], stored["body"])


async def replay_if_done(
    conn: AsyncDictConnection, user_id: uuid.UUID, wanted: Idempotency | None
) -> None:
    """Before any work: raise ``Replayed`` (or the 422) if this user's key already answered."""
    if wanted is None:
        return
    stored = await rows.find(conn, user_id, wanted.key)
    if stored is not None:
        raise _answer(stored, wanted)


async def claim(conn: AsyncDictConnection, user_id: uuid.UUID, wanted: Idempotency | None) -> None:
    """In the transaction that creates, first: hold the key to its end, or raise ``Replayed``
    (it answered meanwhile), the 422, or the 409 (another request holds it now)."""
    if wanted is None:
        return
    free = await rows.lock(conn, user_id, wanted.key)
    stored = await rows.find(conn, user_id, wanted.key)
    if stored is not None:
        raise _answer(stored, wanted)
    if not free:
        raise IdempotencyKeyInUse(
            "A request with this Idempotency-Key is still in progress; send it again after"
            " Retry-After seconds to get its answer"
        )


async def record(
    conn: AsyncDictConnection,
    user_id: uuid.UUID,
    wanted: Idempotency | None,
    answer: tuple[int, str],
    hours: float,
) -> None:
    """In the transaction that created, last: the answer (status, document) kept ``hours``."""
    if wanted is not None:
        await rows.store(conn, user_id, wanted.key, wanted.fingerprint, answer, hours)
