"""Objects at rest are sealed with their owner's data key on both real backends (local disk
and S3 on Swift+s3api); master keys rotate without touching an object."""

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import msgspec
import psycopg
import pytest
from psycopg.rows import dict_row

from appliance.conversions.files import Spool
from appliance.db.queries import keys as key_rows
from appliance.errors import RetryableError
from appliance.local_services import free_port
from appliance.security import envelope, streams
from appliance.security.envelope import KeyDestroyed, Keyring, MasterKeys
from appliance.storage import make_storage, object_key

SECRET = b"the patient's diagnosis, page 1 of 3. " * 30_000  # ~1.1 MB, several chunks


@pytest.fixture
def storage(settings):
    s = make_storage(settings)
    s.ensure_ready()
    return s


def new_user(settings) -> uuid.UUID:
    with psycopg.connect(
        settings.effective_database_url, autocommit=True, row_factory=dict_row
    ) as c:
        return key_rows.ensure_user(c, f"u-{uuid.uuid4().hex[:8]}@example.test")


def stored_raw(storage, key: str) -> bytes:
    return b"".join(storage.backend.iter_bytes(key))


def test_a_stored_file_is_sealed_in_the_backend_and_opens_for_the_application(
    storage, settings, tmp_path
):
    src = tmp_path / "in.bin"
    src.write_bytes(SECRET)
    key = object_key("ab" * 32)
    storage.put_path(key, src, owner=new_user(settings))
    raw = stored_raw(storage, key)
    assert raw.startswith(streams.MAGIC) and b"diagnosis" not in raw
    assert b"".join(storage.iter_bytes(key)) == SECRET
    storage.get_to_path(key, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == SECRET
    assert storage.plain_size(key) == len(SECRET)
    assert storage.plain_size(object_key("cd" * 32)) is None


def test_a_sealing_spool_never_writes_the_plain_bytes_to_disk(storage, settings, tmp_path):
    sealer = storage.sealer(new_user(settings))
    with Spool(tmp_path / "spool", 10 << 20, sealer) as spool:
        for i in range(0, len(SECRET), 65536):
            spool.write(SECRET[i : i + 65536])
        spool.finish()
        assert b"diagnosis" not in spool.path.read_bytes()
        assert spool.size == len(SECRET)
        key = object_key("cd" * 32)
        storage.put_sealed(key, spool.path)
    assert b"".join(storage.iter_bytes(key)) == SECRET


def test_two_users_files_are_sealed_with_two_keys(storage, settings, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(b"same bytes")
    a, b = object_key("a1" * 32), object_key("b2" * 32)
    storage.put_path(a, src, owner=new_user(settings))
    storage.put_path(b, src, owner=new_user(settings))
    header = streams.HEADER_BYTES
    ids = {streams.key_id_of(stored_raw(storage, k)[:header]) for k in (a, b)}
    assert len(ids) == 2


def test_with_encryption_off_files_are_stored_plain_and_sealed_ones_still_open(
    storage, settings, tmp_path
):
    src = tmp_path / "in.bin"
    src.write_bytes(SECRET)
    sealed = object_key("ef" * 32)
    storage.put_path(sealed, src, owner=new_user(settings))
    off = make_storage(settings_with(settings, encrypt_at_rest=False))
    plain = object_key("fe" * 32)
    off.put_path(plain, src, owner=new_user(settings))
    assert stored_raw(off, plain) == SECRET
    assert b"".join(off.iter_bytes(sealed)) == SECRET
    assert b"".join(storage.iter_bytes(plain)) == SECRET  # and back on: the plain one reads


def test_a_deleted_users_objects_no_longer_open(storage, settings, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(SECRET)
    owner = new_user(settings)
    key = object_key("dd" * 32)
    storage.put_path(key, src, owner=owner)
    with psycopg.connect(settings.effective_database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM users WHERE id = %s", (owner,))
    fresh = make_storage(settings)  # another process: no key cached
    with pytest.raises(KeyDestroyed):
        b"".join(fresh.iter_bytes(key))


def test_rotating_the_master_key_rewraps_data_keys_and_leaves_objects_alone(
    storage, settings, tmp_path
):
    src = tmp_path / "in.bin"
    src.write_bytes(SECRET)
    key = object_key("99" * 32)
    storage.put_path(key, src, owner=new_user(settings))
    before = stored_raw(storage, key)
    path = envelope.key_file(settings)
    old_id = path.read_text().split()[0]
    new_id = envelope.add_to_key_file(path)
    with psycopg.connect(
        settings.effective_database_url, autocommit=True, row_factory=dict_row
    ) as c:
        assert envelope.rewrap_all(c, MasterKeys.from_settings(settings)) == 1
        assert envelope.rewrap_all(c, MasterKeys.from_settings(settings)) == 0
        assert key_counts(c) == {new_id: 1}
    # The old master key retired: the object, untouched, opens under the new one alone.
    path.write_text("\n".join(line for line in path.read_text().splitlines() if old_id not in line))
    fresh = make_storage(settings)
    assert stored_raw(fresh, key) == before
    assert b"".join(fresh.iter_bytes(key)) == SECRET


def test_a_data_key_wrapped_by_a_master_key_no_longer_configured_is_an_error(settings):
    owner = new_user(settings)
    first = Keyring(lambda: MasterKeys.from_settings(settings), envelope.connector(settings))
    made = first.for_owner(owner)
    other = MasterKeys([("other", os.urandom(32))])
    second = Keyring(lambda: other, envelope.connector(settings))
    with pytest.raises(envelope.MasterKeyError, match="not configured"):
        second.by_id(made.id)


def test_master_keys_from_the_setting_take_precedence_over_the_file(settings):
    line = envelope.new_master_line()
    ident, encoded = line.split(" ")
    configured = settings_with(settings, master_keys=f"{ident}:{encoded}")
    assert MasterKeys.from_settings(configured).current == ident
    assert not envelope.key_file(configured).exists()


def test_the_generated_key_file_is_private(settings):
    MasterKeys.from_settings(settings)
    assert envelope.key_file(settings).stat().st_mode & 0o777 == 0o600


def key_counts(conn) -> dict[str, int]:
    from appliance.db.queries import data_keys

    return data_keys.count_by_master(conn)


def settings_with(settings, **changes):
    return msgspec.structs.replace(settings, **changes)


def test_processes_asking_at_once_for_a_new_owners_key_all_get_the_one_stored(settings):
    """Parallel uploads of a new user race to make its key: the loser's statement must read the
    winner's key, which its snapshot (taken before the winner committed) did not show."""
    rounds, racers = 15, 6
    for _ in range(rounds):
        owner = new_user(settings)
        rings = [
            Keyring(lambda: MasterKeys.from_settings(settings), envelope.connector(settings))
            for _ in range(racers)
        ]
        start = threading.Barrier(racers)

        def ask(
            ring: Keyring, owner: uuid.UUID = owner, start: threading.Barrier = start
        ) -> uuid.UUID:
            start.wait()
            return ring.for_owner(owner).id

        with ThreadPoolExecutor(racers) as pool:
            ids = set(pool.map(ask, rings))
        assert len(ids) == 1


def test_the_database_away_is_a_retryable_error_not_a_crash(settings):
    """A key not cached while Postgres cannot be reached (a failover): RetryableError, which
    the API answers 503 with Retry-After and a worker retries, for both lookups."""
    nowhere = f"postgresql://127.0.0.1:{free_port()}/appliance?connect_timeout=2"
    keyring = Keyring(
        lambda: MasterKeys.from_settings(settings),
        lambda: psycopg.connect(nowhere, autocommit=True, row_factory=dict_row),
    )
    with pytest.raises(RetryableError, match="database is unavailable"):
        keyring.for_owner(uuid.uuid4())
    with pytest.raises(RetryableError, match="database is unavailable"):
        keyring.by_id(uuid.uuid4())
