"""Sends what the webhook outbox holds: one attempt at a claimed delivery, and its outcome.

Each delivery is a POST of the body Postgres wrote when the event happened, signed with
``CloudConvert-Signature`` (hex HMAC-SHA256 of the exact bytes with the webhook's secret, or
the user's for a job's own webhook_url) and named by ``Appliance-Delivery-Id``, the same on
every attempt. It goes through ``fetch.open_pinned``, as import/url does: the host resolved
once, refused when any of its addresses is not public (unless ``allow_private_urls``), the
connection made to that one address; no redirect is followed.

Outcomes: 2xx delivered; 410 Gone disables the webhook; network errors, 408, 429 and 5xx are
tried again after a backoff that doubles from ``webhook_backoff_seconds`` (capped, with a
little jitter so receivers coming back are not hit all at once) until
``webhook_max_attempts``; any other answer or a refused address fails the delivery.
"""

from __future__ import annotations

import logging
import random
import secrets
import uuid
from dataclasses import dataclass
from typing import Literal

from appliance.conversions.fetch import open_pinned
from appliance.conversions.webhooks import (
    DELIVERY_ID_HEADER,
    SECRET_COLUMN,
    SIGNATURE_HEADER,
    USER_SECRET_COLUMN,
    sign,
)
from appliance.db import SyncPool
from appliance.db.queries import webhooks as rows
from appliance.errors import InvalidData, RetryableError
from appliance.metrics import WEBHOOK_DELIVERIES
from appliance.security.sealing import Columns
from appliance.settings import Settings

log = logging.getLogger(__name__)
USER_AGENT = "appliance-webhooks/1"
RETRY_STATUSES = frozenset({408, 429})
JITTER = 0.1  # a retry waits up to this fraction longer than its backoff
GONE = "The receiver answered 410 Gone: the webhook is disabled"

Verdict = Literal["delivered", "retry", "failed", "gone"]


@dataclass(frozen=True)
class Due:
    """A claimed delivery: this sender's attempt number ``attempts``."""

    id: uuid.UUID
    webhook_id: uuid.UUID | None
    url: str
    body: str
    attempts: int
    secret: str


@dataclass(frozen=True)
class Attempt:
    verdict: Verdict
    code: int | None = None  # the receiver's HTTP status, when it answered
    error: str = ""


def headers(due: Due, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(due.secret, body),
        DELIVERY_ID_HEADER: str(due.id),
    }


def judge(status: int) -> Attempt:
    """What a receiver's answer means for the delivery."""
    if 200 <= status < 300:
        return Attempt("delivered", status)
    if status == 410:
        return Attempt("gone", status, GONE)
    if status >= 500 or status in RETRY_STATUSES:
        return Attempt("retry", status, f"HTTP {status}")
    return Attempt("failed", status, f"HTTP {status}")


def post(due: Due, *, allow_private: bool, timeout: float) -> Attempt:
    """One attempt at ``due``; never raises for what the network or receiver does."""
    body = due.body.encode()
    try:
        pool, response = open_pinned(
            "POST",
            due.url,
            allow_private=allow_private,
            timeout=timeout,
            headers=headers(due, body),
            body=body,
            user_agent=USER_AGENT,
        )
    except InvalidData as exc:  # refused for good; a name that does not resolve may later
        verdict: Verdict = "retry" if exc.code == "INVALID_URL" else "failed"
        return Attempt(verdict, None, exc.message)
    except RetryableError as exc:
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "error"
        return Attempt("retry", None, f"{exc.message} ({cause})")
    try:
        return judge(response.status)
    finally:
        response.release_conn()
        pool.close()


@dataclass
class Outbox:
    """The senders' side of ``webhook_deliveries``."""

    settings: Settings
    pool: SyncPool
    columns: Columns  # opens the signing secrets, sealed at rest

    @property
    def lease(self) -> float:
        """Seconds a claim holds a delivery: longer than one attempt's connect and reads."""
        return 4 * self.settings.webhook_timeout_seconds + 30

    def claim(self, limit: int) -> list[Due]:
        due = []
        for r in rows.claim(self.pool, limit, self.lease):
            secret = self.secret(r["user_id"], r["webhook_id"], r["secret"])
            due.append(Due(r["id"], r["webhook_id"], r["url"], r["body"], r["attempts"], secret))
        return due

    def secret(self, user_id: uuid.UUID, webhook_id: uuid.UUID | None, sealed: str | None) -> str:
        """The signing secret of a delivery, opened: its webhook's, or the user's (made
        now when they have none yet)."""
        if webhook_id is not None and sealed is not None:
            return self.columns.open(user_id, SECRET_COLUMN, sealed)
        if sealed is None:
            candidate = self.columns.seal(user_id, USER_SECRET_COLUMN, secrets.token_hex(32))
            sealed = rows.signing_secret_sync(self.pool, user_id, candidate) or candidate
        return self.columns.open(user_id, USER_SECRET_COLUMN, sealed)

    def send(self, due: Due) -> Attempt:
        """Attempt ``due`` and record the outcome; returns it."""
        s = self.settings
        attempt = post(due, allow_private=s.allow_private_urls, timeout=s.webhook_timeout_seconds)
        if attempt.verdict == "retry" and due.attempts >= s.webhook_max_attempts:
            attempt = Attempt("failed", attempt.code, f"{attempt.error}; out of attempts")
        self.record(due, attempt)
        WEBHOOK_DELIVERIES.labels(attempt.verdict).inc()
        return attempt

    def record(self, due: Due, attempt: Attempt) -> None:
        outcome = (attempt.code, attempt.error)
        if attempt.verdict == "delivered":
            rows.delivered(self.pool, due.id, due.attempts, attempt.code or 200)
        elif attempt.verdict == "retry":
            rows.retry(self.pool, due.id, due.attempts, outcome, self.backoff(due.attempts))
        else:
            rows.failed(self.pool, due.id, due.attempts, outcome)
            if attempt.verdict == "gone" and due.webhook_id is not None:
                log.warning("webhook %s answered 410 Gone: disabled", due.webhook_id)
                rows.disable(self.pool, due.webhook_id, GONE)

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``."""
        s = self.settings
        wait = min(s.webhook_backoff_seconds * 2 ** (attempts - 1), s.webhook_backoff_max_seconds)
        return wait * (1 + JITTER * random.random())  # noqa: S311 (spreading, not secrecy)

    def purge(self) -> int:
        """Forget deliveries that ended longer ago than jobs are kept."""
        return rows.purge(self.pool, self.settings.job_retention_hours * 3600)

    def next_due(self) -> float | None:
        return rows.next_due(self.pool)
