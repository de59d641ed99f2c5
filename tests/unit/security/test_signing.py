import time

from appliance.security import signing


def test_signature_verifies_until_it_expires():
    exp = int(time.time()) + 60
    sig = signing.sign(b"k", "upload", "task-1", exp)
    assert signing.verify(b"k", "upload", "task-1", exp, sig)
    assert not signing.verify(b"k", "upload", "task-2", exp, sig)
    assert not signing.verify(b"k", "download", "task-1", exp, sig)
    assert not signing.verify(b"other", "upload", "task-1", exp, sig)
    assert not signing.verify(b"k", "upload", "task-1", exp + 1, sig)


def test_expired_signature_is_refused():
    exp = int(time.time()) - 1
    assert not signing.verify(b"k", "upload", "t", exp, signing.sign(b"k", "upload", "t", exp))


def test_non_ascii_signature_is_refused_not_an_error():
    exp = int(time.time()) + 60
    assert not signing.verify(b"k", "upload", "t", exp, "é" * 64)


def test_a_signature_that_is_no_valid_unicode_is_refused_not_an_error():
    """A lone surrogate (what a client's %-escapes can decode to) cannot be encoded strictly."""
    exp = int(time.time()) + 60
    assert not signing.verify(b"k", "upload", "t", exp, "\udc80" * 64)
