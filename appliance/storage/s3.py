"""S3 storage through the ``minio`` client: MinIO in production, any S3 service works."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from minio import Minio
from minio.error import S3Error

from appliance.errors import RetryableError
from appliance.settings import Settings

PART_SIZE = 16 * 1024 * 1024


class S3Storage:
    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        client = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
        )
        return cls(client, settings.s3_bucket)

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            try:
                self.client.make_bucket(self.bucket)
            except S3Error as exc:  # another host created it first
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put_path(self, key: str, path: Path, *, consume: bool = False) -> None:
        try:
            self.client.fput_object(self.bucket, key, str(path), part_size=PART_SIZE)
        except (S3Error, OSError) as exc:
            raise RetryableError(f"storage write failed: {exc}") from exc

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
            raise RetryableError(f"storage read failed: {exc}") from exc

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        response = self.client.get_object(self.bucket, key)
        try:
            yield from response.stream(chunk_size)
        finally:
            response.close()
            response.release_conn()

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def download_url(self, key: str, filename: str, expires_in: int) -> str:
        disposition = 'attachment; filename="' + filename.replace('"', "") + '"'
        return self.client.presigned_get_object(
            self.bucket,
            key,
            expires=timedelta(seconds=expires_in),
            response_headers={"response-content-disposition": disposition},
        )

    def check(self) -> None:
        self.client.bucket_exists(self.bucket)
