"""What a worker process holds while it runs tasks: built once on boot, shared by its threads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import redis

from appliance.conversions.task import Dispatcher
from appliance.db import SyncPool, sync_pool
from appliance.db.changes import StatusTokens
from appliance.engines import Engine
from appliance.engines.registry import Registry
from appliance.settings import Settings
from appliance.storage import make_storage
from appliance.storage.sealed import SealedStorage


@dataclass
class Runtime:
    settings: Settings
    pool: SyncPool
    storage: SealedStorage
    registry: Registry
    dispatcher: Dispatcher
    redis: redis.Redis  # task ends are announced here (``events``)

    def work_root(self) -> Path:
        """Where runs make their temporary directories."""
        root = self.settings.data_path / "work"
        root.mkdir(parents=True, exist_ok=True)
        return root


def build_runtime(settings: Settings, dispatcher: Dispatcher) -> Runtime:
    storage = make_storage(settings, patient=True)  # a task waits out a store outage
    storage.ensure_ready()
    # Every write renews the changed jobs' status tokens as it commits (status_cache).
    tokens = StatusTokens.at(settings.effective_redis_url, settings.job_retention_hours)
    return Runtime(
        settings=settings,
        pool=sync_pool(settings, on_change=tokens.renew),
        storage=storage,
        registry=Registry(engines_for(settings)),
        dispatcher=dispatcher,
        redis=redis.Redis.from_url(settings.effective_redis_url),
    )


def engines_for(settings: Settings) -> list[Engine]:
    """The enabled engines as a worker runs them: in sandboxed helpers unless turned off."""
    from appliance.engines.enabled import enabled_engines
    from appliance.engines.sandbox import HelperPool, limits_for, sandboxed

    if settings.sandbox == "off":
        return enabled_engines()
    limits = limits_for(settings)
    size = settings.engine_helpers or os.cpu_count() or 1
    pool = HelperPool(settings.data_path / "sandbox", limits, size=size)
    return sandboxed(enabled_engines(), pool)
