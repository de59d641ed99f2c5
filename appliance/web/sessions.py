"""Web sessions in Redis: the browser holds a random token in an HttpOnly cookie; Redis holds,
under the token's SHA-256, who signed in and the session's CSRF token. A visitor who has not
signed in gets a short anonymous session (the sign-in form's CSRF token lives there);
signing in replaces it with a new one (a new token: no session fixation)."""

from __future__ import annotations

import hashlib
import secrets
import uuid

import msgspec
import redis.asyncio as aioredis

COOKIE = "appliance_session"
KEY = "appliance:web:session:{}"
ANONYMOUS_SECONDS = 3600  # an unsigned-in visitor's session (the sign-in form's CSRF token)


class Session(msgspec.Struct):
    csrf: str
    user_id: uuid.UUID | None = None
    email: str | None = None
    operator: bool = False

    @property
    def signed_in(self) -> bool:
        return self.user_id is not None


def _key(token: str) -> str:
    return KEY.format(hashlib.sha256(token.encode()).hexdigest())


class SessionStore:
    def __init__(self, client: aioredis.Redis, signed_in_seconds: float) -> None:
        self._redis, self._seconds = client, int(signed_in_seconds)

    async def create(self, user_id: uuid.UUID | None = None, email: str | None = None,
                     operator: bool = False) -> tuple[str, Session]:  # fmt: skip
        """A new session (signed in when ``user_id`` is given) and its token."""
        token = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), user_id, email, operator)
        ttl = self._seconds if user_id else ANONYMOUS_SECONDS
        await self._redis.set(_key(token), msgspec.json.encode(session), ex=ttl)
        return token, session

    async def load(self, token: str | None) -> Session | None:
        if not token:
            return None
        raw = await self._redis.get(_key(token))
        if raw is None:
            return None
        try:
            return msgspec.json.decode(raw, type=Session)
        except msgspec.DecodeError:
            return None

    async def drop(self, token: str | None) -> None:
        if token:
            await self._redis.delete(_key(token))
