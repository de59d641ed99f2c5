"""The change feed (migration 0025, db/changes.py) on a real Postgres: a watching connection is
told which jobs its own writes changed, once they commit and before the committing call
returns, whatever statement wrote."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
import redis

from appliance.db import async_pool
from appliance.db.changes import (
    LoopStatusTokens,
    StatusTokens,
    token_key,
    token_seconds,
    watch,
    watch_async,
)
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def _user(conn) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO users (email) VALUES (%s) RETURNING id", (f"{uuid.uuid4().hex}@x.test",)
    ).fetchone()[0]


def _job(conn, user) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO jobs (user_id, expires_at) VALUES (%s, now() + '1 hour') RETURNING id",
        (user,),
    ).fetchone()[0]


def _task(conn, user, job) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO tasks (job_id, user_id, name, operation, queue, expires_at)"
        " VALUES (%s, %s, 't', 'convert', 'light', now() + '1 hour') RETURNING id",
        (job, user),
    ).fetchone()[0]


@pytest.fixture
def conn(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        yield conn


def test_a_watching_connection_hears_its_own_changes_when_they_commit(conn):
    heard: list[list[str]] = []
    user = _user(conn)
    job = _job(conn, user)
    jobless = _task(conn, user, None)
    watch(conn, heard.append)
    with conn.transaction():
        task = _task(conn, user, job)
        conn.execute("UPDATE tasks SET percent = 50 WHERE id = %s", (task,))
        assert heard == []  # nothing before the commit
    assert heard == [[str(job)]]  # both statements' (Postgres sends a repeat once)
    heard.clear()
    conn.execute("UPDATE tasks SET percent = 10 WHERE id = %s", (jobless,))
    assert heard == [[str(jobless)]]  # a job-less task is its own scope
    heard.clear()
    conn.execute("UPDATE jobs SET tag = 'x' WHERE id = %s", (job,))
    conn.execute("DELETE FROM jobs WHERE id = %s", (job,))  # its tasks go with it
    assert heard == [[str(job)], [str(job)]]


def test_a_rolled_back_change_is_not_heard(conn):
    heard: list[list[str]] = []
    user = _user(conn)
    job = _job(conn, user)
    watch(conn, heard.append)
    with pytest.raises(RuntimeError), conn.transaction():
        conn.execute("UPDATE jobs SET tag = 'x' WHERE id = %s", (job,))
        raise RuntimeError("rolled back")
    assert heard == []


def test_a_large_change_is_heard_in_chunks_of_whole_ids(conn):
    user = _user(conn)
    jobs = {str(_job(conn, user)) for _ in range(450)}
    heard: list[list[str]] = []
    watch(conn, heard.append)
    conn.execute("UPDATE jobs SET tag = 'all' WHERE user_id = %s", (user,))
    assert len(heard) == 3 and max(len(ids) for ids in heard) == 200
    assert {i for ids in heard for i in ids} == jobs


def test_a_connection_that_does_not_watch_tells_nobody(conn, postgres_url):
    heard: list[list[str]] = []
    user = _user(conn)
    job = _job(conn, user)
    watch(conn, heard.append)
    with psycopg.connect(postgres_url, autocommit=True) as other:
        other.execute("UPDATE jobs SET tag = 'x' WHERE id = %s", (job,))
    conn.execute("SELECT 1")  # would carry a notification, had there been one for it
    assert heard == []


def test_an_async_connection_hears_its_changes_as_the_write_returns(postgres_url):
    async def run() -> list[list[str]]:
        heard: list[list[str]] = []
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as c:
            cur = await c.execute("INSERT INTO users (email) VALUES ('a@x.test') RETURNING id")
            user = (await cur.fetchone())[0]
            cur = await c.execute(
                "INSERT INTO jobs (user_id, expires_at) VALUES (%s, now()) RETURNING id", (user,)
            )
            job = (await cur.fetchone())[0]
            await watch_async(c, heard.append)
            await c.execute("UPDATE jobs SET tag = 'x' WHERE id = %s", (job,))
            assert heard == [[str(job)]]
        return heard

    asyncio.run(run())


def test_status_tokens_are_renewed_on_commit_and_caught_up_after_redis_returns(conn, redis_url):
    client = redis.Redis.from_url(redis_url)
    tokens = StatusTokens(client)
    watch(conn, tokens.renew)
    user = _user(conn)
    job = _job(conn, user)
    conn.execute("UPDATE jobs SET tag = 'a' WHERE id = %s", (job,))
    first = client.get(token_key(str(job)))
    assert first is not None and 600 < client.ttl(token_key(str(job))) <= 3600
    conn.execute("UPDATE jobs SET tag = 'b' WHERE id = %s", (job,))
    second = client.get(token_key(str(job)))
    assert second not in (None, first)

    tokens.client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    conn.execute("UPDATE jobs SET tag = 'c' WHERE id = %s", (job,))  # Redis away: kept
    assert client.get(token_key(str(job))) == second
    tokens.client = client
    other = _job(conn, user)
    conn.execute("UPDATE jobs SET tag = 'd' WHERE id = %s", (other,))
    assert client.get(token_key(str(job))) not in (None, second)  # caught up
    assert client.get(token_key(str(other))) is not None


def test_a_token_lives_an_hour_or_as_long_as_jobs_are_kept_if_that_is_shorter(conn, redis_url):
    assert token_seconds(24) == 3600
    assert token_seconds(0.05) == 180
    client = redis.Redis.from_url(redis_url)
    watch(conn, StatusTokens(client, token_seconds(0.05)).renew)
    job = _job(conn, _user(conn))
    conn.execute("UPDATE jobs SET tag = 'a' WHERE id = %s", (job,))
    assert 0 < client.ttl(token_key(str(job))) <= 180


def test_the_api_pool_renews_as_its_block_ends_without_holding_the_event_loop(
    conn, postgres_url, redis_url
):
    """The API's pool gathers the jobs a ``connection`` block's writes changed and awaits
    their renewal through the loop's own Redis client as the block ends: the token is new
    when the caller goes on, the loop meanwhile serves others (here the renewal waits 0.3 s
    behind a blocking command on the same connection), and a block cancelled after its
    write still renews."""
    user = _user(conn)
    job, other = _job(conn, user), _job(conn, user)
    client = redis.Redis.from_url(redis_url)

    async def scene() -> tuple[list[bytes | None], int, bytes | None]:
        tokens = LoopStatusTokens.at(redis_url, 24)
        pool = await async_pool(
            make_settings({"database_url": postgres_url}), on_change=tokens.renew
        )
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        seen: list[bytes | None] = []
        try:
            async with pool.connection() as c:
                await c.execute("UPDATE jobs SET tag = 'x' WHERE id = %s", (job,))
                seen.append(client.get(token_key(str(job))))  # committed, not renewed yet
                # the loop's Redis connection busy 0.3 s (a blocking pop of nothing) ahead
                # of the renewal, which is pipelined behind it
                busy = asyncio.create_task(
                    tokens.client.execute_command("BLPOP", f"t:{uuid.uuid4().hex}", "0.3")
                )
                await asyncio.sleep(0)  # sent first
            seen.append(client.get(token_key(str(job))))  # renewed before the block returned
            await busy

            async def write_then_wait() -> None:
                async with pool.connection() as c:
                    await c.execute("UPDATE jobs SET tag = 'y' WHERE id = %s", (other,))
                    await asyncio.sleep(10)  # cancelled here, after its commit

            writer = asyncio.create_task(write_then_wait())
            await asyncio.sleep(0.2)
            writer.cancel()
            await asyncio.sleep(0.2)
        finally:
            ticker.cancel()
            await pool.close()
            await tokens.client.aclose()
        return seen, ticks, client.get(token_key(str(other)))

    (before, after), ticks, cancelled = asyncio.run(scene())
    assert before is None and after is not None
    assert ticks >= 15  # the loop went on while the renewal waited on Redis
    assert cancelled is not None
