"""Job and task documents served from memory while nothing they were built from has changed.

Every job has a version token in Redis (``appliance:status:<job id>``; a job-less task is its
own job). Each committed change to a job's rows replaces its token before the call that
committed returns (``db.changes.StatusTokens``, run by the writing connection; in the API,
``LoopStatusTokens``, awaited as the writing connection block ends), whatever code path
wrote. A status read takes the job's token (one Redis round trip, no database,
pipelined with the other reads of the moment: ``db.redis_pipe``) and serves the document it
holds only if it was built under that same token.

The order makes it safe: a reader takes the token first and reads the database after, so a
change committed after the token was taken replaces the token, and a document built from
rows older than that change is never served again. Tokens are random, so a token that
expired and was made again never matches an old document. Fills read the primary: a replica
behind the token would cache an old document under a new token.

When Redis cannot be reached, reads go to the database. A change whose new token could not be
written (Redis unreachable from the writer only) is written with the next change that can;
meanwhile each document is served for at most ``status_cache_seconds``.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import redis
import redis.asyncio as aioredis

from appliance.db.changes import TOKEN_SECONDS, token_key, token_seconds
from appliance.db.redis_pipe import PipelinedRedis
from appliance.metrics import STATUS_READS
from appliance.metrics.tally import Tally
from appliance.settings import Settings

log = logging.getLogger(__name__)
READS = Tally(STATUS_READS)  # hits and misses: counted per read, written once a second


@dataclass(frozen=True)
class _Entry:
    scope: str  # the job whose token the document was built under
    token: bytes | None  # None: the scope is known, no document is held yet
    user_id: uuid.UUID
    doc: str
    until: float  # monotonic: served no longer than this


class _Scope(msgspec.Struct):
    job_id: uuid.UUID | None = None
    id: uuid.UUID | None = None


Load = Callable[[], Awaitable[str | None]]


class StatusCache:
    """The readers' side, one per API process: documents by job or task id, at most
    ``max_bytes`` of them (least recently used go first)."""

    def __init__(
        self,
        client: PipelinedRedis | aioredis.Redis,
        max_bytes: int,
        max_seconds: float,
        token_seconds: int = TOKEN_SECONDS,
    ) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.token_seconds = token_seconds  # a token made here lives as the writers' do
        self._entries: OrderedDict[uuid.UUID, _Entry] = OrderedDict()
        self._bytes = 0

    @classmethod
    def for_settings(cls, settings: Settings) -> StatusCache | None:
        """The API process's cache, or None when ``status_cache`` is off."""
        if not settings.status_cache:
            return None
        client = PipelinedRedis(settings.effective_redis_url)
        return cls(
            client,
            settings.status_cache_bytes,
            settings.status_cache_seconds,
            token_seconds(settings.job_retention_hours),
        )

    def size(self) -> tuple[int, int]:
        """Documents held and their bytes."""
        return len(self._entries), self._bytes

    async def job(self, job_id: uuid.UUID, user_id: uuid.UUID, load: Load) -> str | None:
        return await self._read(job_id, str(job_id), user_id, load)

    async def task(self, task_id: uuid.UUID, user_id: uuid.UUID, load: Load) -> str | None:
        known = self._entries.get(task_id)
        if known is None or known.user_id != user_id:
            # Which job the task belongs to is learnt from its first read; from the next one
            # on its document is cached under that job's token.
            doc = await load()
            if doc is not None:
                self._remember_scope(task_id, user_id, doc)
            return doc
        return await self._read(task_id, known.scope, user_id, load)

    async def _read(self, key: uuid.UUID, scope: str, user_id: uuid.UUID, load: Load) -> str | None:
        token = await self._token(scope)
        entry = self._entries.get(key)
        if (
            token is not None
            and entry is not None
            and entry.token == token
            and entry.user_id == user_id
            and entry.until > time.monotonic()
        ):
            self._entries.move_to_end(key)
            READS.inc("hit")
            return entry.doc
        READS.inc("miss")
        doc = await load()  # after the token: see the module's docstring
        if doc is None:
            self._drop(key)
        elif token is not None:
            self._keep(key, _Entry(scope, token, user_id, doc, time.monotonic() + self.max_seconds))
        return doc

    async def _token(self, scope: str) -> bytes | None:
        """The job's current token, made now if it has none; None when Redis is away."""
        fresh = secrets.token_hex(8).encode()
        try:
            old = await self.client.set(
                token_key(scope), fresh, nx=True, get=True, ex=self.token_seconds
            )
        except redis.RedisError:
            log.warning("status cache: Redis unreachable, reading the database", exc_info=True)
            return None
        return old if isinstance(old, bytes) else fresh

    def _remember_scope(self, task_id: uuid.UUID, user_id: uuid.UUID, doc: str) -> None:
        found = msgspec.json.decode(doc, type=_Scope)
        scope = str(found.job_id or found.id or task_id)
        self._keep(task_id, _Entry(scope, None, user_id, "", time.monotonic() + self.max_seconds))

    def _keep(self, key: uuid.UUID, entry: _Entry) -> None:
        self._drop(key)
        self._entries[key] = entry
        self._bytes += len(entry.doc) + 200  # the entry's own overhead, roughly
        while self._bytes > self.max_bytes and self._entries:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, key: uuid.UUID) -> None:
        gone = self._entries.pop(key, None)
        if gone is not None:
            self._bytes -= len(gone.doc) + 200
