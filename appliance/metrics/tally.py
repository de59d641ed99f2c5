"""Counts of a hot path kept in the process and written to their counter at most once every
``FLUSH_SECONDS``, off the caller's path.

An update of a multiprocess metric costs a lock and an mmap write (prometheus-client's
multiprocess mode); on a status read served from the cache that was 7-8% of the API process's
time under load. A tally costs a dict update. A scrape may lag by up to a second, and the
last second before a process dies is lost (as with ``http.HttpMetrics``'s tallies).
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter

FLUSH_SECONDS = 1.0


class Tally:
    """``inc(*labels)`` for ``counter``; written by ``flush``, which the first count after a
    flush schedules on the running event loop (without one, each count is written at once;
    a loop that ended with a flush pending leaves it to the next loop's count)."""

    def __init__(self, counter: Counter, seconds: float = FLUSH_SECONDS) -> None:
        self.counter = counter
        self.seconds = seconds
        self._counts: dict[tuple[str, ...], int] = {}
        self._pending_on: asyncio.AbstractEventLoop | None = None

    def inc(self, *labels: str) -> None:
        self._counts[labels] = self._counts.get(labels, 0) + 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._pending_on is not loop:
            self._pending_on = loop
            loop.call_later(self.seconds, self.flush)

    def flush(self) -> None:
        self._pending_on = None
        counts, self._counts = self._counts, {}
        for labels, n in counts.items():
            self.counter.labels(*labels).inc(n)
