"""S3 storage through the ``minio`` client: MinIO in production, any S3 service works."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

from minio import Minio
from minio.error import S3Error

from appliance.errors import RetryableError
from appliance.settings import Settings

PART_SIZE = 16 * 1024 * 1024


class S3Storage:
    def __init__(self, client: Minio, bucket: str, presigner: Minio | None = None) -> None:
        self.client = client
        self.bucket = bucket
        # Presigned URLs carry the host they were signed for; clients may need another one.
        self.presigner = presigner or client

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        def client(endpoint: str, secure: bool) -> Minio:
            return Minio(
                endpoint,
                access_key=settings.s3_access_key,
                secret_key=settings.s3_secret_key,
                secure=secure,
                region=settings.s3_region,  # known region: presigning needs no request
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
        except (S3Error, OSError) as exc:
            raise RetryableError("storage write failed", code="STORAGE_ERROR") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise
        return True

    def get_to_path(self, key: str, path: Path) -> None:
        try:
            self.client.fget_object(self.bucket, key, str(path))
        except (S3Error, OSError) as exc:
            raise RetryableError("storage read failed", code="STORAGE_ERROR") from exc

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        response = self.client.get_object(self.bucket, key)
        try:
            yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()

    def size(self, key: str) -> int:
        return int(self.client.stat_object(self.bucket, key).size or 0)

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
