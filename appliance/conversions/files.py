"""Bringing bytes into storage: spool to a temp file while hashing, with a size limit, sealed
with the owner's data key as it is written when encryption at rest is on."""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
import uuid
from pathlib import Path

from appliance.errors import FileTooLarge
from appliance.metrics import STORAGE_WRITES
from appliance.security.streams import Sealer
from appliance.settings import Settings
from appliance.storage import object_key
from appliance.storage.sealed import SealedStorage


class Spool:
    """A temp file written in chunks; tracks SHA-256 and size; refuses to grow past a limit.

    Memory use is one chunk, whatever the file size. The file is deleted on ``close``.
    With a ``sealer`` (``SealedStorage.sealer``) the file holds the sealed object, so the
    plain bytes never reach the disk; ``size`` and the hash are the plain bytes'.
    """

    def __init__(self, tmp_dir: Path, limit: int, sealer: Sealer | None = None) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="spool-")
        self.path = Path(name)
        self._fh = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.limit = limit
        self.sealer = sealer
        if sealer is not None:
            self._fh.write(sealer.header)

    @property
    def sealed(self) -> bool:
        return self.sealer is not None

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise FileTooLarge(
                f"The file is larger than the limit of {self.limit} bytes",
                errors={"file": [f"must not exceed {self.limit} bytes"]},
            )
        self._hash.update(chunk)
        self._fh.write(chunk if self.sealer is None else self.sealer.update(chunk))

    def finish(self) -> str:
        """Flush and return the hex SHA-256."""
        if self.sealer is not None:
            self._fh.write(self.sealer.finish())
        self._fh.flush()
        self._fh.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sha256_of(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def owner(settings: Settings, user_id: object) -> str:
    """Whose a user's files are (``owned_digest``): theirs, unless the install shares files
    across users (``share_files_across_users``)."""
    return "" if settings.share_files_across_users else str(user_id)


def key_owner(settings: Settings, user_id: uuid.UUID) -> uuid.UUID | None:
    """Whose data key seals a user's files: theirs, or the install's shared key when files
    are shared across users (one stored object then serves several users)."""
    return None if settings.share_files_across_users else user_id


def spool_for(storage: SealedStorage, settings: Settings, user_id: uuid.UUID, limit: int) -> Spool:
    """A spool for a file of ``user_id``, sealed for them when the storage seals."""
    sealer = storage.sealer(key_owner(settings, user_id))
    return Spool(settings.data_path / "tmp", limit, sealer)


def owned_digest(sha256: str, owner: str) -> str:
    """The address a file is stored, deduplicated and cached under: its SHA-256, or, when
    ``owner`` is set (one user's files are their own), a SHA-256 of the owner and that digest,
    so identical bytes of two users are two objects and two cache keys."""
    if not owner:
        return sha256
    return hashlib.sha256(f"{owner}:{sha256}".encode()).hexdigest()


def store(
    storage: SealedStorage,
    path: Path,
    sha256: str,
    *,
    owner: uuid.UUID | None,
    consume: bool = False,
    sealed: bool = False,
) -> bool:
    """Put the file under its content address unless it is there; True if it was written.
    Reserve the hash first (``db.queries.files.reserve``).

    ``owner``: whose key seals it (``key_owner``). ``sealed``: ``path`` is a sealed spool,
    stored as it is (and consumed). ``consume=True``: the caller is done with ``path`` (a
    spool or engine output), so the backend may take it instead of copying."""
    key = object_key(sha256)
    if storage.exists(key):
        STORAGE_WRITES.labels("deduplicated").inc()
        return False
    if sealed:
        storage.put_sealed(key, path)
    else:
        storage.put_path(key, path, owner=owner, consume=consume)
    STORAGE_WRITES.labels("written").inc()
    return True


MAX_NAME_CHARS = 200
MAX_NAME_BYTES = 240  # UTF-8; file systems allow 255 bytes, leave room for "-12" page numbers


def safe_filename(name: str, default: str = "file") -> str:
    """A file name without path parts, control or invisible formatting characters (a
    right-to-left override can make "gpj.exe" read as "exe.jpg"), in NFC form (one spelling
    for "é"), at most 200 characters and 240 UTF-8 bytes; shortened from the end of its stem
    so the extension stays."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '"<>|:*?')
    name = name.strip(" .")
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 16:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    stem = stem[:MAX_NAME_CHARS]
    while stem and (
        len(stem) + len(suffix) > MAX_NAME_CHARS or len((stem + suffix).encode()) > MAX_NAME_BYTES
    ):
        stem = stem[:-1]
    stem = stem.rstrip(" .")
    return (stem or default) + suffix


def unique_names(names: list[str]) -> list[str]:
    """``names`` made unique, a later one that repeats an earlier one numbered (``a-2.pdf``):
    a zip's entries, a PDF's attachments."""
    seen: set[str] = set()
    out = []
    for original in names:
        name, n = original, 1
        while name in seen:
            n += 1
            stem, dot, ext = original.rpartition(".")
            name = f"{stem}-{n}.{ext}" if dot and stem else f"{original}-{n}"
        seen.add(name)
        out.append(name)
    return out
