"""Sealed task secrets: they open only with the key and for the task they were sealed for,
and the sealed payload holds none of them in clear."""

import base64

import pytest

from appliance.errors import PermanentError
from appliance.security import sealing

KEY = sealing.derive_key(b"the operator's signing key")
PAYLOAD = {
    "bucket": "b",
    "access_key_id": "AKIAEXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG",
    "session_token": "FwoGZXIvYXdz",
}
SECRETS = ("access_key_id", "secret_access_key", "session_token")


def test_secrets_are_taken_out_of_the_payload_and_open_for_their_task():
    sealed = sealing.seal(PAYLOAD, SECRETS, KEY, "task-1")
    assert set(sealed) == {"bucket", "_sealed"}
    assert not any(PAYLOAD[name] in str(sealed) for name in SECRETS)
    assert sealing.unseal(sealed, KEY, "task-1") == {name: PAYLOAD[name] for name in SECRETS}
    assert PAYLOAD["secret_access_key"] == "wJalrXUtnFEMI/K7MDENG"  # the input is left alone


@pytest.mark.parametrize(
    ("key", "context"),
    [(sealing.derive_key(b"another signing key"), "task-1"), (KEY, "task-2")],
    ids=["another key", "another task"],
)
def test_sealed_secrets_do_not_open_with_another_key_or_for_another_task(key, context):
    sealed = sealing.seal(PAYLOAD, SECRETS, KEY, "task-1")
    with pytest.raises(PermanentError) as info:
        sealing.unseal(sealed, key, context)
    assert info.value.code == "CREDENTIALS_UNAVAILABLE"


def test_a_tampered_or_missing_seal_is_unavailable():
    sealed = sealing.seal(PAYLOAD, SECRETS, KEY, "task-1")
    raw = bytearray(base64.urlsafe_b64decode(sealed["_sealed"][3:]))
    raw[15] ^= 1  # one bit of the ciphertext
    flipped = "v1." + base64.urlsafe_b64encode(bytes(raw)).decode()
    for payload in ({**sealed, "_sealed": flipped}, {"bucket": "b"}, {"_sealed": "v1.!!"}):
        with pytest.raises(PermanentError):
            sealing.unseal(payload, KEY, "task-1")


def test_a_client_cannot_plant_its_own_sealed_field():
    sealed = sealing.seal({"bucket": "b", "_sealed": "v1.planted"}, SECRETS, KEY, "t")
    assert sealed == {"bucket": "b"}


def test_each_seal_is_fresh():
    one, two = (sealing.seal(PAYLOAD, SECRETS, KEY, "t")["_sealed"] for _ in range(2))
    assert one != two  # a new nonce every time
