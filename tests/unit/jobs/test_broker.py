"""The broker's consumers fetch again within APPLIANCE_WORKER_POLL_MS, whatever the worker's
own (longer) timeout asks for; no Redis is contacted to build them."""

from __future__ import annotations

from appliance.jobs.broker import make_broker
from appliance.settings import Settings


def test_consumers_poll_no_slower_than_the_setting():
    broker = make_broker(Settings(redis_url="redis://127.0.0.1:1/0", worker_poll_ms=40))
    assert broker.consume("office", prefetch=4, timeout=1000).timeout == 40
    assert broker.consume("office", prefetch=4, timeout=10).timeout == 10
    assert Settings().worker_poll_ms < 1000  # below Dramatiq's own 1 s backoff ceiling
