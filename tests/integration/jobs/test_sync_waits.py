"""Sync waits are woken by events, not by polling Postgres: a waiter re-reads only when told or
every sync_recheck_seconds, and a subscription that was lost and came back wakes every waiter
(what ended meanwhile was never heard)."""

from __future__ import annotations

import asyncio
import time

import msgspec
import redis.asyncio as aioredis

from appliance.api.events import Notifier
from appliance.conversions.events import EVENTS_CHANNEL
from appliance.conversions.service import until_ended
from appliance.settings import Settings


async def _subscribed(client: aioredis.Redis) -> None:
    for _ in range(100):
        if dict(await client.pubsub_numsub(EVENTS_CHANNEL)).get(EVENTS_CHANNEL.encode()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the notifier never subscribed")


def test_a_lost_subscription_wakes_every_waiter_when_it_is_back(redis_url):
    async def run() -> float:
        notifier = Notifier(redis_url)
        admin = aioredis.Redis.from_url(redis_url)
        await notifier.start()
        try:
            await _subscribed(admin)
            started = time.monotonic()
            waiting = asyncio.create_task(notifier.wait("some-job", 30))
            await asyncio.sleep(0.2)
            await admin.client_kill_filter(_type="pubsub")  # e.g. Redis restarted
            await asyncio.wait_for(waiting, 10)
            return time.monotonic() - started
        finally:
            await notifier.stop()
            await admin.aclose()

    assert asyncio.run(run()) < 5  # woken on resubscribing, not at the 30 s timeout


def test_a_waiter_rereads_only_when_woken_or_every_recheck_interval():
    reads = []

    async def fetch() -> str:
        reads.append(time.monotonic())
        return '{"status": "processing"}'

    def ended(doc: str) -> bool:
        return msgspec.json.decode(doc)["status"] == "finished"

    recheck = Settings().sync_recheck_seconds
    asyncio.run(until_ended(fetch, ended, asyncio.sleep, timeout=3, recheck=recheck))
    assert len(reads) == 2  # at the start and at the timeout; polling every 2 s made 3
    assert reads[1] - reads[0] >= 2.9
