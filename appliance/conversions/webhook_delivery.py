"""Sends what the webhook outbox holds: one attempt at a claimed delivery, and its outcome.

Each delivery is a POST of the body Postgres wrote when the event happened, signed with
``CloudConvert-Signature`` (hex HMAC-SHA256 of the exact bytes with the webhook's secret, or
the user's for a job's own webhook_url) and named by ``Appliance-Delivery-Id``, the same on
every attempt. It goes through ``fetch.open_pinned``, as import/url does: the host resolved
once, refused when any of its addresses is not public (unless ``allow_private_urls``), the
connection made to that one address; no redirect is followed.

A job made by a Gotenberg route with Gotenberg's webhook headers is sent as Gotenberg sends
it instead (``gotenberg``: its output file, or its error as JSON, then the event its events
URL asks for), unsigned, through the same guard and with the same retries (the event: once).

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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import msgspec

from appliance.conversions import gotenberg
from appliance.conversions.fetch import open_pinned
from appliance.conversions.webhooks import (
    DELIVERY_ID_HEADER,
    SECRET_COLUMN,
    SIGNATURE_HEADER,
    USER_SECRET_COLUMN,
    sign,
)
from appliance.db import SyncPool
from appliance.db.queries import jobs as job_rows
from appliance.db.queries import webhooks as rows
from appliance.errors import ApplianceError, InvalidData, PermanentError, RetryableError
from appliance.metrics import WEBHOOK_DELIVERIES
from appliance.security.sealing import Columns
from appliance.settings import Settings
from appliance.storage import object_key
from appliance.storage.sealed import SealedStorage

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
    user_id: uuid.UUID | None = None


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
    return send_request(
        "POST", due.url, headers(due, body), body, allow_private=allow_private, timeout=timeout
    )


def send_request(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes | Iterable[bytes],
    *,
    allow_private: bool,
    timeout: float,
) -> Attempt:
    """Send one request and judge the answer; never raises for what the network or
    receiver does."""
    try:
        pool, response = open_pinned(
            method,
            url,
            allow_private=allow_private,
            timeout=timeout,
            headers=headers,
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
    storage: SealedStorage | None = None  # reads the files Gotenberg's webhooks send

    @property
    def lease(self) -> float:
        """Seconds a claim holds a delivery: longer than one attempt's connect and reads."""
        return 4 * self.settings.webhook_timeout_seconds + 30

    def claim(self, limit: int) -> list[Due]:
        due = []
        for r in rows.claim(self.pool, limit, self.lease):
            secret = self.secret(r["user_id"], r["webhook_id"], r["secret"])
            due.append(
                Due(
                    r["id"],
                    r["webhook_id"],
                    r["url"],
                    r["body"],
                    r["attempts"],
                    secret,
                    r["user_id"],
                )
            )
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
        attempt = self.attempt(due)
        if attempt.verdict == "retry" and due.attempts >= s.webhook_max_attempts:
            attempt = Attempt("failed", attempt.code, f"{attempt.error}; out of attempts")
        self.record(due, attempt)
        WEBHOOK_DELIVERIES.labels(attempt.verdict).inc()
        return attempt

    def attempt(self, due: Due) -> Attempt:
        """One attempt at ``due``: CloudConvert's signed JSON, or what Gotenberg sends."""
        s = self.settings
        try:
            hook = self.hook(due)
        except (ApplianceError, msgspec.ValidationError, msgspec.DecodeError):
            log.warning("delivery %s: its Gotenberg request does not open", due.id, exc_info=True)
            return Attempt("failed", None, "The Gotenberg webhook request does not open")
        if hook is not None:
            return self.post_gotenberg(due, hook)
        return post(due, allow_private=s.allow_private_urls, timeout=s.webhook_timeout_seconds)

    def hook(self, due: Due) -> gotenberg.Hook | None:
        """The Gotenberg webhook ``due`` is, if it is one."""
        if due.user_id is None or due.webhook_id is not None:
            return None
        user = due.user_id
        return gotenberg.hook_in(
            due.body, lambda sealed: self.columns.open(user, gotenberg.HOOK_COLUMN, sealed)
        )

    def post_gotenberg(self, due: Due, hook: gotenberg.Hook) -> Attempt:
        """What Gotenberg sends for the job's end: its file(s), or its error."""
        s, storage, user = self.settings, self.storage, due.user_id
        assert storage is not None and user is not None, "a sender that sends files"

        def outputs(task_id: uuid.UUID) -> list[gotenberg.Output]:
            rows = job_rows.task_outputs_sync(self.pool, task_id, user)
            return [gotenberg.Output(r["sha256"], r["filename"], r["size"]) for r in rows]

        request = gotenberg.hook_request(hook, due.body, outputs)
        events_after = hook.events_url  # where the event goes once this delivery is over
        if not request.url:  # a failure and no error URL: its event is the delivery, retried
            request = gotenberg.event_request(hook, request.failure, datetime.now(UTC))
            events_after = ""
        body = request.chunks(lambda sha: storage.iter_bytes(object_key(sha)))
        request.headers[DELIVERY_ID_HEADER] = str(due.id)
        try:
            attempt = send_request(
                request.method,
                request.url,
                request.headers,
                body,
                allow_private=s.allow_private_urls,
                timeout=s.webhook_timeout_seconds,
            )
        except PermanentError as exc:  # a stored output that does not open
            attempt = Attempt("failed", None, exc.message)
        last = attempt.verdict != "retry" or due.attempts >= s.webhook_max_attempts
        if events_after and last:
            failure = request.failure
            if failure is None and attempt.verdict != "delivered":
                failure = (attempt.code or 502, attempt.error or "The delivery failed")
            self.post_event(due, gotenberg.event_request(hook, failure, datetime.now(UTC)))
        return attempt

    def post_event(self, due: Due, event: gotenberg.HookRequest) -> None:
        """Send a Gotenberg webhook event, once: a failure is logged, nothing more (as
        Gotenberg does)."""
        s = self.settings
        event.headers[DELIVERY_ID_HEADER] = str(due.id)
        sent = send_request(
            event.method,
            event.url,
            event.headers,
            event.body,
            allow_private=s.allow_private_urls,
            timeout=s.webhook_timeout_seconds,
        )
        if sent.verdict != "delivered":
            log.warning("delivery %s: its Gotenberg event was not taken: %s %s",
                        due.id, sent.code, sent.error)  # fmt: skip

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
