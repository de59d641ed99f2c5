"""The sealed object format: AES-256-GCM in chunks, so files of any size stream in and out
in constant memory.

    header  = MAGIC (5 bytes) | data key id (16) | salt (16)            37 bytes
    chunk i = AES-256-GCM(object key, nonce = i as 12 bytes big-endian,
                          aad = header | final flag (1 byte: 1 on the last chunk, else 0))

The object key is HKDF-SHA256(data key, salt): a fresh key per object, so the chunk counter
alone makes every nonce unique (no random nonces to collide across a user's many objects).
Every chunk holds ``CHUNK`` bytes of plaintext but the last, which holds 0 to ``CHUNK``
(an empty file is one empty final chunk). Reordered chunks fail (the counter is the nonce),
a cut-off object fails (its last chunk was not sealed as final), bytes after the final chunk
fail, and a header moved onto another object fails (it is in every chunk's AAD).

An object that does not begin with ``MAGIC`` was stored before encryption was turned on (or
with it off) and is read as it is.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import PermanentError
from appliance.security.envelope import DataKey

MAGIC = b"APLE\x01"
SALT_BYTES = 16
HEADER_BYTES = len(MAGIC) + 16 + SALT_BYTES
CHUNK = 256 * 1024  # plaintext bytes per chunk: ~8 GB/s with AES-NI, one chunk of memory
TAG = 16
SEALED_CHUNK = CHUNK + TAG
_INFO = b"appliance object key v1"


class ObjectDamaged(PermanentError):
    """A sealed object does not open: cut off, reordered, altered, or another key's."""

    def __init__(self, why: str) -> None:
        super().__init__(f"A stored file is damaged ({why})", code="STORAGE_INTEGRITY")


def _object_cipher(key: DataKey, salt: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_INFO)
    return AESGCM(hkdf.derive(key.secret))


def _nonce(i: int) -> bytes:
    return i.to_bytes(12, "big")


class Sealer:
    """Seals one object: ``header`` first, then what ``update`` and ``finish`` return."""

    def __init__(self, key: DataKey) -> None:
        salt = os.urandom(SALT_BYTES)
        self.header = MAGIC + key.id.bytes + salt
        self._aead = _object_cipher(key, salt)
        self._pending = bytearray()
        self._count = 0
        self.size = 0  # plaintext bytes taken

    def update(self, data: bytes) -> bytes:
        """The sealed chunks ``data`` completes (always keeps the latest chunk back, which
        may turn out to be the final one)."""
        self.size += len(data)
        self._pending += data
        if len(self._pending) <= CHUNK:
            return b""
        out = []
        view = memoryview(self._pending)
        start = 0
        while len(self._pending) - start > CHUNK:
            out.append(self._seal(view[start : start + CHUNK], final=False))
            start += CHUNK
        view.release()
        del self._pending[:start]
        return b"".join(out)

    def finish(self) -> bytes:
        """The final chunk."""
        last = self._seal(bytes(self._pending), final=True)
        self._pending.clear()
        return last

    def _seal(self, plain: bytes | memoryview, *, final: bool) -> bytes:
        sealed = self._aead.encrypt(
            _nonce(self._count), bytes(plain), self.header + (b"\x01" if final else b"\x00")
        )
        self._count += 1
        return sealed


def sealed_size(plain_size: int) -> int:
    chunks = max(1, -(-plain_size // CHUNK))
    return HEADER_BYTES + plain_size + chunks * TAG


def plain_size(stored_size: int, head: bytes) -> int:
    """The plaintext size of a stored object of ``stored_size`` bytes beginning with
    ``head``; a plain object's own size."""
    if not head.startswith(MAGIC):
        return stored_size
    body = stored_size - HEADER_BYTES
    chunks = max(1, -(-body // SEALED_CHUNK))
    return body - chunks * TAG


def key_id_of(header: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=header[len(MAGIC) : len(MAGIC) + 16])


def open_stream(
    stored: Iterable[bytes], key_for: Callable[[uuid.UUID], DataKey]
) -> Iterator[bytes]:
    """The plaintext of a stored object read as ``stored`` chunks (of any sizes); a plain
    (legacy) object passes through. Raises ObjectDamaged when it does not open whole."""
    chunks = iter(stored)
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) >= HEADER_BYTES:
            break
    if not buf.startswith(MAGIC):
        yield bytes(buf)
        yield from chunks
        return
    if len(buf) < HEADER_BYTES:
        raise ObjectDamaged("cut off in its header")
    header = bytes(buf[:HEADER_BYTES])
    del buf[:HEADER_BYTES]
    yield from _open_chunks(header, buf, chunks, key_for(key_id_of(header)))


def _open_chunks(
    header: bytes, buf: bytearray, rest: Iterator[bytes], key: DataKey
) -> Iterator[bytes]:
    aead = _object_cipher(key, header[-SALT_BYTES:])
    count = 0

    def one(sealed: bytes, final: bool) -> bytes:
        try:
            return aead.decrypt(_nonce(count), sealed, header + (b"\x01" if final else b"\x00"))
        except InvalidTag:
            raise ObjectDamaged("a chunk does not authenticate") from None

    for chunk in itertools.chain([b""], rest):  # what the header's read brought first
        buf += chunk
        while len(buf) > SEALED_CHUNK:
            yield one(bytes(buf[:SEALED_CHUNK]), final=False)
            del buf[:SEALED_CHUNK]
            count += 1
    if len(buf) < TAG:
        raise ObjectDamaged("cut off")
    yield one(bytes(buf), final=True)
