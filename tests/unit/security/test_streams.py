"""The sealed object format: round trips at every size around the chunk boundaries, and
every kind of tampering (cut off, reordered, altered, another key) is refused."""

import os
import uuid

import pytest

from appliance.security import streams
from appliance.security.envelope import DataKey, KeyDestroyed
from appliance.security.streams import CHUNK, HEADER_BYTES, SEALED_CHUNK, ObjectDamaged

KEY = DataKey(uuid.uuid4(), os.urandom(32))


def seal(data: bytes, key: DataKey = KEY, piece: int = 70_001) -> bytes:
    sealer = streams.Sealer(key)
    out = [sealer.header]
    for i in range(0, len(data), piece):
        out.append(sealer.update(data[i : i + piece]))
    out.append(sealer.finish())
    return b"".join(out)


def opened(stored: bytes, piece: int = 65_536, key: DataKey = KEY) -> bytes:
    pieces = [stored[i : i + piece] for i in range(0, len(stored), piece)]

    def key_for(key_id: uuid.UUID) -> DataKey:
        if key_id != key.id:
            raise KeyDestroyed(key_id)
        return key

    return b"".join(streams.open_stream(pieces, key_for))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5])
def test_a_sealed_object_opens_to_the_same_bytes_and_its_size_is_known(size):
    data = os.urandom(size)
    stored = seal(data)
    assert len(stored) == streams.sealed_size(size)
    assert streams.plain_size(len(stored), stored[:HEADER_BYTES]) == size
    assert opened(stored) == data
    assert opened(stored, piece=1000) == data
    assert opened(stored, piece=len(stored) + 1) == data  # read whole at once
    assert opened(seal(data, piece=max(size, 1))) == data  # sealed in one update


def test_the_stored_bytes_hold_no_run_of_the_plaintext():
    data = b"confidential quarterly numbers " * 40_000
    stored = seal(data)
    assert stored.startswith(streams.MAGIC)
    assert b"confidential" not in stored


def test_two_seals_of_the_same_bytes_differ():
    assert seal(b"same bytes") != seal(b"same bytes")


def test_an_object_cut_off_at_a_chunk_boundary_is_refused():
    stored = seal(os.urandom(3 * CHUNK))
    with pytest.raises(ObjectDamaged):
        opened(stored[: HEADER_BYTES + 2 * SEALED_CHUNK])


def test_an_object_cut_off_inside_a_chunk_or_its_header_is_refused():
    stored = seal(os.urandom(CHUNK + 100))
    for cut in (HEADER_BYTES - 3, HEADER_BYTES + 10, len(stored) - 1):
        with pytest.raises(ObjectDamaged):
            opened(stored[:cut])


def test_reordered_chunks_are_refused():
    stored = seal(os.urandom(3 * CHUNK + 10))
    body = stored[HEADER_BYTES:]
    a, b = body[:SEALED_CHUNK], body[SEALED_CHUNK : 2 * SEALED_CHUNK]
    with pytest.raises(ObjectDamaged):
        opened(stored[:HEADER_BYTES] + b + a + body[2 * SEALED_CHUNK :])


def test_bytes_after_the_final_chunk_are_refused():
    stored = seal(b"short")
    with pytest.raises(ObjectDamaged):
        opened(stored + seal(b"more")[HEADER_BYTES:])


def test_a_flipped_bit_is_refused():
    stored = bytearray(seal(os.urandom(1000)))
    stored[HEADER_BYTES + 500] ^= 1
    with pytest.raises(ObjectDamaged):
        opened(bytes(stored))


def test_a_header_moved_onto_another_object_is_refused():
    one, other = seal(b"first object"), seal(b"second object")
    with pytest.raises(ObjectDamaged):
        opened(other[:HEADER_BYTES] + one[HEADER_BYTES:])


def test_an_object_of_a_destroyed_key_does_not_open():
    other = DataKey(uuid.uuid4(), os.urandom(32))
    with pytest.raises(KeyDestroyed):
        opened(seal(b"erased user's file", key=other))


def test_an_object_stored_in_plain_passes_through():
    assert opened(b"stored before encryption was on") == b"stored before encryption was on"
    assert opened(b"") == b""
