"""Revocations told over Redis: several keys and users in one message, a True answer once
told, False (and a warning naming what was not told) when Redis cannot be reached."""

from __future__ import annotations

import logging
import uuid

import redis

from appliance import local_services
from appliance.security.revocation import REVOCATIONS_CHANNEL, announce


def test_keys_and_users_are_told_in_one_message(redis_url):
    user = uuid.uuid4()
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(REVOCATIONS_CHANNEL)
    try:
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        assert announce(redis_url, keys=[b"\x01\x02", b"\xff"], users=[user]) is True
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message["data"].decode().split(" ") == ["key:0102", "key:ff", f"user:{user}"]
        assert announce(redis_url) is True  # nothing to tell: nothing sent
        assert pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5) is None
    finally:
        pubsub.close()
        client.close()


def test_an_unreachable_redis_is_a_false_answer_and_a_warning(caplog):
    nobody = f"redis://127.0.0.1:{local_services.free_port()}/0"  # reserved, never bound
    with caplog.at_level(logging.WARNING, logger="appliance.security.revocation"):
        assert announce(nobody, keys=[b"\xab"]) is False
    [record] = caplog.records
    assert record.getMessage() == "could not announce revocations ['key:ab']"
    assert record.exc_info is not None
