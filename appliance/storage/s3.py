"""S3 storage through the ``minio`` client: MinIO in production, any S3 service works."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import S3Error

from appliance.errors import RetryableError
from appliance.settings import Settings

PART_SIZE = 16 * 1024 * 1024
# Seconds to wait for the store to take a connection and for each read, and how often a
# request that could not connect is sent again (never one whose answer did not come: a read
# timeout is final). The minio client's own are 5 minutes each and five retries: with the
# store unreachable (packets dropped), an upload hung past the lb's read timeout (15 s), the
# client was answered 504 and the job was made anyway once the store came back. Now an API
# request waits at most about 10 s (a pooled connection gone dead), 6 s to find none connects.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
RETRIES = 1
# A worker's client (``patient``) tries to connect again for about a minute and a half (a
# second between tries, doubling, at most 10 s): a task has few attempts (3), meant for inputs
# that crash engines, and the lab's 30 s storage outage used them up and failed a job.
PATIENT_RETRIES = 10
PATIENT_BACKOFF = 1.0
PATIENT_BACKOFF_MAX = 10.0
# The store not answering: connection refused, reset or timed out, retries given up.
UNREACHABLE = (OSError, urllib3.exceptions.HTTPError)
MISSING = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")  # S3 error codes of no object


def http_client(patient: bool = False) -> urllib3.PoolManager:
    if patient:
        retries = urllib3.Retry(
            total=PATIENT_RETRIES,
            read=0,
            backoff_factor=PATIENT_BACKOFF,
            backoff_max=PATIENT_BACKOFF_MAX,
            status_forcelist=[500, 502, 503, 504],
        )
    else:
        retries = urllib3.Retry(
            total=RETRIES, read=0, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
        )
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=retries,
    )


class S3Storage:
    def __init__(self, client: Minio, bucket: str, presigner: Minio | None = None) -> None:
        self.client = client
        self.bucket = bucket
        # Presigned URLs carry the host they were signed for; clients may need another one.
        self.presigner = presigner or client

    @classmethod
    def from_settings(cls, settings: Settings, *, patient: bool = False) -> S3Storage:
        """``patient``: rides out a store outage of a minute or so (``http_client``)."""

        def client(endpoint: str, secure: bool) -> Minio:
            return Minio(
                endpoint,
                access_key=settings.s3_access_key,
                secret_key=settings.s3_secret_key,
                secure=secure,
                region=settings.s3_region,  # known region: presigning needs no request
                http_client=http_client(patient),
            )

        presigner = None
        if settings.s3_public_url:
            public = urlsplit(settings.s3_public_url)
            presigner = client(public.netloc, public.scheme == "https")
        return cls(client(settings.s3_endpoint, settings.s3_secure), settings.s3_bucket, presigner)

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            try:
                self.client.make_bucket(self.bucket)
            except S3Error as exc:  # another host created it first
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put_path(self, key: str, path: Path, *, consume: bool = False) -> None:
        try:
            # One part at a time: in parallel, minio reads parts ahead into an unbounded
            # queue, so a file uploaded faster from disk than to S3 sat in memory whole.
            self.client.fput_object(
                self.bucket, key, str(path), part_size=PART_SIZE, num_parallel_uploads=1
            )
        except (S3Error, *UNREACHABLE) as exc:
            raise RetryableError("storage write failed", code="STORAGE_ERROR") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in MISSING:
                return False
            raise
        except UNREACHABLE as exc:
            raise RetryableError("storage unreachable", code="STORAGE_ERROR") from exc
        return True

    def get_to_path(self, key: str, path: Path) -> None:
        try:
            self.client.fget_object(self.bucket, key, str(path))
        except (S3Error, *UNREACHABLE) as exc:
            raise RetryableError("storage read failed", code="STORAGE_ERROR") from exc

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        response = self.client.get_object(self.bucket, key)
        try:
            yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()

    def head(self, key: str, length: int) -> tuple[bytes, int] | None:
        """One ranged GET: the bytes, and the size from its Content-Range."""
        try:
            response = self.client.get_object(self.bucket, key, offset=0, length=length)
        except S3Error as exc:
            if exc.code in MISSING:
                return None
            if exc.code == "InvalidRange":  # an empty object has no first byte
                return b"", 0
            raise
        except UNREACHABLE as exc:
            raise RetryableError("storage unreachable", code="STORAGE_ERROR") from exc
        try:
            first = response.read(length)
            whole = response.headers.get("Content-Range")  # "bytes 0-N/SIZE"
            size = whole.rsplit("/", 1)[1] if whole else response.headers["Content-Length"]
            return first, int(size)
        finally:
            response.close()
            response.release_conn()

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def download_url(self, key: str, filename: str, expires_in: int) -> str:
        # RFC 6266: an ASCII fallback, and the real (UTF-8) name percent-encoded
        fallback = filename.encode("ascii", "replace").decode().replace('"', "").replace("?", "_")
        disposition = f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"
        return self.presigner.presigned_get_object(
            self.bucket,
            key,
            expires=timedelta(seconds=expires_in),
            response_headers={"response-content-disposition": disposition},
        )

    def check(self) -> None:
        self.client.bucket_exists(self.bucket)
