"""The Idempotency-Key header's parsing and the request fingerprint its repeats are matched by."""

from __future__ import annotations

import pytest

from appliance.conversions.idempotency import MAX_KEY_LENGTH, fingerprint, parse_key
from appliance.errors import ClientError

JOB = b'{"tasks": {"in": {"operation": "import/upload"}}, "tag": "a"}'


def test_the_same_request_encoded_another_way_has_the_same_fingerprint():
    reordered = b'{"tag":"a","tasks":{"in":{"operation":"import/upload"}}}'
    assert fingerprint("POST /v2/jobs", JOB) == fingerprint("POST /v2/jobs", reordered)


def test_another_body_has_another_fingerprint():
    other = JOB.replace(b'"a"', b'"b"')
    assert fingerprint("POST /v2/jobs", JOB) != fingerprint("POST /v2/jobs", other)


def test_the_same_body_on_another_route_has_another_fingerprint():
    assert fingerprint("POST /v2/jobs", JOB) != fingerprint("POST sync /v2/jobs", JOB)


def test_a_body_that_is_not_json_is_fingerprinted_as_its_bytes():
    assert fingerprint("POST /v2/x", b"") != fingerprint("POST /v2/x", b"{")
    assert fingerprint("POST /v2/x", b"{") == fingerprint("POST /v2/x", b"{")
    assert len(fingerprint("POST /v2/x", b"")) == 64  # SHA-256, hex


def test_a_bare_token_and_a_structured_field_string_give_the_same_key():
    key = "8e03978e-40d5-43e8-bc93-6894a57f9324"
    assert parse_key(key) == parse_key(f'"{key}"') == parse_key(f"  {key} ") == key
    assert parse_key(r'"a\"b\\c"') == 'a"b\\c'


@pytest.mark.parametrize(
    "header", ["", "   ", '""', "x" * (MAX_KEY_LENGTH + 1), "caf\u00e9", "a\tb", "a\x00b"]
)
def test_a_key_that_is_empty_too_long_or_not_printable_ascii_is_refused_with_400(header):
    with pytest.raises(ClientError) as refused:
        parse_key(header)
    assert refused.value.status == 400
    assert refused.value.code == "INVALID_IDEMPOTENCY_KEY"
    assert "Idempotency-Key" in refused.value.errors


def test_the_longest_key_allowed_is_kept_whole():
    assert parse_key("k" * MAX_KEY_LENGTH) == "k" * MAX_KEY_LENGTH
