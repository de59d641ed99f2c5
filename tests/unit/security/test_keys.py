from appliance.security.keys import KEY_PREFIX, key_hash, new_key


def test_a_key_carries_256_random_bits_after_its_prefix():
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert len(key) - len(KEY_PREFIX) == 43  # 32 bytes, URL-safe base64 without padding
    assert len(key_hash(next(iter(keys)))) == 32
