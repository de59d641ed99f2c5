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
    """Seals one object: ``header`` first, then what ``update`` and ``finish`` return.

    Plaintext is gathered in one chunk-sized buffer (one copy) and sealed from it: no other
    copy is made, so sealing costs little more than AES-GCM itself (an upload's spool seals
    as it writes)."""

    def __init__(self, key: DataKey) -> None:
        salt = os.urandom(SALT_BYTES)
        self.header = MAGIC + key.id.bytes + salt
        self._aead = _object_cipher(key, salt)
        self._buf = bytearray(CHUNK)
        self._fill = 0
        self._count = 0
        self.size = 0  # plaintext bytes taken

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """The sealed chunks ``data`` completes. A full chunk is sealed only once more data
        comes: until then it may be the final one."""
        n = len(data)
        self.size += n
        if n <= CHUNK - self._fill:  # the usual case: it fits in the chunk being gathered
            self._buf[self._fill : self._fill + n] = data
            self._fill += n
            return b""
        out = []
        with memoryview(data) as view:
            start = 0
            while start < len(view):
                if self._fill == CHUNK:
                    out.append(self._seal(final=False))
                n = min(CHUNK - self._fill, len(view) - start)
                self._buf[self._fill : self._fill + n] = view[start : start + n]
                self._fill += n
                start += n
        return out[0] if len(out) == 1 else b"".join(out)

    def finish(self) -> bytes:
        """The final chunk."""
        return self._seal(final=True)

    def _seal(self, *, final: bool) -> bytes:
        with memoryview(self._buf) as view:
            sealed = self._aead.encrypt(
                _nonce(self._count),
                view[: self._fill],
                self.header + (b"\x01" if final else b"\x00"),
            )
        self._count += 1
        self._fill = 0
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
    count, pos = 0, 0  # chunks opened; where the next one starts in ``buf``

    def one(sealed: memoryview, final: bool) -> bytes:
        try:
            return aead.decrypt(_nonce(count), sealed, header + (b"\x01" if final else b"\x00"))
        except InvalidTag:
            raise ObjectDamaged("a chunk does not authenticate") from None

    for chunk in itertools.chain([b""], rest):  # what the header's read brought first
        if chunk:
            del buf[:pos]
            pos = 0
            buf += chunk
        while len(buf) - pos > SEALED_CHUNK:
            with memoryview(buf) as view:
                plain = one(view[pos : pos + SEALED_CHUNK], final=False)
            yield plain
            pos += SEALED_CHUNK
            count += 1
    if len(buf) - pos < TAG:
        raise ObjectDamaged("cut off")
    with memoryview(buf) as view:
        last = one(view[pos:], final=True)
    yield last
