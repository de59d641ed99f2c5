"""Local-disk storage: objects under a root directory, written atomically."""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from appliance.security import signing

DOWNLOAD_PURPOSE = "download"


class LocalStorage:
    def __init__(self, root: Path, public_url: str, secret: bytes) -> None:
        self.root = root
        self.public_url = public_url
        self.secret = secret
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / ".tmp").mkdir(exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"invalid object key {key!r}")
        return path

    def put_path(self, key: str, path: Path, *, consume: bool = False) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if consume:
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
            try:
                os.replace(path, dest)  # same filesystem: no copy
                return
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
        tmp = self.root / ".tmp" / f"{dest.name}.{os.getpid()}.{time.monotonic_ns()}"
        shutil.copyfile(path, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def get_to_path(self, key: str, path: Path) -> None:
        shutil.copyfile(self._path(key), path)

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        with open(self._path(key), "rb") as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def head(self, key: str, length: int) -> tuple[bytes, int] | None:
        try:
            with open(self._path(key), "rb") as fh:
                return fh.read(length), os.fstat(fh.fileno()).st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def download_url(self, key: str, filename: str, expires_in: int) -> str:
        expires = int(time.time()) + expires_in
        sig = signing.sign(self.secret, DOWNLOAD_PURPOSE, f"{key}/{filename}", expires)
        return (
            f"{self.public_url}/v2/files/{key}/{quote(filename)}?expires={expires}&signature={sig}"
        )

    def verify_download(self, key: str, filename: str, expires: int, signature: str) -> bool:
        return signing.verify(
            self.secret, DOWNLOAD_PURPOSE, f"{key}/{filename}", expires, signature
        )

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise OSError(f"storage directory {self.root} is not writable")
