"""An S3 store that does not answer is a retryable failure within seconds, never a request
hung for the minio client's five minutes (the lab's storage drill: tests/deploy/test_drills.py)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from appliance.errors import RetryableError
from appliance.settings import Settings
from appliance.storage.s3 import S3Storage


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable() -> S3Storage:
    return S3Storage.from_settings(
        Settings.from_env(
            {
                "APPLIANCE_STORAGE": "s3",
                "APPLIANCE_S3_ENDPOINT": f"127.0.0.1:{closed_port()}",
                "APPLIANCE_S3_ACCESS_KEY": "a",
                "APPLIANCE_S3_SECRET_KEY": "b",
            }
        )
    )


def test_each_call_to_an_unreachable_store_is_a_storage_error_within_seconds(unreachable, tmp_path):
    source = tmp_path / "in"
    source.write_bytes(b"x")
    calls = {
        "exists": lambda: unreachable.exists("k"),
        "put_path": lambda: unreachable.put_path("k", source),
        "get_to_path": lambda: unreachable.get_to_path("k", tmp_path / "out"),
    }
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(RetryableError) as raised:
            call()
        assert raised.value.code == "STORAGE_ERROR", name
        assert time.monotonic() - started < 5, name


def test_a_workers_store_is_tried_again_until_it_answers(tmp_path):
    """The workers' client (patient) rides out a store that comes back after a moment."""
    port = closed_port()
    storage = S3Storage.from_settings(
        Settings.from_env(
            {
                "APPLIANCE_STORAGE": "s3",
                "APPLIANCE_S3_ENDPOINT": f"127.0.0.1:{port}",
                "APPLIANCE_S3_ACCESS_KEY": "a",
                "APPLIANCE_S3_SECRET_KEY": "b",
            }
        ),
        patient=True,
    )

    def answer_later() -> None:
        time.sleep(2)
        with socket.create_server(("127.0.0.1", port)) as server:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer_later)
    thread.start()
    try:
        assert storage.exists("sha256/ab/abc") is False  # answered: no such object
    finally:
        thread.join()
