"""The store the application uses: a backend (S3 or local disk) whose objects are sealed with
their owner's data key (security/envelope.py, security/streams.py) before they leave the
process, and opened again on the way out.

Writes seal when ``Settings.encrypt_at_rest`` is on; reads open whatever they find (a sealed
object names its data key in its header; one stored in plain passes through), so turning the
setting on or off never strands a stored file. Downloads of sealed objects cannot be presigned
S3 URLs (S3 holds only ciphertext): they are signed URLs of the API, which opens the object as
it streams it out, on either backend.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from appliance.security import signing, streams
from appliance.security.envelope import Keyring
from appliance.storage import Storage

DOWNLOAD_PURPOSE = "download"  # the same signed route as local storage's (api/files.py)


class SealedStorage:
    """The ``Storage`` calls the application makes, plus the owner of what it writes."""

    def __init__(
        self,
        backend: Storage,
        keyring: Keyring,
        *,
        seal: bool,
        tmp_dir: Path,
        public_url: str,
        secret: bytes,
    ) -> None:
        self.backend = backend
        self.keyring = keyring
        self.seal = seal
        self.tmp_dir = tmp_dir
        self.public_url = public_url
        self.secret = secret

    def ensure_ready(self) -> None:
        """Make the bucket when the backend has one to make."""
        ensure = getattr(self.backend, "ensure_bucket", None)
        if ensure is not None:
            ensure()

    # -- writing ----------------------------------------------------------------------------
    def sealer(self, owner: uuid.UUID | None) -> streams.Sealer | None:
        """A sealer for a file of ``owner`` (None: the install's shared key) to be written
        through (``files.Spool``), then stored with ``put_sealed``; None when not sealing."""
        return streams.Sealer(self.keyring.for_owner(owner)) if self.seal else None

    def put_sealed(self, key: str, path: Path) -> None:
        """Store a file written through a ``sealer``, as it is; the file is consumed."""
        self.backend.put_path(key, path, consume=True)

    def put_path(
        self, key: str, path: Path, *, owner: uuid.UUID | None, consume: bool = False
    ) -> None:
        """Store the plain file at ``path``, sealed for ``owner`` when sealing."""
        if not self.seal:
            self.backend.put_path(key, path, consume=consume)
            return
        sealed = self._seal_copy(path, owner)
        try:
            self.backend.put_path(key, sealed, consume=True)
        finally:
            sealed.unlink(missing_ok=True)
        if consume:
            path.unlink(missing_ok=True)

    def _seal_copy(self, path: Path, owner: uuid.UUID | None) -> Path:
        sealer = self.sealer(owner)
        assert sealer is not None
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        out = self.tmp_dir / f"sealing-{os.getpid()}-{time.monotonic_ns()}"
        with open(path, "rb") as src, open(out, "wb") as dst:
            dst.write(sealer.header)
            while chunk := src.read(streams.CHUNK):
                dst.write(sealer.update(chunk))
            dst.write(sealer.finish())
        return out

    # -- reading ----------------------------------------------------------------------------
    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        return streams.open_stream(self.backend.iter_bytes(key, chunk_size), self.keyring.by_id)

    def open_file(self, path: Path, *, sealed: bool) -> Iterator[bytes]:
        """The plain bytes of a local file: one written through a ``sealer`` (``sealed``,
        an import's spool before it is stored) is opened, any other read as it is."""
        with open(path, "rb") as fh:
            chunks = iter(lambda: fh.read(streams.SEALED_CHUNK), b"")
            yield from streams.open_stream(chunks, self.keyring.by_id) if sealed else chunks

    def get_to_path(self, key: str, path: Path) -> None:
        with open(path, "wb") as out:
            for chunk in self.iter_bytes(key):
                out.write(chunk)

    def plain_size(self, key: str) -> int | None:
        """The object's plaintext size (one read of its header); None when it is gone."""
        found = self.backend.head(key, streams.HEADER_BYTES)
        if found is None:
            return None
        head, stored = found
        return streams.plain_size(stored, head)

    def exists(self, key: str) -> bool:
        return self.backend.exists(key)

    def delete(self, key: str) -> None:
        self.backend.delete(key)

    def check(self) -> None:
        self.backend.check()

    # -- downloads --------------------------------------------------------------------------
    def download_url(self, key: str, filename: str, expires_in: int) -> str:
        """A presigned backend URL while nothing is sealed; else a signed URL of the API's
        download route, which opens the object as it sends it."""
        if not self.seal and not hasattr(self.backend, "verify_download"):
            return self.backend.download_url(key, filename, expires_in)
        expires = int(time.time()) + expires_in
        sig = signing.sign(self.secret, DOWNLOAD_PURPOSE, f"{key}/{filename}", expires)
        return (
            f"{self.public_url}/v2/files/{key}/{quote(filename)}?expires={expires}&signature={sig}"
        )

    def verify_download(self, key: str, filename: str, expires: int, signature: str) -> bool:
        return signing.verify(
            self.secret, DOWNLOAD_PURPOSE, f"{key}/{filename}", expires, signature
        )
