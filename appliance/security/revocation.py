"""Revocations told to every API process over Redis pub/sub, so that a revoked or expired key
and a disabled or deleted user's keys stop working at once, whatever the per-process cache of
authenticated keys holds. The database is the truth; a process trusts its cache only while it
hears this channel (``api.events.Notifier``), and empties it whenever it starts hearing again."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

import redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
REVOCATIONS_CHANNEL = "appliance:revocations"


def announce(
    redis_url: str, *, keys: Iterable[bytes] = (), users: Iterable[uuid.UUID] = ()
) -> bool:
    """Tell the API processes to forget these keys (by hash) and every key of these users;
    False when Redis could not be told (their caches then drop them within
    ``auth.CACHE_SECONDS``)."""
    words = [f"key:{digest.hex()}" for digest in keys] + [f"user:{u}" for u in users]
    if not words:
        return True
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        try:
            client.publish(REVOCATIONS_CHANNEL, " ".join(words))
        finally:
            client.close()
    except RedisError:
        log.warning("could not announce revocations %s", words, exc_info=True)
        return False
    return True
