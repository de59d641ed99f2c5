"""Slots (a user's open sync waits, counted in Redis) after Redis lost or kept a count the
waits no longer match: a wait is never refused for slots nobody holds."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from appliance.security.limits import PREFIX, Rule, Slots

RULE = Rule("sync-waits-per-user", "user", 2)


def test_a_count_below_zero_refuses_no_wait_and_is_mended(redis_url):
    """Slots given back after Redis lost their count left it below zero, for good (no
    expiry): every wait of the user was refused 429 (the lab's Redis drill)."""

    async def scenario() -> tuple[list[int], bytes | None, int]:
        client = aioredis.Redis.from_url(redis_url)
        user = str(uuid.uuid4())
        key = f"{PREFIX}:{RULE.name}:{user}"
        await client.set(key, -5)
        slots = Slots(client, RULE, hold=5, what="waits")
        held = []
        async with slots.slot(user), slots.slot(user):
            held.append(int(await client.get(key)))
        after, ttl = await client.get(key), await client.ttl(key)
        await client.aclose()
        return held, after, ttl

    held, after, ttl = asyncio.run(scenario())
    assert held == [2] and after == b"0" and 0 < ttl <= 35


def test_a_slot_given_back_after_its_count_was_lost_leaves_no_count(redis_url):
    async def scenario() -> bytes | None:
        client = aioredis.Redis.from_url(redis_url)
        user = str(uuid.uuid4())
        slots = Slots(client, RULE, hold=5, what="waits")
        async with slots.slot(user):
            await client.delete(f"{PREFIX}:{RULE.name}:{user}")  # Redis restarted without it
        left = await client.get(f"{PREFIX}:{RULE.name}:{user}")
        await client.aclose()
        return left

    assert asyncio.run(scenario()) is None
