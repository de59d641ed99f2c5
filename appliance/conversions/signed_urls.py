"""Signed URLs, CloudConvert's: a user's signed-URL bases, each a public URL with a signing
secret of its own, and the check of a URL built on one. The official SDKs build them with
``SignedUrl.sign(base, signing_secret, job, cache_key)``::

    url = base + "?job=" + urlsafe_base64(json(job)) [+ "&cache_key=" + cache_key]
    url += "&s=" + hex(HMAC-SHA256(signing_secret, url))

Opening one runs the job as the base's owner. The signature is checked over the URL exactly as
signed: the base's URL, ``?`` and the raw query string up to ``&s=``. Every parameter before
``s`` is covered, so an ``expires`` parameter (Unix seconds) is too, and so is an ``expires``
field inside the job; past either, the URL is refused. ``cache_key`` answers with the job an
earlier URL of the same base and key ran, while its output can still be downloaded.

Knows nothing of HTTP serving: takes plain values, returns JSON text built by Postgres or
raises ``appliance.errors``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import msgspec

from appliance.conversions import idempotency as idempotent
from appliance.conversions.idempotency import Idempotency, Replayed
from appliance.db import AsyncPool
from appliance.db.queries import signed_urls as rows
from appliance.errors import Forbidden, InvalidData, NotFound
from appliance.security.sealing import Columns
from appliance.settings import Settings

MAX_BASES_PER_USER = 25
MAX_NAME_CHARS = 200
PATH = "/v2/s/"  # a base's URL is PUBLIC_URL + this + its id
PARAMETERS = ("job", "cache_key", "expires")  # what a URL may carry before its signature
# CloudConvert's rule for a cache key, with a length cap of ours.
CACHE_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
URL_MARGIN_SECONDS = 60  # a cached output is answered only while its URL has this much left


class SignedJob(msgspec.Struct, forbid_unknown_fields=True):
    """The job a URL carries: the body of POST /v2/jobs, and optionally when the URL stops
    working (Unix seconds), covered by the signature like the rest of the job."""

    tasks: dict[str, Any]
    tag: str | None = None
    webhook_url: str | None = None
    expires: int | None = None


@dataclass(frozen=True)
class SignedRequest:
    """A URL whose signature held: whose job to run, and under which cache key."""

    owner: uuid.UUID
    job: SignedJob
    cache_key: str | None


def signature(secret: str, url: str) -> str:
    """The ``s`` parameter of ``url`` (everything before ``&s=``): hex HMAC-SHA256."""
    return hmac.new(secret.encode(), url.encode(), hashlib.sha256).hexdigest()


def signed_parameters(bases: list[str], secret: str, raw_query: str) -> dict[str, str] | None:
    """The parameters of a query string whose ``s`` signs one of ``bases`` + ``?`` + the query
    before it, or None. The query is tried as received and percent-decoded (SDKs send the
    job's base64 unencoded; a client or proxy on the way may have encoded it)."""
    for query in dict.fromkeys((raw_query, unquote(raw_query))):
        signed, found, sig = query.rpartition("&s=")
        if not found or not SIGNATURE.fullmatch(sig):
            continue
        if any(
            hmac.compare_digest(signature(secret, f"{base}?{signed}"), sig.lower())
            for base in bases
        ):
            return parameters(signed)
    return None


def parameters(query: str) -> dict[str, str]:
    """The signed parameters: each known one at most once (422 otherwise)."""
    found: dict[str, str] = {}
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name not in PARAMETERS or name in found:
            raise InvalidData(
                f"Unknown or repeated signed URL parameter {name!r}",
                errors={name or "query": [f"parameters are {', '.join(PARAMETERS)}, each once"]},
            )
        found[name] = value
    if "job" not in found:
        raise InvalidData("The signed URL has no job", errors={"job": ["is required"]})
    return found


def decode_job(text: str, max_bytes: int) -> SignedJob:
    """The ``job`` parameter: URL-safe base64 (padded or not; ``+`` and ``/`` taken too) of
    the JSON job, at most ``max_bytes`` once decoded."""
    if len(text) > (max_bytes + 2) // 3 * 4:
        raise InvalidData(f"The job is larger than {max_bytes} bytes", code="BODY_TOO_LARGE")
    text = text.replace("+", "-").replace("/", "_").rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return msgspec.json.decode(raw, type=SignedJob)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidData(
            "The job is not URL-safe base64 of a JSON job",
            errors={"job": [str(exc)]},
        ) from None


def check_tasks(tasks: dict[str, Any]) -> None:
    """The job answers with its export/url task's file: it needs exactly one such task, and
    no import/upload (nobody uploads to a job started by opening a URL)."""
    ops = [t.get("operation") if isinstance(t, dict) else None for t in tasks.values()]
    if ops.count("export/url") != 1:
        raise InvalidData(
            "A signed URL's job needs exactly one export/url task",
            errors={"job.tasks": ["must have exactly one export/url task: its file is the answer"]},
        )
    if "import/upload" in ops:
        raise InvalidData(
            "A signed URL's job cannot import/upload",
            errors={"job.tasks": ["import/upload is not possible: import from a URL"]},
        )


def check_expiry(params: dict[str, str], job: SignedJob, now: float) -> None:
    """Refuse the URL (403) once the earlier of its ``expires`` parameter and the job's
    ``expires`` field has passed."""
    ends = [job.expires] if job.expires is not None else []
    if "expires" in params:
        if not params["expires"].isdigit():
            raise InvalidData(
                "expires must be a Unix time in seconds",
                errors={"expires": ["must be a Unix time in seconds"]},
            )
        ends.append(int(params["expires"]))
    if ends and now >= min(ends):
        raise Forbidden("This signed URL has expired", code="SIGNED_URL_EXPIRED")


def check_cache_key(key: str | None) -> str | None:
    if key is not None and not CACHE_KEY.fullmatch(key):
        raise InvalidData(
            "Invalid cache_key",
            errors={"cache_key": ["1 to 128 characters of A-Z, a-z, 0-9, - and _"]},
        )
    return key


def check_name(name: object) -> str | None:
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME_CHARS):
        raise InvalidData(
            "Invalid name", errors={"name": [f"must be at most {MAX_NAME_CHARS} characters"]}
        )
    return name


SECRET_COLUMN = "signed_url_bases.signing_secret"  # noqa: S105 (a column's name)


@dataclass
class SignedUrlService:
    settings: Settings
    pool: AsyncPool
    columns: Columns  # the signing secrets rest sealed with the user's data key

    def url_of(self, base_id: uuid.UUID) -> str:
        return f"{self.settings.effective_public_url}{PATH}{base_id}"

    async def create(
        self, user_id: uuid.UUID, name: object, idempotency: Idempotency | None = None
    ) -> str:
        """A new base with a fresh signing secret (shown here and by show/page). With
        ``idempotency`` a repeat raises ``Replayed`` with the first answer (secret opened)."""
        try:
            doc = await self._create(user_id, name, idempotency)
        except Replayed as replay:  # its document was kept as stored: the secret sealed
            raise Replayed(replay.status, await self._opened(user_id, replay.body)) from None
        return await self._opened(user_id, doc)

    async def _create(
        self, user_id: uuid.UUID, name: object, idempotency: Idempotency | None
    ) -> str:
        """The new base's document, its secret sealed."""
        name, base_id = check_name(name), uuid.uuid4()
        sealed = await asyncio.to_thread(
            self.columns.seal, user_id, SECRET_COLUMN, secrets.token_urlsafe(32)
        )
        async with self.pool.connection() as conn, conn.transaction():
            await idempotent.claim(conn, user_id, idempotency)
            if await rows.count(conn, user_id) >= MAX_BASES_PER_USER:
                raise InvalidData(
                    f"A user may have at most {MAX_BASES_PER_USER} signed URL bases",
                    code="TOO_MANY_SIGNED_URL_BASES",
                )
            doc = await rows.create(conn, base_id, user_id, name, (self.url_of(base_id), sealed))
            hours = self.settings.idempotency_key_hours
            await idempotent.record(conn, user_id, idempotency, (201, doc), hours)
        return doc

    async def _opened(self, user_id: uuid.UUID, doc: str) -> str:
        """The document with its bases' signing secrets opened."""
        return await asyncio.to_thread(
            self.columns.open_doc, user_id, SECRET_COLUMN, doc, "signing_secret"
        )

    async def page(self, user_id: uuid.UUID, page: int, per_page: int) -> tuple[str, bool]:
        """One page of the user's bases (JSON array text) and whether a next exists."""
        async with self.pool.connection() as conn:
            doc, n = await rows.page(conn, user_id, per_page + 1, (page - 1) * per_page)
        doc = await self._opened(user_id, doc)
        if n <= per_page:
            return doc, False
        return json.dumps(json.loads(doc)[:per_page]), True

    async def show(self, user_id: uuid.UUID, base_id: uuid.UUID) -> str:
        async with self.pool.connection() as conn:
            doc = await rows.show(conn, user_id, base_id)
        if doc is None:
            raise NotFound(f"Signed URL base {base_id} not found")
        return await self._opened(user_id, doc)

    async def delete(self, user_id: uuid.UUID, base_id: uuid.UUID) -> None:
        """The base: every URL built on it stops working at once."""
        async with self.pool.connection() as conn:
            if not await rows.delete(conn, user_id, base_id):
                raise NotFound(f"Signed URL base {base_id} not found")

    async def open(self, base_id: uuid.UUID, raw_query: str) -> SignedRequest:
        """The request a URL on ``base_id`` with ``raw_query`` (as received) makes: 404 for
        no such base (or its owner disabled), 403 for a bad signature or an expired URL, 422
        for a job that cannot answer with one file."""
        async with self.pool.connection() as conn:
            base = await rows.signer(conn, base_id)
        if base is None:
            raise NotFound(f"Signed URL base {base_id} not found")
        # The URL the base was shown with, and today's if PUBLIC_URL changed since.
        bases = list(dict.fromkeys((base["url"], self.url_of(base_id))))
        secret = await asyncio.to_thread(
            self.columns.open, base["user_id"], SECRET_COLUMN, base["secret"]
        )
        params = signed_parameters(bases, secret, raw_query)
        if params is None:
            raise Forbidden("The signature of this signed URL is invalid", code="INVALID_SIGNATURE")
        job = decode_job(params["job"], self.settings.max_json_bytes)
        check_expiry(params, job, time.time())
        check_tasks(job.tasks)
        return SignedRequest(base["user_id"], job, check_cache_key(params.get("cache_key")))

    async def cached(self, base_id: uuid.UUID, cache_key: str) -> uuid.UUID | None:
        """The job an earlier URL of the base with ``cache_key`` ran, while its output can be
        downloaded (not failed; its URLs and the job not about to expire)."""
        valid = self.settings.url_ttl_seconds - URL_MARGIN_SECONDS
        async with self.pool.connection() as conn:
            return await rows.cached(conn, base_id, cache_key, (valid, URL_MARGIN_SECONDS))

    async def remember(self, base_id: uuid.UUID, cache_key: str, job_id: uuid.UUID) -> None:
        async with self.pool.connection() as conn:
            await rows.remember(conn, base_id, cache_key, job_id)
