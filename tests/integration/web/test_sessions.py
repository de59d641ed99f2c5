"""Web sessions in a real Redis: what is stored (a hash of the token, never the token), for
how long, and that a dropped session is gone."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest
import redis
import redis.asyncio as aioredis

from appliance.web.sessions import ANONYMOUS_SECONDS, KEY, SessionStore

pytestmark = pytest.mark.integration


def test_sessions_are_kept_under_a_hash_of_the_token_for_their_lifetime(redis_url):
    sync = redis.Redis.from_url(redis_url)
    user = uuid.uuid4()

    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        store = SessionStore(client, 12 * 3600)
        try:
            anonymous, visitor = await store.create()
            token, session = await store.create(user, "a@example.test", operator=True)
            assert session.signed_in and not visitor.signed_in
            assert session.csrf != visitor.csrf and token != anonymous
            assert await store.load(token) == session
            assert await store.load("made-up") is None and await store.load(None) is None

            digest = hashlib.sha256(token.encode()).hexdigest()
            assert sync.exists(KEY.format(digest)) and not sync.keys(f"*{token}*")
            assert 12 * 3600 - 5 <= sync.ttl(KEY.format(digest)) <= 12 * 3600
            anon = KEY.format(hashlib.sha256(anonymous.encode()).hexdigest())
            assert ANONYMOUS_SECONDS - 5 <= sync.ttl(anon) <= ANONYMOUS_SECONDS

            await store.drop(token)
            assert await store.load(token) is None
        finally:
            await client.aclose()

    asyncio.run(scenario())
