"""A database host that dies without a word (no reset: its packets just stop) fails the
statements waiting on it within seconds, not the quarter of an hour the kernel's
retransmissions take, so pooled connections, the requests and tasks holding them, and the
webhook sender's listening connection are freed and the next connection goes to whichever
host is then the primary.

The dead host is a relay (socat) in front of the private Postgres whose port an iptables rule
drops, as a powered-off host's would be; only this test's port is touched."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from appliance.db import async_pool, sync_pool
from appliance.db.queries import webhooks
from appliance.errors import Unavailable
from appliance.local_services import free_port
from tests.conftest import make_settings

# tcp_user_timeout is 10 s (a statement fails ~10 s in) and keepalives end a silent wait (42 s
# measured); without them a statement on a dead peer waits for minutes.
WITHIN = 40


def relay(postgres_url: str, port: int) -> subprocess.Popen[bytes]:
    """A relay (socat) on 127.0.0.1:``port`` to ``postgres_url``'s server, once it answers."""
    target = urlsplit(postgres_url)
    proc = subprocess.Popen(
        [
            "socat",
            f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
            f"TCP:{target.hostname}:{target.port}",
        ],
        start_new_session=True,  # its forked children go with it
    )
    for attempt in range(100):
        try:
            with psycopg.connect(postgres_url.replace(f":{target.port}/", f":{port}/")):
                return proc
        except psycopg.OperationalError:
            assert attempt < 99, "the relay did not come up"
            time.sleep(0.05)
    raise AssertionError("unreachable")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """The relay and its connections gone: the port refuses, open connections are reset."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


@pytest.fixture
def relayed(postgres_url: str) -> Iterator[tuple[str, int]]:
    """``postgres_url`` reached through a relay on a port of its own: (url, port)."""
    target = urlsplit(postgres_url)
    port = free_port()
    proc = relay(postgres_url, port)
    try:
        netloc = target.netloc.replace(f":{target.port}", f":{port}")
        yield urlunsplit(target._replace(netloc=netloc)), port
    finally:
        stop(proc)


@contextmanager
def dead(port: int) -> Iterator[None]:
    """Packets to ``port`` are dropped, as a host powered off would drop them."""
    rule = ["INPUT", "-p", "tcp", "--dport", str(port), "-m", "comment", "--comment",
            "appliance-test-dead-host", "-j", "DROP"]  # fmt: skip
    subprocess.run(["iptables", "-I", *rule], check=True)
    try:
        yield
    finally:
        subprocess.run(["iptables", "-D", *rule], check=True)


def failure_within(call: Callable[[], Any], seconds: float) -> tuple[BaseException | None, float]:
    """What ``call`` raised and when; fails if it had not ended within ``seconds`` (it runs
    in a thread, left to end once the rule is gone)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still waiting after {seconds} s on a dead database host"
    return outcome[0], time.monotonic() - start


def test_a_worker_statement_on_a_dead_host_fails_within_seconds(relayed):
    url, port = relayed
    pool = sync_pool(make_settings({"database_url": url}))
    try:
        with pool.connection() as conn:
            conn.execute("SELECT 1")  # the pooled connection is made and works
        with dead(port):

            def statement() -> None:
                with pool.connection() as conn:
                    conn.execute("SELECT 1")

            error, took = failure_within(statement, WITHIN)
        assert isinstance(error, psycopg.OperationalError), error
        print(f"worker statement on a dead host failed after {took:.1f} s")
        with pool.connection() as conn:  # the broken one was dropped; a new one works
            assert conn.execute("SELECT 1").fetchone() is not None
    finally:
        pool.close()


def test_an_api_request_on_a_dead_host_is_answered_unavailable_within_seconds(relayed):
    url, port = relayed
    settings = make_settings({"database_url": url})

    async def scenario() -> tuple[BaseException | None, float]:
        pool = await async_pool(settings)
        try:
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
            with dead(port):
                start = time.monotonic()
                try:
                    async with asyncio.timeout(WITHIN), pool.connection() as conn:
                        await conn.execute("SELECT 1")
                except Unavailable as exc:
                    return exc, time.monotonic() - start
            return None, time.monotonic() - start
        finally:
            await pool.close()

    error, took = asyncio.run(scenario())
    assert isinstance(error, Unavailable), f"no 503 within {WITHIN} s (took {took:.1f} s)"
    assert error.retry_after


def test_the_webhook_senders_listening_connection_notices_a_dead_host(relayed):
    url, port = relayed
    conn = webhooks.listening(url)
    try:
        with dead(port):

            def wait() -> None:
                for _ in conn.notifies(timeout=WITHIN + 5):
                    pass
                conn.execute("SELECT 1")  # a quiet wait that ended: the link must be gone

            error, took = failure_within(wait, WITHIN + 10)
        assert isinstance(error, psycopg.OperationalError), error
        print(f"listening connection to a dead host failed after {took:.1f} s")
    finally:
        conn.close()


# The database away this long (a failover's 15 s and more): psycopg_pool's own backoff would
# by then wait 16 s between tries (back 12.6 and 15.2 s after the database, measured without
# the cap); the pools' is capped at 2 s (db.RECONNECT_MAX_DELAY).
AWAY_SECONDS = 16
RECONNECTED_WITHIN = 5


def test_both_pools_reconnect_within_seconds_when_the_database_is_back(postgres_url):
    """The database goes away (its port refuses, its connections reset) for longer than a
    failover takes; once it answers again each pool has a connection within a few seconds,
    not after the doubled delays of psycopg_pool's backoff."""
    target = urlsplit(postgres_url)
    port = free_port()
    proc = relay(postgres_url, port)
    netloc = target.netloc.replace(f":{target.port}", f":{port}")
    # one connection a pool: a request then waits for the pool's own reconnection (at its
    # size, as under load) instead of growing it
    url = urlunsplit(target._replace(netloc=netloc))
    settings = make_settings({"database_url": url, "db_pool_size": 1})
    sync = sync_pool(settings)

    def sync_statement(timeout: float | None = None) -> None:
        with sync.connection(timeout) as conn:
            conn.execute("SELECT 1")

    async def scenario() -> tuple[float, float]:
        nonlocal proc
        api = await async_pool(settings)
        try:
            await asyncio.to_thread(stop, proc)
            with pytest.raises(psycopg.OperationalError):
                await asyncio.to_thread(sync_statement)
            with pytest.raises(Unavailable):
                async with api.connection() as conn:
                    await conn.execute("SELECT 1")
            await asyncio.sleep(AWAY_SECONDS)
            proc = await asyncio.to_thread(relay, postgres_url, port)
            back = time.monotonic()
            while True:  # a request on a connection lost while away fails; the next one works
                try:
                    async with api.connection(timeout=30) as conn:
                        await conn.execute("SELECT 1")
                    break
                except Unavailable:
                    assert time.monotonic() - back < 30, "the api pool never reconnected"
                    await asyncio.sleep(0.1)
            api_took = time.monotonic() - back
            await asyncio.to_thread(sync_statement, 30)
            return api_took, time.monotonic() - back
        finally:
            await api.close()

    try:
        api_took, sync_took = asyncio.run(scenario())
    finally:
        sync.close()
        stop(proc)
    print(f"after {AWAY_SECONDS} s away: api pool back in {api_took:.1f} s, worker pool in"
          f" {sync_took:.1f} s")  # fmt: skip
    assert api_took < RECONNECTED_WITHIN
    assert sync_took < RECONNECTED_WITHIN
