"""The limit is shared through Redis: two processes counting at once allow exactly the limit."""

from __future__ import annotations

import asyncio
import multiprocessing

import redis.asyncio as aioredis

from appliance.security.limits import Limiter, Rule

RULE = Rule("shared-test", "ip", 150, window=3600)


def _count(url: str, ident: str, n: int, out: multiprocessing.Queue) -> None:
    async def run() -> int:
        client = aioredis.Redis.from_url(url)
        limiter = Limiter(client)
        allowed = sum([(await limiter.count(RULE, ident)).allowed for _ in range(n)])
        await client.aclose()
        return allowed

    out.put(asyncio.run(run()))


def test_two_processes_counting_at_once_allow_exactly_the_limit(redis_url):
    ident = "198.51.100.7"
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters, as two API hosts
    out = spawn.Queue()
    procs = [spawn.Process(target=_count, args=(redis_url, ident, 120, out)) for _ in range(2)]
    for p in procs:
        p.start()
    allowed = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    assert sum(allowed) == RULE.limit  # 240 attempts, 150 allowed, however they interleave
    assert all(a > 0 for a in allowed)

    async def seen() -> int:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return (await Limiter(client).peek(RULE, ident)).used
        finally:
            await client.aclose()

    assert asyncio.run(seen()) == 240
