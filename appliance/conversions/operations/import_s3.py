"""``import/s3``: a worker downloads one object (``key``) or every object under a prefix
(``key_prefix``) from an S3 bucket; streamed with the size limit, through the address guard.

Fields as CloudConvert names them: ``bucket``, ``region``, ``endpoint`` (another S3 service
than Amazon's), ``key`` or ``key_prefix``, ``access_key_id``, ``secret_access_key``,
``session_token``, ``filename``. The credentials are sealed while the task waits and dropped
when it ends; they never appear in the task's JSON.
"""

from __future__ import annotations

import posixpath

from minio import Minio

from appliance.conversions import remote_s3
from appliance.conversions.files import safe_filename, spool_for
from appliance.conversions.operation import Errors, Operation, PlannedTask, Progress
from appliance.conversions.runtime import Runtime
from appliance.conversions.scanning import check_download
from appliance.conversions.task import Outcome, OutFile, Task
from appliance.conversions.work import extension_of, keep_spool
from appliance.engines.registry import Registry
from appliance.errors import PermanentError
from appliance.metrics import UPLOAD_BYTES

MAX_FILES = 100  # objects one key_prefix may import
CHUNK = 1 << 16  # bytes read at a time: the memory one download holds


class ImportFields(remote_s3.Location, kw_only=True):
    filename: str | None = None  # the file's name when importing by key; else the key's


class ImportS3(Operation):
    name = "import/s3"
    required = ("bucket", "region", "access_key_id", "secret_access_key")
    fields = frozenset(
        {"bucket", "region", "endpoint", "key", "key_prefix", "filename"} | remote_s3.SECRET_FIELDS
    )
    secret_fields = remote_s3.SECRET_FIELDS

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        f = remote_s3.parse(task, ImportFields, errors)
        if f is None:
            return
        if not (f.key or f.key_prefix):
            errors.add(f"{task.key}.key", "key or key_prefix is required for import/s3")
        if f.key:  # one file: its format is known by its name
            task.output_format = extension_of(f.filename) or extension_of(f.key)

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        f = remote_s3.read(task, ImportFields)
        client = remote_s3.client(rt.settings, f, remote_s3.credentials(rt, task))
        with remote_s3.s3_errors(f.bucket):
            keys = [f.key] if f.key else self.listed(client, f)
            files = []
            for n, key in enumerate(keys):
                name = (f.filename if f.key else None) or posixpath.basename(key)
                files.append(self.download(rt, task, client, f.bucket, key, name))
                progress((n + 1) / len(keys))
        return Outcome.of_files(files)

    def listed(self, client: Minio, f: ImportFields) -> list[str]:
        """The keys of the objects under the prefix (not its folder markers), in key order."""
        keys: list[str] = []
        for obj in client.list_objects(f.bucket, prefix=f.key_prefix, recursive=True):
            if obj.is_dir or not obj.object_name or obj.object_name.endswith("/"):
                continue
            keys.append(obj.object_name)
            if len(keys) > MAX_FILES:
                raise PermanentError(
                    f"More than {MAX_FILES} objects start with {f.key_prefix!r}; import at most"
                    f" {MAX_FILES} a task",
                    code="TOO_MANY_FILES",
                )
        if not keys:
            raise PermanentError(
                f"No object in bucket {f.bucket!r} starts with {f.key_prefix!r}",
                code="S3_NOT_FOUND",
            )
        return sorted(keys)

    def download(
        self, rt: Runtime, task: Task, client: Minio, bucket: str, key: str, name: str
    ) -> OutFile:
        """One object streamed into storage, chunk by chunk; FILE_TOO_LARGE as soon as it
        passes the size limit."""
        s = rt.settings
        with spool_for(rt.storage, s, task.user_id, s.max_upload_bytes) as spool:
            response = client.get_object(bucket, key)
            try:
                for chunk in response.stream(CHUNK):
                    spool.write(chunk)
            finally:
                response.close()
                response.release_conn()
            sha = spool.finish()
            UPLOAD_BYTES.labels("s3").inc(spool.size)
            check_download(rt, task, spool, safe_filename(name))
            return keep_spool(rt, task, spool, sha, safe_filename(name))
