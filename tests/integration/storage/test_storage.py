"""The same contract for both real backends (local disk and S3 on Swift+s3api), as the
sealing layer (test_sealed.py) uses them."""

import os
import tracemalloc
import urllib.request

import pytest

from appliance.storage import make_backend, object_key


@pytest.fixture
def storage(settings):
    s = make_backend(settings)
    if hasattr(s, "ensure_bucket"):
        s.ensure_bucket()
    return s


def test_put_get_exists_delete_round_trip(storage, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(b"x" * 3_000_000)
    key = object_key("ab" * 32)
    assert not storage.exists(key)
    storage.put_path(key, src)
    assert storage.exists(key)
    storage.get_to_path(key, tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == src.read_bytes()
    assert b"".join(storage.iter_bytes(key)) == src.read_bytes()
    storage.delete(key)
    assert not storage.exists(key)


def test_head_reads_the_first_bytes_and_the_size_in_one_go(storage, tmp_path):
    src = tmp_path / "in.bin"
    body = os.urandom(200_000)
    src.write_bytes(body)
    key = object_key("ef" * 32)
    storage.put_path(key, src)
    assert storage.head(key, 60) == (body[:60], 200_000)
    assert storage.head(key, 300_000) == (body, 200_000)  # more than there is: all of it
    src.write_bytes(b"")
    empty = object_key("fe" * 32)
    storage.put_path(empty, src)
    assert storage.head(empty, 60) == (b"", 0)
    assert storage.head(object_key("00" * 32), 60) is None


def test_download_url_serves_the_bytes_with_the_file_name(storage, settings, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(b"hello")
    key = object_key("cd" * 32)
    storage.put_path(key, src)
    url = storage.download_url(key, "report.webp", 60)
    if settings.storage == "local":
        # Served by the API; the signature covers key and file name, and expires.
        assert storage.verify_download(key, "report.webp", *_sig(url))
        assert not storage.verify_download(key, "other.webp", *_sig(url))
        return
    with urllib.request.urlopen(url) as resp:
        assert resp.read() == b"hello"
        assert "report.webp" in resp.headers["Content-Disposition"]


def _sig(url):
    from urllib.parse import parse_qs, urlsplit

    q = parse_qs(urlsplit(url).query)
    return int(q["expires"][0]), q["signature"][0]


def test_readiness_check_passes(storage):
    storage.check()


def test_storing_a_large_file_holds_a_part_of_it_in_memory_not_all(storage, tmp_path):
    """minio reads parts ahead into an unbounded queue when it uploads them in parallel: a
    file as large as the limit would sit in memory whole."""
    src = tmp_path / "big.bin"
    with open(src, "wb") as fh:
        for _ in range(96):
            fh.write(os.urandom(1 << 20))
    tracemalloc.start()
    try:
        storage.put_path(object_key("cd" * 32), src)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 48 << 20  # of 96 MiB
