"""Imported files meet the virus scanner here, before any engine sees them.

A worker's own imports (import/url, import/s3) scan the downloaded file before it is stored:
an infected one is never stored (its spool is deleted). A client's file (import/upload,
import/base64) is stored by the API and held (``files_to_scan``) until the import task's
worker run scans it; an infected one is deleted from storage. Either way the task fails with
VIRUS_FOUND, which fails its dependents, and an audit record names the task, the file's
name and the signature.

With encryption at rest a spool is sealed as it is written and a client's file is stored
sealed: clamd is sent the opened (plain) bytes, streamed, never the ciphertext; no plain copy
is written to disk for the scan.
"""

from __future__ import annotations

import logging

from appliance.conversions.files import Spool
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import Outcome, OutFile, Task
from appliance.db import DictConnection
from appliance.db.queries import scans
from appliance.errors import PermanentError
from appliance.scanning.scanner import VirusFound, check_stream
from appliance.security import audit
from appliance.storage import object_key

log = logging.getLogger(__name__)


def check_download(rt: Runtime, task: Task, spool: Spool, filename: str) -> None:
    """A file a worker downloaded (its finished spool): return if clean; VirusFound
    (audited) if not."""
    try:
        check_stream(
            rt.settings, lambda: rt.storage.open_file(spool.path, sealed=spool.sealed), filename
        )
    except VirusFound as exc:
        with rt.pool.connection() as conn, conn.transaction():
            _audit_infected(conn, task, filename, exc.signature, None)
        raise


def client_file(rt: Runtime, task: Task) -> Outcome:
    """The import's outcome once the file its client sent is found clean; VirusFound (the
    file deleted, audited) if not."""
    held = scans.held(rt.pool, task.id)
    if held is None:
        raise PermanentError("The file of this import is gone", code="INVALID_INPUT_FILE")
    key = object_key(held.sha256)
    try:
        check_stream(rt.settings, lambda: rt.storage.iter_bytes(key), held.filename)
    except VirusFound as exc:
        _delete_infected(rt, task, held, exc.signature)
        raise
    return Outcome.of_files([OutFile(held.sha256, held.size, held.filename)])


def _delete_infected(rt: Runtime, task: Task, held: scans.HeldFile, signature: str) -> None:
    with rt.pool.connection() as conn, conn.transaction():
        scans.drop(conn, task.id)
        _audit_infected(conn, task, held.filename, signature, held.size)
    rt.storage.delete(object_key(held.sha256))
    log.warning("task %s: %s is infected (%s); deleted", task.id, held.filename, signature)


def _audit_infected(
    conn: DictConnection, task: Task, filename: str, signature: str, size: int | None
) -> None:
    details: dict[str, object] = {
        "operation": task.operation,
        "filename": filename,
        "signature": signature,
        "job": str(task.job_id) if task.job_id else None,
        "size": size,
    }
    audit.record(conn, "file.infected", task.user_id, f"task:{task.id}", details, actor="worker")
