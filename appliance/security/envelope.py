"""Envelope encryption: one data key per user, wrapped by a master key the operator holds.

Master keys come from ``Settings.master_keys`` (``id:base64url,id:base64url``) or, when that
is empty, from a key file (``Settings.master_key_file``, default DATA_DIR/master_keys: one
``id base64url`` per line), which a single host creates itself on first use, mode 0600. The
last key listed is the current one: it wraps new data keys; the others still unwrap the data
keys wrapped under them, so an old and a new master key coexist while ``rewrap`` moves every
data key to the new one (a few hundred bytes per user; no stored object is touched).

A data key is 32 random bytes, kept in ``data_keys`` wrapped (AES-256-GCM under the master
key, the data key's id and the master key's id as associated data, so a wrapped key cannot be
moved to another row). A user's key is made with their first file; the install has one more,
``SHARED``, for files shared across users (``Settings.share_files_across_users``). Deleting
the row (the user's deletion cascades to it) is crypto-shredding: whatever was sealed with
the key, in storage or in any copy of it, cannot be opened again.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg.rows import dict_row

from appliance.db import DEAD_PEER_SETTINGS, DictConnection
from appliance.db.queries import data_keys as rows
from appliance.errors import PermanentError, RetryableError
from appliance.settings import Settings

SHARED = "shared"  # the scope of the install's own data key (files shared across users)
KEY_BYTES = 32
_NONCE_BYTES = 12
_WRAP_AAD = b"appliance data key v1|"
CACHE_SECONDS = 60.0  # how long a process keeps an unwrapped data key (erase: see README)

Connect = Callable[[], AbstractContextManager[DictConnection]]


class MasterKeyError(ValueError):
    """The master keys cannot be read or do not unwrap a data key; the message says why."""


class KeyDestroyed(PermanentError):
    """The data key an object or value was sealed with no longer exists (its user was
    erased): what it sealed is unreadable for good."""

    def __init__(self, key_id: uuid.UUID) -> None:
        super().__init__(
            "The file's encryption key no longer exists (its owner was erased)",
            code="KEY_DESTROYED",
        )
        self.key_id = key_id


@dataclass(frozen=True)
class DataKey:
    id: uuid.UUID
    secret: bytes


class MasterKeys:
    """The master keys by id, and which one is current (wraps new data keys)."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise MasterKeyError("no master key given")
        for ident, key in keys:
            if len(key) != KEY_BYTES or not ident or any(c in ident for c in " :,"):
                raise MasterKeyError(f"master key {ident!r}: expected an id and 32 bytes")
        self.keys = dict(keys)
        self.current = keys[-1][0]

    @classmethod
    def parse(cls, text: str, separator: str) -> MasterKeys:
        """``id<sep>base64url`` entries, one per line or comma (the last one current)."""
        entries = [e.strip() for e in text.replace(",", "\n").splitlines() if e.strip()]
        keys = []
        for entry in entries:
            ident, _, encoded = entry.partition(separator)
            try:
                keys.append((ident.strip(), base64.urlsafe_b64decode(encoded.strip() + "==")))
            except ValueError:
                raise MasterKeyError(f"master key {ident!r} is not base64url") from None
        return cls(keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> MasterKeys:
        if settings.master_keys:
            return cls.parse(settings.master_keys, ":")
        path = key_file(settings)
        if not path.exists():
            create_key_file(path)
        return cls.parse(path.read_text(), " ")

    def wrap(self, key: DataKey) -> tuple[str, bytes]:
        """(current master id, nonce + ciphertext + tag) of ``key``."""
        nonce = os.urandom(_NONCE_BYTES)
        aad = _WRAP_AAD + key.id.bytes + self.current.encode()
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, key.secret, aad)
        return self.current, nonce + sealed

    def unwrap(self, key_id: uuid.UUID, master_id: str, wrapped: bytes) -> DataKey:
        master = self.keys.get(master_id)
        if master is None:
            raise MasterKeyError(
                f"data key {key_id} is wrapped by master key {master_id!r}, which is not"
                " configured (keep it listed until `appliance master-key rewrap` has run)"
            )
        aad = _WRAP_AAD + key_id.bytes + master_id.encode()
        try:
            secret = AESGCM(master).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], aad)
        except InvalidTag:
            raise MasterKeyError(
                f"master key {master_id!r} does not open data key {key_id}"
            ) from None
        return DataKey(key_id, secret)


def key_file(settings: Settings) -> Path:
    return (
        Path(settings.master_key_file).expanduser()
        if settings.master_key_file
        else settings.data_path / "master_keys"
    )


def new_master_line() -> str:
    """A fresh master key as a key-file line: ``id base64url``."""
    ident = f"mk-{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(3)}"
    return f"{ident} {base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode().rstrip('=')}"


def create_key_file(path: Path) -> None:
    """Create ``path`` (mode 0600 from the start) with one master key; of several processes
    starting at once, the first link wins and all read the same key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(new_master_line() + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def add_to_key_file(path: Path) -> str:
    """Append a new master key to the key file (it becomes the current one); its id."""
    line = new_master_line()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    with os.fdopen(fd, "a") as fh:
        fh.write(line + "\n")
    return line.split(" ", 1)[0]


def connector(settings: Settings) -> Connect:
    """A connection of its own per call (autocommit, rows as dicts): keys are cached, so a
    process connects for a key about once a minute per user, not per file."""
    return lambda: psycopg.connect(
        settings.effective_database_url, autocommit=True, row_factory=dict_row, **DEAD_PEER_SETTINGS
    )


class Keyring:
    """Data keys by owner (to seal) and by id (to open), unwrapped on demand and kept for
    ``CACHE_SECONDS``; thread-safe. ``connect`` gives a database connection for a miss."""

    def __init__(self, masters: Callable[[], MasterKeys], connect: Connect) -> None:
        self._masters = masters
        self._connect = connect
        self._lock = threading.Lock()
        self._by_id: dict[uuid.UUID, tuple[float, DataKey]] = {}
        self._by_scope: dict[str, tuple[float, DataKey]] = {}
        self._master_keys: MasterKeys | None = None

    def masters(self) -> MasterKeys:
        if self._master_keys is None:
            self._master_keys = self._masters()
        return self._master_keys

    def for_owner(self, owner: uuid.UUID | None) -> DataKey:
        """The data key of ``owner`` (None: the install's shared key), made if new."""
        scope = SHARED if owner is None else str(owner)
        hit = self._cached(self._by_scope, scope)
        if hit is not None:
            return hit
        fresh = DataKey(uuid.uuid4(), os.urandom(KEY_BYTES))
        master_id, wrapped = self.masters().wrap(fresh)
        with self._database() as conn:
            row = rows.ensure(conn, fresh.id, scope, owner, master_id, wrapped)
        key = self.masters().unwrap(row.id, row.master_key_id, row.wrapped)
        self._keep(key, scope)
        return key

    def by_id(self, key_id: uuid.UUID) -> DataKey:
        """The data key ``key_id``; KeyDestroyed when it no longer exists."""
        hit = self._cached(self._by_id, key_id)
        if hit is not None:
            return hit
        with self._database() as conn:
            row = rows.by_id(conn, key_id)
        if row is None:
            raise KeyDestroyed(key_id)
        key = self.masters().unwrap(row.id, row.master_key_id, row.wrapped)
        self._keep(key, row.scope)
        return key

    def forget(self) -> None:
        """Drop every cached key (after an erase in this process)."""
        with self._lock:
            self._by_id.clear()
            self._by_scope.clear()

    @contextmanager
    def _database(self) -> Iterator[DictConnection]:
        """A connection for a miss. The database away (a failover, a lost connection) is a
        RetryableError: an API request is answered 503 with Retry-After, a task runs again
        (it was a 500 in the lab's failover drill)."""
        try:
            with self._connect() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise RetryableError(f"the database is unavailable: {exc}") from exc

    def _cached(self, table: dict[Any, tuple[float, DataKey]], name: object) -> DataKey | None:
        with self._lock:
            entry = table.get(name)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def _keep(self, key: DataKey, scope: str) -> None:
        until = time.monotonic() + CACHE_SECONDS
        with self._lock:
            self._by_id[key.id] = (until, key)
            self._by_scope[scope] = (until, key)


def rewrap_all(conn: DictConnection, masters: MasterKeys) -> int:
    """Wrap every data key not yet under the current master key with it; how many moved.
    Objects are untouched: they are sealed with the data keys, which do not change."""
    moved = 0
    for row in rows.not_under(conn, masters.current):
        key = masters.unwrap(row.id, row.master_key_id, row.wrapped)
        master_id, wrapped = masters.wrap(key)
        moved += rows.rewrap(conn, row.id, row.master_key_id, master_id, wrapped)
    return moved


def operate(settings: Settings, action: str) -> str:
    """``appliance master-key add|rewrap|status``; what to print."""
    if action == "add":
        if settings.master_keys:
            raise MasterKeyError(
                "the master keys come from APPLIANCE_MASTER_KEYS: append a new `id:base64url`"
                " entry there on every host (generate one with `appliance master-key add`"
                " against a key file), then run `appliance master-key rewrap`"
            )
        path = key_file(settings)
        MasterKeys.from_settings(settings)  # creates the file on a fresh install
        ident = add_to_key_file(path)
        return f"master key {ident} added to {path}: now run `appliance master-key rewrap`"
    masters = MasterKeys.from_settings(settings)
    with connector(settings)() as conn:
        if action == "rewrap":
            moved = rewrap_all(conn, masters)
            return f"{moved} data keys re-wrapped under master key {masters.current}"
        counts = rows.count_by_master(conn)
    lines = []
    for ident in masters.keys:
        current = " (current)" if ident == masters.current else ""
        lines.append(f"{ident}\t{counts.pop(ident, 0)} data keys{current}")
    lines += [f"{ident}\t{n} data keys, NOT CONFIGURED" for ident, n in counts.items()]
    return "\n".join(lines)
