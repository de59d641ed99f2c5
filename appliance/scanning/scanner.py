"""The scanning policy the imports follow: scan with clamd, fail closed.

clamd down, still loading its signatures, or answering an error: the scan is tried again
every ``RETRY_INTERVAL`` seconds for up to ``clamd_wait_seconds``; after that the attempt
fails with a retryable SCANNER_UNAVAILABLE (the task runs again later, with backoff). No
path lets an unscanned file through, unless the operator set ``virus_scan=off``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from appliance.errors import PermanentError, RetryableError
from appliance.metrics import VIRUS_SCAN_DURATION, VIRUS_SCANS
from appliance.scanning.clamd import CHUNK, Clamd, Unavailable, Verdict
from appliance.settings import Settings

log = logging.getLogger(__name__)
RETRY_INTERVAL = 2.0  # seconds between tries while clamd is unavailable


class VirusFound(PermanentError):
    code = "VIRUS_FOUND"

    def __init__(self, message: str, signature: str) -> None:
        super().__init__(message)
        self.signature = signature


def enabled(settings: Settings) -> bool:
    return settings.virus_scan != "off"


def client(settings: Settings) -> Clamd:
    return Clamd(settings.effective_clamd_socket, settings.clamd_timeout_seconds)


def check_file(settings: Settings, path: Path, filename: str) -> None:
    """Return if the file at ``path`` is clean (or scanning is off); see ``check_stream``."""

    def read() -> Iterable[bytes]:
        with path.open("rb") as f:
            yield from iter(lambda: f.read(CHUNK), b"")

    check_stream(settings, read, filename)


def check_stream(settings: Settings, read: Callable[[], Iterable[bytes]], filename: str) -> None:
    """Return if the bytes ``read()`` yields are clean (or scanning is off); VirusFound if
    clamd finds a signature in them; a retryable SCANNER_UNAVAILABLE if clamd did not answer
    in time. ``read`` is called again for each try: with encryption at rest it opens the
    sealed file, so clamd always sees the plain bytes (never the ciphertext on disk)."""
    if not enabled(settings):
        return
    verdict = _scan_waiting(client(settings), read, settings.clamd_wait_seconds)
    if not verdict.clean:
        VIRUS_SCANS.labels("infected").inc()
        raise VirusFound(
            f"{filename} contains malware ({verdict.signature}); it was deleted",
            signature=verdict.signature or "unknown",
        )
    VIRUS_SCANS.labels("clean").inc()


def _scan_waiting(clamd: Clamd, read: Callable[[], Iterable[bytes]], wait: float) -> Verdict:
    deadline = time.monotonic() + wait
    while True:
        start = time.perf_counter()
        try:
            verdict = clamd.scan_chunks(read())
        except Unavailable as exc:
            VIRUS_SCANS.labels("unavailable").inc()
            left = deadline - time.monotonic()
            if left <= 0:
                raise RetryableError(
                    "The virus scanner is unavailable; the file waits to be scanned",
                    code="SCANNER_UNAVAILABLE",
                ) from exc
            log.warning("clamd unavailable (%s); trying again", exc)
            time.sleep(min(RETRY_INTERVAL, left))
            continue
        VIRUS_SCAN_DURATION.observe(time.perf_counter() - start)
        return verdict
