"""Webhooks, CloudConvert's: a user's subscriptions to job events, each with its own signing
secret, and the delivery log. The events themselves are written by Postgres in the
transaction that creates or ends a job (migration 0008); ``webhook_delivery`` sends them.

Knows nothing of HTTP serving: takes plain values, returns JSON text built by Postgres or
raises ``appliance.errors``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from appliance.conversions import idempotency as idempotent
from appliance.conversions.idempotency import Idempotency, Replayed
from appliance.conversions.operations.import_url import url_path
from appliance.db import AsyncPool
from appliance.db.queries import webhooks as rows
from appliance.errors import InvalidData, NotFound
from appliance.security import audit
from appliance.security.netguard import resolve
from appliance.security.sealing import Columns
from appliance.settings import Settings

EVENTS = ("job.created", "job.finished", "job.failed")
DELIVERY_STATUSES = ("pending", "delivered", "failed")
SIGNATURE_HEADER = "CloudConvert-Signature"
# The same on every attempt at one delivery: a receiver drops what it has already seen.
DELIVERY_ID_HEADER = "Appliance-Delivery-Id"
MAX_URL_CHARS = 2048
MAX_WEBHOOKS_PER_USER = 25  # bounds the deliveries one job's event can fan out to


def sign(secret: str, body: bytes) -> str:
    """``CloudConvert-Signature``: hex HMAC-SHA256 of the exact body bytes."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_url(url: object, field: str) -> str:
    """``url`` if it is an http(s) URL with a host (422 naming ``field`` otherwise). A NUL
    character is refused too: Postgres text cannot hold it (a 500 before)."""
    if (
        not isinstance(url, str)
        or len(url) > MAX_URL_CHARS
        or "\x00" in url
        or url_path(url) is None
    ):
        raise InvalidData(
            f"{field} must be an http:// or https:// URL",
            code="INVALID_URL",
            errors={
                field: [f"must be an http:// or https:// URL of at most {MAX_URL_CHARS} characters"]
            },
        )
    return url


def check_events(events: object) -> list[str]:
    if (
        not isinstance(events, list)
        or not events
        or not all(isinstance(e, str) and e in EVENTS for e in events)
    ):
        raise InvalidData(
            "events must list at least one event",
            errors={"events": [f"must be a non-empty list of {', '.join(EVENTS)}"]},
        )
    return sorted(set(events), key=EVENTS.index)


SECRET_COLUMN = "webhooks.signing_secret"  # noqa: S105 (a column's name)
USER_SECRET_COLUMN = "users.webhook_signing_secret"  # noqa: S105 (a column's name)


@dataclass
class WebhookService:
    settings: Settings
    pool: AsyncPool
    columns: Columns  # the signing secrets rest sealed with the user's data key

    async def create(
        self,
        user_id: uuid.UUID,
        url: object,
        events: object,
        idempotency: Idempotency | None = None,
    ) -> str:
        """A new webhook with a fresh signing secret. Its host must resolve to public
        addresses only (unless ``allow_private_urls``); each delivery checks again. With
        ``idempotency`` a repeat raises ``Replayed`` with the first answer (secret opened)."""
        try:
            doc = await self._create(user_id, url, events, idempotency)
        except Replayed as replay:  # its document was kept as stored: the secret sealed
            raise Replayed(replay.status, await self._opened(user_id, replay.body)) from None
        return await self._opened(user_id, doc)

    async def _create(
        self, user_id: uuid.UUID, url: object, events: object, idempotency: Idempotency | None
    ) -> str:
        """The new webhook's document, its secret sealed."""
        url, events = check_url(url, "url"), check_events(events)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        async with self.pool.connection() as conn:
            await idempotent.replay_if_done(conn, user_id, idempotency)
        await asyncio.to_thread(resolve, host, port, allow_private=self.settings.allow_private_urls)
        async with self.pool.connection() as conn, conn.transaction():
            await idempotent.claim(conn, user_id, idempotency)
            if await rows.count(conn, user_id) >= MAX_WEBHOOKS_PER_USER:
                raise InvalidData(
                    f"A user may have at most {MAX_WEBHOOKS_PER_USER} webhooks",
                    code="TOO_MANY_WEBHOOKS",
                )
            sealed = await asyncio.to_thread(
                self.columns.seal, user_id, SECRET_COLUMN, secrets.token_hex(32)
            )
            doc = await rows.create(conn, user_id, url, events, sealed)
            subject = f"webhook:{json.loads(doc)['id']}"
            details = {"host": host, "events": events}  # not the URL: it may hold a token
            hours = self.settings.idempotency_key_hours
            await idempotent.record(conn, user_id, idempotency, (201, doc), hours)
            await audit.record_async(  # last: it locks the chain's head until the commit
                conn, "webhook.created", user_id, subject, details, actor="api"
            )
        return doc

    async def _opened(self, user_id: uuid.UUID, doc: str) -> str:
        """The document with its webhooks' signing secrets opened."""
        return await asyncio.to_thread(
            self.columns.open_doc, user_id, SECRET_COLUMN, doc, "signing_secret"
        )

    async def page(
        self, user_id: uuid.UUID, url: str | None, page: int, per_page: int
    ) -> tuple[str, bool]:
        """One page of the user's webhooks (JSON array text) and whether a next exists."""
        async with self.pool.connection() as conn:
            doc, n = await rows.page(conn, user_id, url, per_page + 1, (page - 1) * per_page)
        return trim((await self._opened(user_id, doc), n), per_page)

    async def show(self, user_id: uuid.UUID, webhook_id: uuid.UUID) -> str:
        async with self.pool.connection() as conn:
            doc = await rows.show(conn, user_id, webhook_id)
        if doc is None:
            raise NotFound(f"Webhook {webhook_id} not found")
        return await self._opened(user_id, doc)

    async def delete(self, user_id: uuid.UUID, webhook_id: uuid.UUID) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            if not await rows.delete(conn, user_id, webhook_id):
                raise NotFound(f"Webhook {webhook_id} not found")
            subject = f"webhook:{webhook_id}"
            await audit.record_async(conn, "webhook.deleted", user_id, subject, actor="api")

    async def deliveries(
        self,
        user_id: uuid.UUID,
        filters: tuple[uuid.UUID | None, uuid.UUID | None, str | None],
        page: int,
        per_page: int,
    ) -> tuple[str, bool]:
        """One page of the delivery log, newest first, filtered by (webhook id, job id,
        status), and whether a next page exists."""
        status = filters[2]
        if status is not None and status not in DELIVERY_STATUSES:
            raise InvalidData(
                f"Unknown status {status!r}",
                errors={"filter[status]": [f"must be one of {', '.join(DELIVERY_STATUSES)}"]},
            )
        async with self.pool.connection() as conn:
            found = await rows.deliveries(
                conn, user_id, filters, per_page + 1, (page - 1) * per_page
            )
        return trim(found, per_page)

    async def signing_secret(self, user_id: uuid.UUID) -> str:
        """The secret that signs deliveries to the webhook_url a job names (made, sealed,
        the first time it is asked for, here or by a sender)."""
        candidate = await asyncio.to_thread(
            self.columns.seal, user_id, USER_SECRET_COLUMN, secrets.token_hex(32)
        )
        async with self.pool.connection() as conn:
            sealed = await rows.signing_secret(conn, user_id, candidate)
        if sealed is None:
            raise NotFound("No such user")
        return await asyncio.to_thread(self.columns.open, user_id, USER_SECRET_COLUMN, sealed)


def trim(found: tuple[str, int], per_page: int) -> tuple[str, bool]:
    """A page read with one row more than ``per_page`` (to learn whether a next page exists):
    its first ``per_page`` rows, and whether there were more."""
    doc, n = found
    if n <= per_page:
        return doc, False
    return json.dumps(json.loads(doc)[:per_page]), True
