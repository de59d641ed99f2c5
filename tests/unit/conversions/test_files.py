import hashlib

import pytest

from appliance.conversions.files import Spool, safe_filename
from appliance.errors import FileTooLarge


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
        ("invoice\u202egpj.exe", "invoicegpj.exe"),  # right-to-left override dropped
        ("a\x00b\x01c.png", "abc.png"),
        ("cafe\u0301.png", "caf\u00e9.png"),  # NFD -> NFC
        (".hidden.png", "hidden.png"),  # no hidden files
        ("\U0001f600" * 300 + ".png", "\U0001f600" * 59 + ".png"),  # 240 bytes at most
        ("x" * 500 + ".docx", "x" * 195 + ".docx"),  # 200 characters, extension kept
        ("\u200b\u2066name\u2069.txt", "name.txt"),  # zero-width and isolate marks
    ],
)
def test_safe_filename_drops_paths_and_odd_characters(raw, safe):
    assert safe_filename(raw) == safe
