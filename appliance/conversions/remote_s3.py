"""What ``import/s3`` and ``export/s3`` share: the fields CloudConvert names, the client for
the user's S3 service, and that service's answers turned into the house errors.

The client is ``minio``'s with a ``GuardedPoolManager``: every request goes to an address the
outbound guard allowed just before (private, loopback and link-local addresses only with
``allow_private_urls``), so neither the endpoint nor a name it rebinds to reaches inside.
The credentials come sealed in the task (``security.sealing``) and are opened only here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlsplit

import msgspec
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from appliance.conversions.operation import Errors, PlannedTask, option_field
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import Task
from appliance.errors import PermanentError, RetryableError
from appliance.security import sealing
from appliance.security.netguard import GuardedPoolManager
from appliance.settings import Settings

# the fields sealed before a task is stored (``Operation.secret_fields``)
SECRET_FIELDS = frozenset({"access_key_id", "secret_access_key", "session_token"})
AWS_ENDPOINT = "s3.amazonaws.com"  # with a region, minio addresses the region's own host
# the service's error codes that mean the credentials or their rights are wrong
DENIED = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)
MISSING = frozenset({"NoSuchBucket", "NoSuchKey", "NoSuchObject", "ResourceNotFound"})
BUSY = frozenset({"InternalError", "RequestTimeout", "ServiceUnavailable", "SlowDown"})


class Location(msgspec.Struct, kw_only=True):
    """Where the files are, as CloudConvert names it."""

    bucket: str
    region: str
    endpoint: str | None = None  # a URL; None: Amazon S3 in ``region``
    key: str | None = None
    key_prefix: str | None = None


class Credentials(msgspec.Struct, kw_only=True):
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


S = TypeVar("S", bound=msgspec.Struct)


def parse(task: PlannedTask, schema: type[S], errors: Errors) -> S | None:
    """The task's fields as ``schema`` (credentials checked too), or None with the error
    recorded under the field it names."""
    try:
        msgspec.convert(task.payload, Credentials)
        fields = msgspec.convert(task.payload, schema)
    except msgspec.ValidationError as exc:
        errors.add(option_field(task.key, exc), str(exc))
        return None
    if not isinstance(fields, Location):
        return fields
    if fields.key and fields.key_prefix:
        errors.add(f"{task.key}.key", "give key or key_prefix, not both")
    if fields.endpoint is not None and endpoint_of(fields) is None:
        errors.add(f"{task.key}.endpoint", "must be an http:// or https:// URL without a path")
    return fields


def endpoint_of(loc: Location) -> tuple[str, bool] | None:
    """(host[:port], https?) of the S3 API; None for an endpoint that is not an http(s) URL
    with a host and no path. An endpoint without a scheme is taken as https."""
    if loc.endpoint is None:
        return AWS_ENDPOINT, True
    text = loc.endpoint if "://" in loc.endpoint else f"https://{loc.endpoint}"
    try:
        parts = urlsplit(text)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        valid = valid and (parts.port is None or parts.port > 0)
    except ValueError:
        return None
    if not valid or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    return parts.netloc, parts.scheme == "https"


def read(task: Task, schema: type[S]) -> S:
    """A claimed task's fields (checked when it was created)."""
    return msgspec.convert(task.payload, schema)


def credentials(rt: Runtime, task: Task) -> Credentials:
    """The task's credentials, opened from its sealed field."""
    key = sealing.derive_key(rt.settings.signing_key())
    opened = sealing.unseal(task.payload, key, str(task.id))
    try:
        return msgspec.convert(opened, Credentials)
    except msgspec.ValidationError as exc:
        raise PermanentError("The task's credentials are incomplete", code="INVALID_DATA") from exc


def client(settings: Settings, loc: Location, creds: Credentials) -> Minio:
    """A client for the user's S3 service, every connection through the outbound guard."""
    endpoint = endpoint_of(loc)
    assert endpoint is not None  # checked when the task was created
    timeout = settings.fetch_timeout_seconds
    http = GuardedPoolManager(
        allow_private=settings.allow_private_urls,
        timeout=urllib3.Timeout(connect=timeout, read=timeout),
        maxsize=2,
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(502, 503, 504)),
    )
    return Minio(
        endpoint[0],
        access_key=creds.access_key_id,
        secret_key=creds.secret_access_key,
        session_token=creds.session_token,
        secure=endpoint[1],
        region=loc.region,  # known: no bucket-location request
        http_client=http,
    )


@contextmanager
def s3_errors(bucket: str) -> Iterator[None]:
    """The service's errors as the house's: a stable code and a short message for the
    client (the S3 error code, never its text), the cause for the log."""
    try:
        yield
    except S3Error as exc:
        raise _mapped(exc, bucket) from exc
    except (ServerError, InvalidResponseError) as exc:
        raise RetryableError("The S3 service failed to answer", code="S3_UNAVAILABLE") from exc
    except (urllib3.exceptions.HTTPError, MinioException, OSError) as exc:
        raise RetryableError("Cannot reach the S3 service", code="S3_UNAVAILABLE") from exc


def _mapped(exc: S3Error, bucket: str) -> Exception:
    if exc.code in DENIED:
        return PermanentError(
            f"The S3 service refused access to bucket {bucket!r} ({exc.code}): check the"
            " credentials and their permissions",
            code="S3_ACCESS_DENIED",
        )
    if exc.code in MISSING:
        return PermanentError(f"Not found in bucket {bucket!r} ({exc.code})", code="S3_NOT_FOUND")
    status = exc.response.status if exc.response is not None else 0
    if exc.code in BUSY or status >= 500:
        return RetryableError(f"The S3 service is unavailable ({exc.code})", code="S3_UNAVAILABLE")
    return PermanentError(f"The S3 service refused the request ({exc.code})", code="S3_ERROR")
