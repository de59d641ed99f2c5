"""The pipelined Redis client on a real Redis: concurrent commands share one connection and
each gets its own reply; errors, cancelled callers, a lost connection, a silent server and
an unreachable one each fail only what they must, and the client connects again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import uvloop

from appliance.db import redis_pipe
from appliance.db.redis_pipe import PipelinedRedis
from appliance.local_services import free_port

Run = Callable[[Callable[[], Awaitable[Any]]], Any]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a scenario on each event loop: the API's is uvloop, whose transports are not
    asyncio's classes."""
    runner = uvloop.run if request.param == "uvloop" else asyncio.run
    return lambda scenario: runner(scenario())


def connections_received(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_connections_received"])
    finally:
        client.close()


def test_concurrent_commands_share_one_connection_and_each_gets_its_own_reply(run, redis_url):
    before = connections_received(redis_url)

    async def scenario() -> list[Any]:
        client = PipelinedRedis(redis_url)
        await client.execute_command("PING")  # connected (readers do not wait for a connect)
        await asyncio.gather(*(client.set(f"k{i}", f"v{i}") for i in range(300)))
        got = await asyncio.gather(*(client.execute_command("GET", f"k{i}") for i in range(300)))
        await client.aclose()
        return got

    assert run(scenario) == [f"v{i}".encode() for i in range(300)]
    assert connections_received(redis_url) - before == 2  # the client's one, and ours above


def test_commands_during_a_connect_fail_at_once_unless_the_client_is_patient(run, redis_url):
    async def scenario(patient: bool) -> list[Any]:
        client = PipelinedRedis(redis_url, patient=patient)
        try:  # the first starts the connect, the second comes while it is under way
            return await asyncio.gather(
                client.execute_command("PING"), client.set("p", b"1"), return_exceptions=True
            )
        finally:
            await client.aclose()

    first, second = run(lambda: scenario(False))
    assert first == b"PONG" and isinstance(second, redis.ConnectionError)  # a reader's
    assert run(lambda: scenario(True)) == [b"PONG", True]  # a writer's waits for it (set: True)


def test_set_answers_as_redis_py_does(run, redis_url):
    async def scenario() -> list[Any]:
        client = PipelinedRedis(redis_url)
        try:
            return [
                await client.set("t", b"one", nx=True, get=True, ex=60),  # none before
                await client.set("t", b"two", nx=True, get=True, ex=60),  # kept: the old one
                await client.set("u", "x"),
                await client.execute_command("TTL", "t"),
            ]
        finally:
            await client.aclose()

    first, second, plain, ttl = run(scenario)
    assert (first, second, plain) == (None, b"one", True)
    assert 0 < ttl <= 60


def test_an_error_reply_fails_its_own_command_only(run, redis_url):
    async def scenario() -> list[Any]:
        client = PipelinedRedis(redis_url)
        await client.set("text", "not a number")
        try:
            return await asyncio.gather(
                client.execute_command("INCR", "text"),
                client.execute_command("INCR", "counter"),
                return_exceptions=True,
            )
        finally:
            await client.aclose()

    failed, counted = run(scenario)
    assert isinstance(failed, redis.ResponseError) and "not an integer" in str(failed)
    assert counted == 1


def test_a_cancelled_caller_leaves_the_replies_in_step(run, redis_url):
    async def scenario() -> Any:
        client = PipelinedRedis(redis_url)
        await client.set("a", "A")
        await client.set("b", "B")
        gone = asyncio.create_task(client.execute_command("GET", "a"))
        await asyncio.sleep(0)  # sent (or about to be), then its caller gives up
        gone.cancel()
        try:
            return await client.execute_command("GET", "b")
        finally:
            await client.aclose()

    assert run(scenario) == b"B"


def test_a_killed_connection_fails_what_waits_and_the_next_command_connects_again(run, redis_url):
    admin = redis.Redis.from_url(redis_url)

    async def scenario() -> tuple[Any, Any]:
        client = PipelinedRedis(redis_url)
        own_id = await client.execute_command("CLIENT", "ID")
        # BLPOP holds the connection's reply stream while the connection is killed
        waiting = asyncio.create_task(client.execute_command("BLPOP", "never", 10))
        await asyncio.sleep(0.2)
        assert admin.client_kill_filter(_id=own_id) == 1
        lost = await asyncio.gather(waiting, return_exceptions=True)
        again = await client.execute_command("PING")
        await client.aclose()
        return lost[0], again

    try:
        lost, again = run(scenario)
    finally:
        admin.close()
    assert isinstance(lost, redis.ConnectionError)
    assert again == b"PONG"


def test_a_silent_server_fails_every_waiting_command_after_the_timeout(run):
    port = free_port()

    async def scenario() -> tuple[list[Any], float, int]:
        accepted = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)
            await reader.read()  # takes commands, answers none

        server = await asyncio.start_server(silent, "127.0.0.1", port)
        client = PipelinedRedis(f"redis://127.0.0.1:{port}", timeout=0.5)
        await client._connected()  # its TCP connection is made; it answers nothing
        start = time.monotonic()
        failed = await asyncio.gather(
            *(client.execute_command("PING") for _ in range(5)), return_exceptions=True
        )
        took = time.monotonic() - start
        with pytest.raises(redis.TimeoutError):  # a new connection, as silent
            await client.execute_command("PING")
        server.close()
        for writer in accepted:
            writer.close()
        await client.aclose()
        return failed, took, len(accepted)

    failed, took, connections = run(scenario)
    assert all(isinstance(f, redis.TimeoutError) for f in failed), failed
    assert 0.4 < took < 2.0
    assert connections == 2


def test_an_unreachable_redis_fails_fast_and_is_tried_again_after_a_pause(run, monkeypatch):
    port = free_port()  # nothing listens there
    monkeypatch.setattr(redis_pipe, "RECONNECT_SECONDS", 0.3)
    tries = []

    async def scenario() -> tuple[Any, Any, Any]:
        loop = asyncio.get_running_loop()
        real = loop.create_connection

        async def counted(*args: Any, **kwargs: Any) -> Any:
            tries.append(1)
            return await real(*args, **kwargs)

        loop.create_connection = counted  # type: ignore[method-assign]
        client = PipelinedRedis(f"redis://127.0.0.1:{port}")
        results = []
        for pause in (0, 0, 0.4):
            await asyncio.sleep(pause)
            results.append(
                await asyncio.gather(client.execute_command("PING"), return_exceptions=True)
            )
        return tuple(r[0] for r in results)

    first, during_pause, after_pause = run(scenario)
    assert all(isinstance(r, redis.ConnectionError) for r in (first, during_pause, after_pause))
    assert len(tries) == 2  # the first and the one after the pause; none during it


def test_a_wrong_password_is_refused(run, redis_url):
    async def scenario() -> Any:
        client = PipelinedRedis(redis_url.replace("redis://", "redis://nobody:wrong@"))
        return await asyncio.gather(client.execute_command("PING"), return_exceptions=True)

    (refused,) = run(scenario)
    assert isinstance(refused, redis.RedisError)


def test_a_user_and_password_log_in_and_the_url_s_database_is_selected(run, redis_url):
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "piper", "on", ">s3cret", "~*", "+@all")
    base = redis_url.split("://", 1)[1].rsplit("/", 1)[0]

    async def scenario() -> Any:
        client = PipelinedRedis(f"redis://piper:s3cret@{base}/3")
        try:
            await client.set("where", "db 3")
            return await client.execute_command("ACL", "WHOAMI")
        finally:
            await client.aclose()

    try:
        assert run(scenario) == b"piper"
        assert redis.Redis.from_url(f"redis://{base}/3").get("where") == b"db 3"
        assert admin.get("where") is None  # not in the default database
    finally:
        admin.execute_command("ACL", "DELUSER", "piper")
        admin.close()
