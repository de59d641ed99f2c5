"""Object storage behind one small interface, content-addressed by SHA-256.

Two real backends: ``s3`` (MinIO or any S3 service, via the ``minio`` client) and ``local``
(a directory; the single-host default, downloads served by the API through signed URLs). The
application holds them through ``sealed.SealedStorage``, which encrypts objects per user.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from appliance.settings import Settings

if TYPE_CHECKING:
    from appliance.storage.sealed import SealedStorage


def object_key(sha256: str) -> str:
    """Content address: identical bytes map to one object."""
    return f"sha256/{sha256[:2]}/{sha256}"


class Storage(Protocol):
    def put_path(self, key: str, path: Path, *, consume: bool = False) -> None:
        """Store the file at ``path`` under ``key`` (replacing an existing object).

        ``consume=True`` lets the backend take the file instead of copying it (local disk
        moves it when on the same filesystem); the caller must not use ``path`` afterwards.
        """

    def exists(self, key: str) -> bool: ...

    def get_to_path(self, key: str, path: Path) -> None: ...

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    def head(self, key: str, length: int) -> tuple[bytes, int] | None:
        """The stored object's first ``length`` bytes (fewer when it is shorter) and its size
        in bytes, in one read; None when there is no such object."""

    def delete(self, key: str) -> None: ...

    def download_url(self, key: str, filename: str, expires_in: int) -> str:
        """A URL anyone can GET until it expires; the response names ``filename``."""

    def check(self) -> None:
        """Raise if the backend is unreachable (readiness)."""


def make_backend(settings: Settings, *, patient: bool = False) -> Storage:
    """``patient``: an S3 store that does not answer is tried again for a minute or so (the
    workers'), not given up within seconds (the API's, which answers 503)."""
    if settings.storage == "s3":
        from appliance.storage.s3 import S3Storage

        return S3Storage.from_settings(settings, patient=patient)
    from appliance.storage.local import LocalStorage

    return LocalStorage(
        settings.effective_storage_path, settings.effective_public_url, settings.signing_key()
    )


def make_storage(settings: Settings, *, patient: bool = False) -> SealedStorage:
    """The configured backend (``make_backend``), its objects sealed per user
    (``encrypt_at_rest``)."""
    from appliance.security.envelope import Keyring, MasterKeys, connector
    from appliance.storage.sealed import SealedStorage

    return SealedStorage(
        make_backend(settings, patient=patient),
        Keyring(lambda: MasterKeys.from_settings(settings), connector(settings)),
        seal=settings.encrypt_at_rest,
        tmp_dir=settings.data_path / "work",
        public_url=settings.effective_public_url,
        secret=settings.signing_key(),
    )
