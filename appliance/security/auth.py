"""Bearer-key authentication with a short in-process cache (keys are checked per request)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from appliance.db import AsyncPool
from appliance.db.queries.keys import principal_of
from appliance.errors import Unauthenticated
from appliance.security.keys import key_hash

CACHE_SECONDS = 30.0  # a revoked key stops working within this time
CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    user_id: uuid.UUID
    scopes: frozenset[str]


class Authenticator:
    def __init__(self, pool: AsyncPool) -> None:
        self.pool = pool
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    async def authenticate(self, header: str | None) -> Principal:
        if not header or not header.startswith("Bearer "):
            raise Unauthenticated("Unauthenticated: send Authorization: Bearer <api key>")
        digest = key_hash(header[7:].strip())
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit and hit[0] > now:
            return hit[1]
        row = await principal_of(self.pool, digest)
        if row is None:
            raise Unauthenticated("Unauthenticated: the API key is invalid or revoked")
        principal = Principal(row["user_id"], frozenset(row["scopes"]))
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[digest] = (now + CACHE_SECONDS, principal)
        return principal
