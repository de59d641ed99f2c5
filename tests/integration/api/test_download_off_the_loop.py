"""A download's storage look-up (on S3: a ranged read of the sealed header, a round trip) runs
in a thread, not in the API's event loop: while one is slow, the process's other
requests are answered. In the lab fleet they held every request of an api host for the round
trips to S3, some three-quarters of the time under load."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from litestar import Litestar
from litestar.testing import TestClient

pytestmark = pytest.mark.integration

SLOW = 0.8  # seconds the storage look-up takes here


def test_a_slow_storage_lookup_of_a_download_holds_no_other_request(
    app: Litestar, api_key: str, tmp_path: Path
) -> None:
    with TestClient(app) as client:
        storage = client.app.state.services.jobs.storage
        src = tmp_path / "out.txt"
        src.write_bytes(b"converted\n")
        storage.put_path("files/ab/cdef", src, owner=None)
        url = urlsplit(storage.download_url("files/ab/cdef", "out.txt", 60))
        plain_size = storage.plain_size

        def slow_plain_size(key: str) -> int | None:
            time.sleep(SLOW)  # a far, busy object store
            return plain_size(key)

        storage.plain_size = slow_plain_size
        answers: dict[str, object] = {}

        def download() -> None:
            answers["download"] = client.get(f"{url.path}?{url.query}")

        downloading = threading.Thread(target=download)
        downloading.start()
        time.sleep(0.2)  # the download is in its look-up
        started = time.monotonic()
        live = client.get("/health/live")
        answered_in = time.monotonic() - started
        downloading.join(10)
    assert live.status_code == 200
    assert answered_in < SLOW / 2, f"a health check waited {answered_in:.2f} s for a download"
    reply = answers["download"]
    assert reply.status_code == 200, reply.text  # type: ignore[attr-defined]
    assert reply.content == b"converted\n"  # type: ignore[attr-defined]
    assert reply.headers["content-length"] == "10"  # type: ignore[attr-defined]
