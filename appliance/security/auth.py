"""Bearer-key authentication with a short in-process cache (keys are checked per request),
and a limit on failed attempts per client address: past it, the address is refused before any
database query until the window ends.

The cache is used only while ``trusted()`` says revocations are heard (``revocation``): a
revoked key, an expired one and a disabled user's then stop working at once on every host."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.exceptions import RedisError

from appliance.db import AsyncPool
from appliance.db.queries.keys import principal_of
from appliance.errors import Unauthenticated
from appliance.security.keys import key_hash
from appliance.security.limits import Limiter, Rule

log = logging.getLogger(__name__)
CACHE_SECONDS = 30.0  # longest a cached key is trusted (revocations unheard: not at all)
CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    scopes: frozenset[str]
    key_id: str = ""  # names the key in rate limits (a prefix of its hash, never the key)


class Authenticator:
    def __init__(
        self,
        pool: AsyncPool,
        limiter: Limiter | None = None,
        failures_per_minute: int = 0,
        trusted: Callable[[], bool] = lambda: False,
    ) -> None:
        self.pool = pool
        self.limiter = limiter
        self.failures = Rule("auth-failures", "ip", failures_per_minute)
        self.trusted = trusted  # whether revocations are heard: the cache may be used
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    async def authenticate(self, header: str | None, address: str = "unknown") -> Principal:
        digest = key_hash(header[7:].strip()) if header and header.startswith("Bearer ") else None
        now = time.monotonic()
        hit = self._cache.get(digest) if digest and self.trusted() else None
        if hit and hit[0] > now:
            return hit[1]
        await self._not_throttled(address)
        if digest is None:
            await self._failed(address)
            raise Unauthenticated("Unauthenticated: send Authorization: Bearer <api key>")
        row = await principal_of(self.pool, digest)
        if row is None:
            await self._failed(address)
            raise Unauthenticated("Unauthenticated: the API key is invalid or revoked")
        principal = Principal(row["user_id"], frozenset(row["scopes"]), digest.hex()[:16])
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        until = now + CACHE_SECONDS
        if row["expires_at"] is not None:  # an expiring key leaves the cache when it expires
            until = min(until, now + (row["expires_at"] - datetime.now(UTC)).total_seconds())
        self._cache[digest] = (until, principal)
        return principal

    def forget(self, words: list[str]) -> None:
        """Drop what a revocation names: ``key:<hash hex>``, ``user:<id>``."""
        users = set()
        for word in words:
            kind, _, ident = word.partition(":")
            if kind == "key":
                with contextlib.suppress(ValueError):
                    self._cache.pop(bytes.fromhex(ident), None)
            elif kind == "user":
                users.add(ident)
        if users:
            self._cache = {k: v for k, v in self._cache.items() if str(v[1].user_id) not in users}

    def forget_all(self) -> None:
        self._cache.clear()

    async def check_not_throttled(self, address: str) -> None:
        """Refuse (429) an address past its failures this minute (web sign-ins count too)."""
        await self._not_throttled(address)

    async def count_failure(self, address: str) -> None:
        """A failed sign-in (web UI): it counts with the address's bad keys."""
        await self._failed(address)

    async def _not_throttled(self, address: str) -> None:
        if self.limiter is None or not self.failures.limit:
            return
        try:
            seen = await self.limiter.peek(self.failures, address)
        except RedisError:  # the limit fails open: keys are still checked
            log.warning("auth failure limit unavailable (Redis)", exc_info=True)
            return
        if seen.used >= self.failures.limit:
            raise seen.refuse()

    async def _failed(self, address: str) -> None:
        if self.limiter is None or not self.failures.limit:
            return
        try:
            await self.limiter.count(self.failures, address)
        except RedisError:
            log.warning("auth failure limit unavailable (Redis)", exc_info=True)
