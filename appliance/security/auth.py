"""Bearer-key authentication with a short in-process cache (keys are checked per request),
and a limit on failed attempts per client address: past it, the address is refused before any
database query until the window ends."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from redis.exceptions import RedisError

from appliance.db import AsyncPool
from appliance.db.queries.keys import principal_of
from appliance.errors import Unauthenticated
from appliance.security.keys import key_hash
from appliance.security.limits import Limiter, Rule

log = logging.getLogger(__name__)
CACHE_SECONDS = 30.0  # a revoked key stops working within this time
CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    scopes: frozenset[str]
    key_id: str = ""  # names the key in rate limits (a prefix of its hash, never the key)


class Authenticator:
    def __init__(
        self, pool: AsyncPool, limiter: Limiter | None = None, failures_per_minute: int = 0
    ) -> None:
        self.pool = pool
        self.limiter = limiter
        self.failures = Rule("auth-failures", "ip", failures_per_minute)
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    async def authenticate(self, header: str | None, address: str = "unknown") -> Principal:
        digest = key_hash(header[7:].strip()) if header and header.startswith("Bearer ") else None
        now = time.monotonic()
        hit = self._cache.get(digest) if digest else None
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
        self._cache[digest] = (now + CACHE_SECONDS, principal)
        return principal

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
