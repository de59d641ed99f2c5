"""Users and keys as an operator manages them (`appliance users|keys ...`), and revocation:
a revoked or expired key and a disabled user's keys stop working at once, however the API
process's cache of authenticated keys stands."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis.asyncio as aioredis

from appliance.cli import main
from appliance.db import async_pool
from appliance.errors import Unauthenticated
from appliance.security.auth import Authenticator
from appliance.security.revocation import REVOCATIONS_CHANNEL


@pytest.fixture
def cli(postgres_url, redis_url, monkeypatch, capsys):
    monkeypatch.setenv("APPLIANCE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("APPLIANCE_REDIS_URL", redis_url)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _rows(out: str) -> list[dict[str, str]]:
    header, *lines = out.strip().split("\n")
    return [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]


def test_users_are_created_listed_disabled_enabled_and_deleted(cli, postgres_url):
    code, out, _ = cli("users", "create", "ada@example.test")
    assert code == 0 and uuid.UUID(out.strip())
    assert cli("keys", "create", "--user", "ada@example.test")[0] == 0
    [ada] = [u for u in _rows(cli("users", "list")[1]) if u["email"] == "ada@example.test"]
    assert ada["keys"] == "1" and ada["disabled_at"] == "-"
    assert cli("users", "disable", "ada@example.test")[0] == 0
    [ada] = [u for u in _rows(cli("users", "list")[1]) if u["email"] == "ada@example.test"]
    assert ada["disabled_at"] != "-"
    assert cli("users", "enable", "ada@example.test")[0] == 0
    assert cli("users", "delete", "ada@example.test")[0] == 0
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 0
    code, _, err = cli("users", "disable", "ada@example.test")
    assert code == 2 and "no user ada@example.test" in err


def test_keys_have_a_name_scopes_and_an_expiry_and_are_listed_and_revoked(cli):
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    code, out, _ = cli(
        "keys", "create", "--user", "bo@example.test", "--scopes", "task.read",
        "--name", "ci", "--expires", later,
    )  # fmt: skip
    assert code == 0 and out.startswith("apl_")
    [key] = _rows(cli("keys", "list", "--user", "bo@example.test")[1])
    assert (key["name"], key["scopes"], key["prefix"]) == ("ci", "task.read", out[:8])
    assert key["expires_at"] != "-" and key["revoked_at"] == "-"
    assert cli("keys", "revoke", key["id"])[0] == 0
    [key] = _rows(cli("keys", "list", "--user", "bo@example.test")[1])
    assert key["revoked_at"] != "-"
    for bad in (
        ("keys", "create", "--user", "bo@example.test", "--scopes", "root"),
        ("keys", "create", "--user", "bo@example.test", "--expires", "2001-01-01T00:00:00"),
        ("keys", "create", "--user", "bo@example.test", "--expires", "tomorrow"),
        ("keys", "revoke", "not-an-id"),
        ("keys", "revoke", str(uuid.uuid4())),
    ):
        code, _, err = cli(*bad)
        assert code == 2 and err.startswith("appliance: "), (bad, err)
        if "root" in bad:
            assert "unknown scopes ['root']; known: task.read, task.write" in err, err
        if "2001-01-01T00:00:00" in bad:
            assert "has passed" in err, err


async def async_pool_for(url):
    from appliance.settings import Settings

    return await async_pool(Settings.from_env({"APPLIANCE_DATABASE_URL": url}))


def test_a_cached_key_is_trusted_only_while_revocations_are_heard(cli, postgres_url):
    key = cli("keys", "create", "--user", "cy@example.test")[1].strip()
    header = f"Bearer {key}"

    async def run(trusted: bool) -> bool:
        pool = await async_pool_for(postgres_url)
        auth = Authenticator(pool, trusted=lambda: trusted)
        try:
            await auth.authenticate(header)  # cached now
            with psycopg.connect(postgres_url, autocommit=True) as conn:  # revoked unheard
                conn.execute("UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL")
            try:
                await auth.authenticate(header)
                return True
            except Unauthenticated:
                return False
            finally:
                with psycopg.connect(postgres_url, autocommit=True) as conn:
                    conn.execute("UPDATE api_keys SET revoked_at = NULL")
        finally:
            await pool.close()

    assert asyncio.run(run(trusted=True)) is True  # what the cache is for
    assert asyncio.run(run(trusted=False)) is False  # not hearing revocations: no cache


def test_an_expiring_key_leaves_the_cache_when_it_expires(cli, postgres_url):
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    key = cli("keys", "create", "--user", "di@example.test", "--expires", soon)[1].strip()

    async def run() -> None:
        pool = await async_pool_for(postgres_url)
        auth = Authenticator(pool, trusted=lambda: True)
        try:
            await auth.authenticate(f"Bearer {key}")
            await asyncio.sleep(2.2)
            with pytest.raises(Unauthenticated):
                await auth.authenticate(f"Bearer {key}")
        finally:
            await pool.close()

    asyncio.run(run())


def test_revoking_disabling_and_deleting_are_announced_to_the_api_processes(cli, redis_url):
    async def heard(*argv: str) -> list[str]:
        client = aioredis.Redis.from_url(redis_url)
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(REVOCATIONS_CHANNEL)
            await pubsub.get_message(timeout=1)  # the subscription's confirmation
            assert (await asyncio.to_thread(cli, *argv))[0] == 0
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message:
                    await client.aclose()
                    return message["data"].decode().split()
        await client.aclose()
        raise AssertionError("nothing announced")

    key = cli("keys", "create", "--user", "ed@example.test")[1].strip()
    [row] = _rows(cli("keys", "list", "--user", "ed@example.test")[1])
    from appliance.security.keys import key_hash

    assert asyncio.run(heard("keys", "revoke", row["id"])) == [f"key:{key_hash(key).hex()}"]
    [user] = [u for u in _rows(cli("users", "list")[1]) if u["email"] == "ed@example.test"]
    assert asyncio.run(heard("users", "disable", "ed@example.test")) == [f"user:{user['id']}"]
    assert asyncio.run(heard("users", "delete", "ed@example.test")) == [f"user:{user['id']}"]
