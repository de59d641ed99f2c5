"""Task and job ends announced over Redis pub/sub, so the API's sync waits answer at once.

Best effort: a waiter also polls, so a lost message only delays its answer."""

from __future__ import annotations

import logging
from typing import Any

import redis

log = logging.getLogger(__name__)
EVENTS_CHANNEL = "appliance:events"


def announce(client: redis.Redis, *task_ids: Any, ended_job_id: Any = None) -> None:
    """Wake API requests waiting on these tasks, and on their job when their end ended the
    job (job waits answer only then)."""
    try:
        client.publish(EVENTS_CHANNEL, " ".join(str(i) for i in (*task_ids, ended_job_id) if i))
    except redis.RedisError:
        log.warning("could not publish the end of tasks %s", task_ids, exc_info=True)
