"""Secrets sealed at rest: those a task carries for its life (an S3 secret access key, a
session token, import/url request headers), and the secret columns a user's rows keep
(``Columns``, below).

A task's payload is stored in Postgres and shown in its JSON. The fields an operation
declares secret (``Operation.secret_fields``) never reach either in clear: before the task is
written they are taken out of the payload and sealed, AES-256-GCM, into its ``_sealed`` field;
the worker that runs the task opens them. The task's JSON leaves ``_sealed`` out, and the
database drops it when the task ends, finished or failed (migration 0010), so an ended task
keeps no secret at all, not even encrypted.

The key is derived from the operator's signing key (``Settings.signing_key``), which every API
and worker host shares; the task's id is the associated data, so a sealed value opens only for
the task it was sealed for. Rotating the signing key makes the secrets of tasks still waiting
unreadable: they fail with ``CREDENTIALS_UNAVAILABLE``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import PermanentError
from appliance.security.envelope import DataKey, Keyring

log = logging.getLogger(__name__)

SEALED = "_sealed"  # the payload field holding the sealed secrets; also named in migration 0010
VERSION = "v1"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_PURPOSE = b"appliance task secrets v1"


def derive_key(signing_key: bytes) -> bytes:
    """The 256-bit sealing key: an HMAC of a fixed purpose under the signing key, so the key
    that signs URLs is never used as an encryption key itself."""
    return hmac.new(signing_key, _KEY_PURPOSE, hashlib.sha256).digest()


def seal(
    payload: Mapping[str, Any], names: Iterable[str], key: bytes, context: str
) -> dict[str, Any]:
    """A copy of ``payload`` with the fields ``names`` taken out and sealed under ``key`` for
    ``context`` (the task's id) into ``_sealed``; a copy unchanged when none is there."""
    out = dict(payload)
    out.pop(SEALED, None)  # only ever written here: a client's own value is dropped
    secrets = {name: out.pop(name) for name in names if name in out}
    if not secrets:
        return out
    nonce = os.urandom(_NONCE_BYTES)
    body_and_tag = AESGCM(key).encrypt(nonce, json.dumps(secrets).encode(), context.encode())
    out[SEALED] = f"{VERSION}.{base64.urlsafe_b64encode(nonce + body_and_tag).decode()}"
    return out


def unseal(payload: Mapping[str, Any], key: bytes, context: str) -> dict[str, Any]:
    """The secrets sealed in ``payload`` for ``context``; CREDENTIALS_UNAVAILABLE when there
    are none (the task ended, or is a retry of an ended one) or they do not open (another
    signing key, another task)."""
    sealed = payload.get(SEALED)
    if not isinstance(sealed, str) or not sealed.startswith(f"{VERSION}."):
        raise _unavailable("no sealed credentials")
    try:
        raw = base64.urlsafe_b64decode(sealed[len(VERSION) + 1 :])
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise ValueError("too short")
        plain = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode())
        secrets = json.loads(plain)
    except (ValueError, TypeError, InvalidTag) as exc:  # a wrong key or context: InvalidTag
        raise _unavailable("sealed credentials do not open") from exc
    if not isinstance(secrets, dict):
        raise _unavailable("sealed credentials are not an object")
    return secrets


def _unavailable(why: str) -> PermanentError:
    log.warning("task credentials unavailable: %s", why)  # which: for the log only
    return PermanentError(
        "The task's credentials are no longer available (they are kept only until it ends);"
        " create a new task",
        code="CREDENTIALS_UNAVAILABLE",
    )


# -- secret columns ------------------------------------------------------------------------
# Secrets a user's rows keep for good (webhook and signed-URL signing secrets) are sealed
# with a key derived from the user's data key (security/envelope.py): the database, its
# replicas and backups hold them only encrypted, a master-key rotation re-wraps the data key
# and leaves them alone, and erasing the user makes them unreadable with the rest. A value
# names its data key; the column and the user are the associated data, so a sealed value
# opens in no other column or row of another user. A value without the prefix was stored
# before sealing and is read as it is.
COLUMN_PREFIX = "sealed1."
_COLUMN_INFO = b"appliance secret columns v1"


def _column_cipher(key: DataKey) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_COLUMN_INFO)
    return AESGCM(hkdf.derive(key.secret))


def seal_column(key: DataKey, text: str, context: str) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    body = _column_cipher(key).encrypt(nonce, text.encode(), context.encode())
    encoded = base64.urlsafe_b64encode(nonce + body).decode()
    return f"{COLUMN_PREFIX}{key.id.hex}.{encoded}"


def open_column(value: str, key_for: Callable[[uuid.UUID], DataKey], context: str) -> str:
    """The text of a sealed value (KeyDestroyed when its key is gone)."""
    if not value.startswith(COLUMN_PREFIX):
        return value
    key_hex, _, encoded = value[len(COLUMN_PREFIX) :].partition(".")
    raw = base64.urlsafe_b64decode(encoded)
    cipher = _column_cipher(key_for(uuid.UUID(hex=key_hex)))
    try:
        return cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode()).decode()
    except InvalidTag:
        raise PermanentError("A sealed value does not open", code="SEALED_VALUE_DAMAGED") from None


@dataclass
class Columns:
    """Seals and opens a user's secret columns with their data key (``Keyring``); blocking
    (a key not cached is read from the database): call from a thread in async code."""

    keyring: Keyring

    def seal(self, user_id: uuid.UUID, column: str, text: str) -> str:
        return seal_column(self.keyring.for_owner(user_id), text, f"{column}|{user_id}")

    def open(self, user_id: uuid.UUID, column: str, value: str) -> str:
        return open_column(value, self.keyring.by_id, f"{column}|{user_id}")

    def open_doc(self, user_id: uuid.UUID, column: str, doc: str, field: str) -> str:
        """A JSON document (an object or an array of them) with ``field`` opened wherever
        an object has it: the API's documents are built by Postgres from sealed columns."""
        if COLUMN_PREFIX not in doc:
            return doc
        data = json.loads(doc)
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and isinstance(item.get(field), str):
                item[field] = self.open(user_id, column, item[field])
        return json.dumps(data)
