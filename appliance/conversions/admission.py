"""New work refused while the queues it needs cannot take it soon.

A queue class whose backlog (tasks due and not yet picked up by a worker) is past
``max_queue_backlog`` takes no new jobs: the client is answered 503 with Retry-After at once,
rather than its job waiting out any sensible deadline, and nothing of it is stored. Jobs
already accepted are never touched. The backlog is read from the queue side at most every
``CHECK_SECONDS`` per API process; when it cannot be read, new work is let in (the reconciler
enqueues what Redis missed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from appliance.conversions.task import Dispatcher
from appliance.engines import QUEUE_CLASSES
from appliance.errors import Unavailable
from appliance.metrics import ADMISSION_REJECTIONS

log = logging.getLogger(__name__)
CHECK_SECONDS = 1.0
RETRY_AFTER = 30  # seconds: a backlog past the cap takes minutes to drain, not seconds


class Backlog:
    def __init__(self, dispatcher: Dispatcher, limit: int) -> None:
        self.dispatcher = dispatcher
        self.limit = limit
        self._depths: dict[str, int] = {}
        self._read_at = float("-inf")

    async def admit(self, queues: Iterable[str]) -> None:
        """Raise ``Unavailable`` if any of ``queues`` is past the limit."""
        if not self.limit:
            return
        depths = await self._current()
        full = sorted({q for q in queues if depths.get(q, 0) >= self.limit})
        if full:
            ADMISSION_REJECTIONS.labels("queue-backlog").inc()
            raise Unavailable(
                f"The appliance is busy: {', '.join(full)} work has more than {self.limit}"
                " tasks waiting; try again later",
                retry_after=RETRY_AFTER,
                code="QUEUE_FULL",
            )

    async def _current(self) -> dict[str, int]:
        now = time.monotonic()
        if now - self._read_at >= CHECK_SECONDS:
            self._read_at = now
            try:
                self._depths = await asyncio.to_thread(self.dispatcher.backlog, QUEUE_CLASSES)
            except Exception:
                log.warning("queue backlog unreadable; admitting new work", exc_info=True)
                self._depths = {}
        return self._depths
