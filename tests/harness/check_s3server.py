"""Smoke check of the Swift+s3api test server with the minio client.

    .venv/bin/python tests/harness/check_s3server.py

Starts a server in a temp dir, runs bucket/object operations the appliance relies on, stops it,
checks that no daemon process is left, prints timings and "OK" (exit 0) or the failure (exit 1).
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

from minio import Minio
from minio.commonconfig import CopySource
from s3server import S3Server, start_s3_server

MiB = 1024 * 1024
BUCKET = "check-bucket"
OBJ = "inputs/big.bin"
COPY = "outputs/copy.bin"
DISPOSITION = 'attachment; filename="x.webp"'


class _Stream(io.RawIOBase):
    """A non-seekable stream, like an upload body read from a socket."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        chunk = self._buf.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def _pgroup_members(pgids: set[int]) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) in pgids:
            found.append(f"{entry}: {stat[:80]}")
    return found


def main() -> int:
    timings: list[tuple[str, float]] = []

    def step(name: str, t0: float) -> float:
        now = time.monotonic()
        timings.append((name, now - t0))
        return now

    with tempfile.TemporaryDirectory(prefix="s3check-") as tmp:
        t = time.monotonic()
        server: S3Server = start_s3_server(Path(tmp))
        t = step("start_s3_server", t)
        pgids = {d.proc.pid for d in server._daemons if d.proc is not None}
        try:
            client = Minio(
                server.endpoint,
                access_key=server.access_key,
                secret_key=server.secret_key,
                secure=False,
                region=server.region,
            )

            client.make_bucket(BUCKET)
            assert client.bucket_exists(BUCKET)
            t = step("make_bucket", t)

            data = os.urandom(20 * MiB)
            result = client.put_object(
                BUCKET,
                OBJ,
                cast(BinaryIO, _Stream(data)),
                length=-1,
                part_size=5 * MiB,
                content_type="application/x-test",
            )
            assert result.etag and result.etag.endswith("-4"), result.etag  # 4 parts
            t = step("put_object 20 MiB multipart", t)

            st = client.stat_object(BUCKET, OBJ)
            assert st.size == len(data), st.size
            assert st.content_type == "application/x-test", st.content_type
            t = step("stat_object", t)

            resp = client.get_object(BUCKET, OBJ)
            try:
                got = resp.read()
            finally:
                resp.close()
                resp.release_conn()
            assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
            t = step("get_object + compare", t)

            url = client.presigned_get_object(BUCKET, OBJ, expires=timedelta(minutes=10))
            with urllib.request.urlopen(url, timeout=30) as r:
                assert r.read() == data
            url = client.presigned_get_object(
                BUCKET,
                OBJ,
                expires=timedelta(minutes=10),
                response_headers={"response-content-disposition": DISPOSITION},
            )
            with urllib.request.urlopen(url, timeout=30) as r:
                header = r.headers.get("Content-Disposition")
                assert header == DISPOSITION, header
                assert r.read() == data
            t = step("presigned_get_object x2 (urllib)", t)

            client.copy_object(BUCKET, COPY, CopySource(BUCKET, OBJ))
            assert client.stat_object(BUCKET, COPY).size == len(data)
            resp = client.get_object(BUCKET, COPY)
            try:
                assert resp.read() == data
            finally:
                resp.close()
                resp.release_conn()
            t = step("copy_object (server-side) + verify", t)

            names = sorted(o.object_name for o in client.list_objects(BUCKET, recursive=True))
            assert names == [OBJ, COPY], names
            top = sorted(o.object_name for o in client.list_objects(BUCKET))
            assert top == ["inputs/", "outputs/"], top
            t = step("list_objects", t)

            client.remove_object(BUCKET, OBJ)
            client.remove_object(BUCKET, COPY)
            left = list(client.list_objects(BUCKET, recursive=True))
            assert left == [], left
            client.remove_bucket(BUCKET)
            assert not client.bucket_exists(BUCKET)
            t = step("remove_object x2 + remove_bucket", t)
        finally:
            t = time.monotonic()
            server.stop()
            server.stop()  # idempotent
            step("stop", t)

        leftovers = _pgroup_members(pgids)
        if leftovers:
            print("FAIL: processes left behind:\n" + "\n".join(leftovers))
            return 1

    for name, secs in timings:
        print(f"{secs:8.3f}s  {name}")
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
