"""One error hierarchy for the whole appliance.

- ``ClientError`` and subclasses: the caller did something wrong. They carry an HTTP status,
  a stable CloudConvert-style ``code``, a message for humans and the offending ``errors``
  (field -> messages). The API turns them into ``{"code", "message", "errors"}``.
- ``RetryableError``: a transient failure (network, storage hiccup); the task runs again with
  backoff until ``task_max_attempts``.
- ``PermanentError``: the task cannot succeed (corrupt input, unsupported content); the task
  fails with ``code``/``message`` and so does its job.

The log gets the wrapped cause (``raise ... from exc``); clients only see code and message.
"""

from __future__ import annotations


class ApplianceError(Exception):
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ClientError(ApplianceError):
    status = 400
    code = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        errors: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.errors = errors or {}

    def to_body(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body

    def headers(self) -> dict[str, str]:
        """Response headers that go with the error."""
        return {}


class Unauthenticated(ClientError):
    status = 401
    code = "UNAUTHENTICATED"


class Forbidden(ClientError):
    status = 403
    code = "FORBIDDEN"


class NotFound(ClientError):
    status = 404
    code = "NOT_FOUND"


class Conflict(ClientError):
    status = 409
    code = "CONFLICT"


class InvalidData(ClientError):
    """The request is well-formed JSON but its content is invalid (CloudConvert's 422)."""

    status = 422
    code = "INVALID_DATA"


class IdempotencyKeyInUse(Conflict):
    """A request with the same Idempotency-Key is still being answered (the IETF draft's
    409): the client sends it again after ``Retry-After`` and then gets that one's answer."""

    code = "IDEMPOTENCY_KEY_IN_USE"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class IdempotencyKeyReused(InvalidData):
    """The Idempotency-Key was already used with another request (route or body)."""

    code = "IDEMPOTENCY_KEY_REUSED"


class TooManyRequests(ClientError):
    """A rate limit was reached; ``headers`` say when to come back (``Retry-After``) and the
    limit (the IETF ``RateLimit`` / ``RateLimit-Policy`` fields)."""

    status = 429
    code = "TOO_MANY_REQUESTS"

    def __init__(
        self, message: str, *, limit_headers: dict[str, str], code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.limit_headers = limit_headers

    def headers(self) -> dict[str, str]:
        return self.limit_headers


class Unavailable(ClientError):
    """The appliance cannot take the request now (overloaded, or Postgres away): nothing of it
    was kept, and the client comes back after ``Retry-After`` seconds."""

    status = 503
    code = "SERVICE_UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class FileTooLarge(ClientError):
    status = 413
    code = "FILE_TOO_LARGE"


class BodyTooLarge(ClientError):
    """A JSON request body past its cap (import/base64 files aside)."""

    status = 413
    code = "BODY_TOO_LARGE"


class QuotaExceeded(ClientError):
    """The user holds as many stored bytes as allowed: new work waits until some expire or
    are deleted."""

    status = 403
    code = "STORAGE_QUOTA_EXCEEDED"


class CreditsExceeded(ClientError):
    """The user's conversion minutes for the day or month are used up (CloudConvert answers
    402 Payment Required when credits run out): new jobs wait for the next day or month, or
    a larger quota."""

    status = 402
    code = "CREDITS_EXCEEDED"


# Codes of task failures that are the appliance's fault, not the input's or the request's:
# a job that ends with one counts against the job-success SLO (metrics/slo.py). Retryable
# failures land here only once their attempts ran out; any other permanent failure (a file
# the engine rejects, a limit, the task's own timeout) is the client's.
SERVICE_FAULT_CODES = frozenset(
    {
        "TEMPORARY_FAILURE",
        "INTERNAL_ERROR",
        "ENGINE_CRASHED",
        "ENGINE_UNAVAILABLE",
        "ENGINE_VERSION_UNAVAILABLE",
        "STORAGE_ERROR",
        "CREDENTIALS_UNAVAILABLE",
        "SCANNER_UNAVAILABLE",
        "WORKER_LOST",
        "NO_SPACE",
    }
)


class RetryableError(ApplianceError):
    code = "TEMPORARY_FAILURE"


class PermanentError(ApplianceError):
    code = "CONVERSION_FAILED"
