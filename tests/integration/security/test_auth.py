"""The Authenticator on the real Postgres and Redis: which headers carry a key, the failed
attempts an address may make before it is refused without a lookup, and what a revocation
makes the cache forget."""

from __future__ import annotations

import asyncio
import logging
import uuid

import psycopg
import pytest
import redis.asyncio as aioredis

from appliance import local_services
from appliance.db import async_pool
from appliance.errors import TooManyRequests, Unauthenticated
from appliance.security.auth import Authenticator
from appliance.security.keys import key_hash
from appliance.security.limits import Limiter
from appliance.settings import Settings


def _run(postgres_url, redis_url, check, **kw):
    async def go():
        pool = await async_pool(Settings.from_env({"APPLIANCE_DATABASE_URL": postgres_url}))
        client = aioredis.Redis.from_url(redis_url)
        try:
            await check(Authenticator(pool, Limiter(client), **kw))
        finally:
            await client.aclose()
            await pool.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "bearer {key}", "Basic {key}", "{key}", "Bearer x{key}"],
)
def test_only_a_bearer_header_with_the_key_authenticates(postgres_url, redis_url, api_key, header):
    async def check(auth):
        with pytest.raises(Unauthenticated) as info:
            await auth.authenticate(header.format(key=api_key) if header else header)
        assert info.value.code == "UNAUTHENTICATED"
        assert info.value.message in (  # what the client did wrong, in words
            "Unauthenticated: send Authorization: Bearer <api key>",
            "Unauthenticated: the API key is invalid or revoked",
        )
        if header in (None, "", "Basic {key}", "{key}", "bearer {key}"):
            assert "send Authorization" in info.value.message
        elif header == "Bearer x{key}":
            assert "invalid or revoked" in info.value.message
        principal = await auth.authenticate(f"Bearer  {api_key} ")  # spaces around: fine
        assert principal.key_id == key_hash(api_key).hex()[:16]
        assert "task.write" in principal.scopes

    _run(postgres_url, redis_url, check)


def test_an_address_past_its_failures_is_refused_before_any_lookup_others_are_not(
    postgres_url, redis_url, api_key
):
    async def check(auth):
        for header in ("Bearer apl_wrong", None, "Basic x"):  # a wrong key or none at all
            with pytest.raises(Unauthenticated):
                await auth.authenticate(header, "198.51.100.7")
        with pytest.raises(TooManyRequests) as info:
            await auth.authenticate("Bearer apl_wrong", "198.51.100.7")
        assert info.value.limit_headers["RateLimit-Policy"] == '"auth-failures";q=3;w=60'
        with pytest.raises(TooManyRequests):  # even a good key, from there, for now
            await auth.authenticate(f"Bearer {api_key}", "198.51.100.7")
        assert (await auth.authenticate(f"Bearer {api_key}", "203.0.113.9")).user_id
        client = aioredis.Redis.from_url(redis_url)
        keys = [k.decode() async for k in client.scan_iter("appliance:ratelimit:*")]
        await client.aclose()
        assert keys and all("auth-failures" in k and "198.51.100.7" in k for k in keys), keys

    _run(postgres_url, redis_url, check, failures_per_minute=3)


def test_forget_drops_the_keys_and_users_a_revocation_names(postgres_url, redis_url, api_key):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        (user,) = conn.execute(
            "SELECT user_id FROM api_keys WHERE key_hash = %s", (key_hash(api_key),)
        ).fetchone()

    async def revoked_still_works(auth, words):
        await auth.authenticate(f"Bearer {api_key}")  # cached
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE api_keys SET revoked_at = now()")
        auth.forget(words)
        try:
            await auth.authenticate(f"Bearer {api_key}")
            return True
        except Unauthenticated:
            return False
        finally:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute("UPDATE api_keys SET revoked_at = NULL")

    async def check(auth):
        other = f"user:{uuid.uuid4()}"
        assert await revoked_still_works(auth, [other, "key:00", "key:not-hex"])  # the cache
        assert not await revoked_still_works(auth, [f"key:{key_hash(api_key).hex()}"])
        assert not await revoked_still_works(auth, [other, f"user:{user}"])
        await auth.authenticate(f"Bearer {api_key}")
        auth.forget_all()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE api_keys SET revoked_at = now()")
        with pytest.raises(Unauthenticated):
            await auth.authenticate(f"Bearer {api_key}")

    _run(postgres_url, redis_url, check, trusted=lambda: True)


def test_an_expiring_key_is_cached_until_it_expires(postgres_url, redis_url, api_key):
    """Cached like any key while it is valid (a revocation unheard does not stop it, which
    is what the cache is for), for no longer than it lives."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET expires_at = now() + interval '1 hour'")

    async def check(auth):
        await auth.authenticate(f"Bearer {api_key}")
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("UPDATE api_keys SET revoked_at = now()")
        assert (await auth.authenticate(f"Bearer {api_key}")).user_id  # from the cache

    _run(postgres_url, redis_url, check, trusted=lambda: True)


def test_the_failure_limit_fails_open_when_redis_is_away(postgres_url, api_key, caplog):
    """Keys are still checked (a bad one refused, a good one taken) with no Redis to count
    failures in, and the log says the limit is unavailable; with no limiter at all, too."""
    nobody = f"redis://127.0.0.1:{local_services.free_port()}/0"  # reserved, never bound

    async def check(auth):
        with caplog.at_level(logging.WARNING, logger="appliance.security.auth"):
            with pytest.raises(Unauthenticated):
                await auth.authenticate("Bearer apl_wrong", "198.51.100.8")
            assert (await auth.authenticate(f"Bearer {api_key}", "198.51.100.8")).user_id
        said = [r.getMessage() for r in caplog.records if r.exc_info]
        assert said.count("auth failure limit unavailable (Redis)") == 3  # peek, count, peek

    _run(postgres_url, nobody, check, failures_per_minute=3)

    async def no_limiter() -> None:
        pool = await async_pool(Settings.from_env({"APPLIANCE_DATABASE_URL": postgres_url}))
        try:
            auth = Authenticator(pool, None, failures_per_minute=3)
            with pytest.raises(Unauthenticated):
                await auth.authenticate("Bearer apl_wrong")
        finally:
            await pool.close()

    asyncio.run(no_limiter())
