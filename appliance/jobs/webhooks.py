"""The webhook senders of a worker process: a thread that claims due deliveries from the
outbox (``FOR UPDATE SKIP LOCKED``, so every worker process of the fleet shares the work and
none sends a delivery another holds) and hands each to a small pool of threads, at most
``webhook_senders`` in flight.

It wakes when Postgres notifies that deliveries were committed (a listener thread on a
connection of its own), when a retry falls due, and every ``POLL_SECONDS`` in case a
notification was missed (the listener reconnecting). Nothing depends on Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from appliance.conversions.runtime import Runtime
from appliance.conversions.webhook_delivery import Due, Outbox
from appliance.db.queries.webhooks import listening
from appliance.security.sealing import Columns

log = logging.getLogger(__name__)
POLL_SECONDS = 5.0  # longest idle wait when no notification comes
MIN_WAIT = 0.05  # seconds: a due row another sender is claiming right now is not spun on
PURGE_SECONDS = 300.0  # how often ended deliveries past the retention are deleted
LISTEN_RETRY_SECONDS = 5.0


class WebhookSenderThread(threading.Thread):
    def __init__(self, rt: Runtime) -> None:
        super().__init__(daemon=True, name="webhook-sender")
        self.outbox = Outbox(rt.settings, rt.pool, Columns(rt.storage.keyring), rt.storage)
        self.database_url = rt.settings.effective_database_url
        self.slots = rt.settings.webhook_senders
        self.senders = ThreadPoolExecutor(self.slots, thread_name_prefix="webhook")
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.busy = 0
        self.lock = threading.Lock()
        self.listener = threading.Thread(target=self._listen, daemon=True, name="webhook-listen")

    def run(self) -> None:
        self.listener.start()
        purged = 0.0
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                if self._fill():
                    continue  # every free slot got one: there may be more
                if time.monotonic() - purged > PURGE_SECONDS:
                    self.outbox.purge()
                    purged = time.monotonic()
                wait = self._idle_wait()
            except Exception:
                log.exception("webhook sender pass failed")
                wait = POLL_SECONDS
            self.wake.wait(wait)

    def stop(self) -> None:
        """Stop claiming; deliveries in flight finish (each bounded by its timeouts)."""
        self.stopping.set()
        self.wake.set()
        self.join(timeout=10)
        self.senders.shutdown(wait=True)

    def _fill(self) -> bool:
        """Claim as many due deliveries as there are free slots; True when all were filled."""
        with self.lock:
            free = self.slots - self.busy
        if free <= 0:
            return False
        claimed = self.outbox.claim(free)
        for due in claimed:
            with self.lock:
                self.busy += 1
            self.senders.submit(self._send, due)
        return len(claimed) == free

    def _send(self, due: Due) -> None:
        try:
            self.outbox.send(due)
        except Exception:  # its claim lapses and another attempt follows
            log.exception("webhook delivery %s could not be recorded", due.id)
        finally:
            with self.lock:
                self.busy -= 1
            self.wake.set()  # a slot is free

    def _idle_wait(self) -> float:
        with self.lock:
            full = self.busy >= self.slots
        due_in = None if full else self.outbox.next_due()
        if due_in is None:
            return POLL_SECONDS
        return min(POLL_SECONDS, max(due_in, MIN_WAIT))

    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                with listening(self.database_url) as conn:
                    self.wake.set()  # whatever was committed while nobody listened
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.wake.set()
            except psycopg.Error:
                log.warning("webhook listener lost Postgres; polling meanwhile", exc_info=True)
                self.stopping.wait(LISTEN_RETRY_SECONDS)
