import hashlib

import pytest

from appliance.errors import FileTooLarge
from appliance.jobs.files import Spool, safe_filename


def test_spool_hashes_and_counts_while_writing(tmp_path):
    with Spool(tmp_path, limit=100) as spool:
        spool.write(b"hello ")
        spool.write(b"world")
        assert spool.finish() == hashlib.sha256(b"hello world").hexdigest()
        assert spool.size == 11 and spool.path.read_bytes() == b"hello world"
    assert list(tmp_path.iterdir()) == []


def test_spool_refuses_to_grow_past_its_limit_and_leaves_nothing(tmp_path):
    with pytest.raises(FileTooLarge) as info, Spool(tmp_path, limit=10) as spool:
        spool.write(b"123456")
        spool.write(b"7890ab")
    assert info.value.status == 413
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y.png", "y.png"),
        ('a"b.png', "ab.png"),
        ("", "file"),
        ("..", "file"),
        ("ok name.webp", "ok name.webp"),
    ],
)
def test_safe_filename_drops_paths_and_odd_characters(raw, safe):
    assert safe_filename(raw) == safe
