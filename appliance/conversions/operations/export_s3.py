"""``export/s3``: a worker uploads the input tasks' files to an S3 bucket, streamed from
storage a part at a time (5 MiB for a file of up to 50 GB), through the address guard.

Fields as CloudConvert names them: ``input``, ``bucket``, ``region``, ``endpoint``, ``key``
(``%d`` numbers several files: ``page-%d.png``; without it they are ``name-1.ext``, ...) or
``key_prefix`` (prepended to each file's name), ``access_key_id``, ``secret_access_key``,
``session_token``, ``acl``, ``cache_control``, ``content_disposition``, ``content_type``
(else guessed from the name), ``metadata``, ``server_side_encryption``, ``tagging``. The
credentials are sealed while the task waits and dropped when it ends.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterator
from contextlib import closing
from typing import Literal

from minio import Minio
from minio.commonconfig import Tags

from appliance.conversions import remote_s3
from appliance.conversions.operation import Errors, Operation, PlannedTask, Progress
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import InputFile, Outcome, Task
from appliance.conversions.work import numbered
from appliance.engines.registry import Registry
from appliance.errors import FileTooLarge
from appliance.storage import object_key

Acl = Literal[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
]
PLACEHOLDER = re.compile(r"%(0?\d{0,2})d")  # printf's %d, %03d: the file's number
HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
# header values: printable ASCII (no line breaks to split a header, nothing http.client
# cannot encode); tags are URL-encoded, so only control characters are refused there
NOT_HEADER_TEXT = re.compile(r"[^\x20-\x7e]")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ExportFields(remote_s3.Location, kw_only=True):
    acl: Acl | None = None
    cache_control: str | None = None
    content_disposition: str | None = None
    content_type: str | None = None
    metadata: dict[str, str] | None = None
    server_side_encryption: Literal["AES256", "aws:kms"] | None = None
    tagging: dict[str, str] | None = None


class ExportS3(Operation):
    name = "export/s3"
    required = ("input", "bucket", "region", "access_key_id", "secret_access_key")
    fields = frozenset(
        {"input", "bucket", "region", "endpoint", "key", "key_prefix"}
        | {"acl", "cache_control", "content_disposition", "content_type", "metadata"}
        | {"server_side_encryption", "tagging"}
        | remote_s3.SECRET_FIELDS
    )
    secret_fields = remote_s3.SECRET_FIELDS

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        if not task.depends_on:
            errors.add(f"{task.key}.input", "export/s3 needs at least one input task")
        f = remote_s3.parse(task, ExportFields, errors)
        if f is not None:
            check_headers(task, f, errors)

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        f = remote_s3.read(task, ExportFields)
        inputs = task.input_files()
        client = remote_s3.client(rt.settings, f, remote_s3.credentials(rt, task))
        listed = []
        with remote_s3.s3_errors(f.bucket):
            for n, (file, key) in enumerate(zip(inputs, keys_for(f, inputs), strict=True)):
                self.upload(rt, client, f, file, key)
                listed.append({"filename": file.filename, "size": file.size, "key": key})
                progress((n + 1) / len(inputs))
        return Outcome({"files": listed})

    def upload(
        self, rt: Runtime, client: Minio, f: ExportFields, file: InputFile, key: str
    ) -> None:
        limit = rt.settings.max_upload_bytes
        if file.size > limit:
            raise FileTooLarge(f"{file.filename} is larger than the limit of {limit} bytes")
        tags = Tags(for_object=True)
        tags.update(f.tagging or {})
        stream = Stream(rt.storage.iter_bytes(object_key(file.sha256)), limit)
        with closing(stream):  # the storage's response is released even on an error
            client.put_object(
                f.bucket,
                key,
                stream,  # type: ignore[arg-type]
                file.size,
                content_type=f.content_type or guess_type(file.filename),
                metadata=headers_of(f),  # type: ignore[arg-type]
                num_parallel_uploads=1,  # one part in memory at a time
                tags=tags if f.tagging else None,
            )


class Stream:
    """A stored file as minio reads it: ``read(n)`` gives at most one storage chunk, so one
    part is the most held in memory; FILE_TOO_LARGE once more than ``limit`` bytes came."""

    def __init__(self, chunks: Iterator[bytes], limit: int) -> None:
        self.chunks, self.limit = chunks, limit
        self.seen = 0
        self.pending = b""

    def read(self, size: int = -1) -> bytes:
        if not self.pending:
            self.pending = next(self.chunks, b"")
            self.seen += len(self.pending)
            if self.seen > self.limit:
                raise FileTooLarge(f"The file is larger than the limit of {self.limit} bytes")
        cut = len(self.pending) if size < 0 else size
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def close(self) -> None:
        """Stop reading storage (a generator's ``finally`` releases its connection)."""
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


def keys_for(f: ExportFields, inputs: list[InputFile]) -> list[str]:
    """Each file's key: ``key`` (numbered for several files), else ``key_prefix`` and its
    name."""
    if not f.key:
        return [(f.key_prefix or "") + file.filename for file in inputs]
    key, count = f.key, range(1, len(inputs) + 1)
    if PLACEHOLDER.search(key):
        return [numbered_by_placeholder(key, n) for n in count]
    return [key] if len(inputs) == 1 else [numbered(key, n) for n in count]


def numbered_by_placeholder(key: str, n: int) -> str:
    """``key`` with each printf ``%d`` (``%03d``...) replaced by ``n``."""

    def number(match: re.Match[str]) -> str:
        return format(n, match[1] + "d")

    return PLACEHOLDER.sub(number, key)


def guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def headers_of(f: ExportFields) -> dict[str, str]:
    """The request headers of the upload; user metadata always under ``x-amz-meta-``, so a
    metadata key cannot set another header."""
    given = {
        "x-amz-acl": f.acl,
        "Cache-Control": f.cache_control,
        "Content-Disposition": f.content_disposition,
        "x-amz-server-side-encryption": f.server_side_encryption,
    }
    headers = {k: v for k, v in given.items() if v}
    headers |= {f"x-amz-meta-{k}": v for k, v in (f.metadata or {}).items()}
    return headers


def check_headers(task: PlannedTask, f: ExportFields, errors: Errors) -> None:
    """Values that become request headers are printable ASCII, metadata keys header tokens;
    tags hold no control characters."""
    values = {
        "cache_control": f.cache_control,
        "content_disposition": f.content_disposition,
        "content_type": f.content_type,
    }
    for name, value in values.items():
        if value and NOT_HEADER_TEXT.search(value):
            errors.add(f"{task.key}.{name}", "must be printable ASCII")
    if any(
        not HEADER_NAME.fullmatch(k) or NOT_HEADER_TEXT.search(v)
        for k, v in (f.metadata or {}).items()
    ):
        errors.add(f"{task.key}.metadata", "keys must be header tokens, values printable ASCII")
    if any(CONTROL.search(k + v) for k, v in (f.tagging or {}).items()):
        errors.add(f"{task.key}.tagging", "must not contain control characters")
