"""A user's personal data (GDPR): everything held about them exported in one archive, or
erased (``appliance users export|erase EMAIL``, ``DELETE /v2/users/me``).

The export is a zip archive:

    user.json                       the documented JSON below (EXPORT_FORMAT)
    files/<task id>/<n>/<filename>  each file of each task, opened (decrypted)

``user.json`` holds ``format`` (EXPORT_FORMAT), ``exported_at``, ``account`` (id, email,
username, created_at, disabled_at, operator, quotas), and one list per section of
``db/queries/personal.SECTIONS``: ``api_keys`` (metadata only; a key is never stored),
``data_keys`` (id, master key id, created_at; never the key), ``jobs``, ``tasks`` (as the API
shows them), ``files`` (task_id, position, filename, size, address and ``path`` in the
archive), ``usage`` (per UTC day), ``webhooks`` (without signing secrets),
``webhook_deliveries`` (each event's exact body), ``signed_url_bases`` (without secrets),
``invitations`` (to the web UI: when made, until when, used when; never the token), and
``audit`` (the audit log's records about the user, oldest first; the export's own
record comes after it).

Erasing deletes the user and everything above in one transaction, the cached conversion
results made from their files with it, then the stored objects no other user references,
before the commit (an upload of the same bytes waits on their rows). Their data key goes
with the user (crypto-shredding): any copy of their objects anywhere (a backup of the
bucket, a disk image) can no longer be opened. The audit log keeps its records about the
user (it is append-only, chained: no record can be edited), which hold their random id and
never their e-mail; they age out with its retention. The erasure adds one, ``user.erased``.
"""

from __future__ import annotations

import os
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from appliance.db import DictConnection
from appliance.db.queries import audit as audit_rows
from appliance.db.queries import keys as key_rows
from appliance.db.queries import personal as rows
from appliance.security import audit, revocation
from appliance.security.accounts import AccountError, connect
from appliance.settings import Settings
from appliance.storage import object_key
from appliance.storage.sealed import SealedStorage

EXPORT_FORMAT = "appliance-user-export/1"


@dataclass(frozen=True)
class Erased:
    user_id: uuid.UUID
    objects_deleted: int
    told_api: bool  # the API processes were told to drop the user's keys at once


def erase(
    settings: Settings, storage: SealedStorage, who: str | uuid.UUID, *, actor: str | None = None
) -> Erased:
    """Erase the user ``who`` (an e-mail or an id; AccountError when there is none), audited
    as ``actor``'s doing (default: the operator running the command)."""
    # their jobs go: the API processes' cached job states are renewed as it commits
    with connect(settings, changes_jobs=True) as conn, conn.transaction():
        user_id = rows.lock_user(conn, who)
        if user_id is None:
            raise AccountError(f"no user {who}")
        released = rows.erase(conn, user_id)
        for address in released:
            storage.delete(object_key(address))
        audit_user_erased(conn, user_id, len(released), actor or audit.operator())
    storage.keyring.forget()
    told = revocation.announce(settings.effective_redis_url, users=[user_id])
    return Erased(user_id, len(released), told)


# -- the audit log's three call sites --------------------------------------------------------
def audit_user_erased(conn: DictConnection, user_id: uuid.UUID, objects: int, actor: str) -> None:
    """The one record an erasure leaves, last in its transaction: "user.erased" with the
    user's random id as its subject and nothing personal (no e-mail, no file name)."""
    details = {"objects_deleted": objects}
    audit.record(conn, "user.erased", user_id, f"user:{user_id}", details, actor=actor)


def audit_user_exported(conn: DictConnection, user_id: uuid.UUID, files: int) -> None:
    """The record of an export: "user.exported", the user's id."""
    details = {"files": files}
    audit.record(conn, "user.exported", user_id, f"user:{user_id}", details, actor=audit.operator())


def audit_entries(conn: DictConnection, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """The audit log's records about the user, oldest first, for the export's ``audit``
    section (their details as JSON objects); what is pending is sealed first."""
    audit.seal(conn)
    return [
        {**r, "details": msgspec.json.decode(r["details"])}
        for r in audit_rows.of_user(conn, user_id)
    ]


def export(settings: Settings, storage: SealedStorage, email: str, out: Path) -> dict[str, Any]:
    """Write the user's archive to ``out`` (mode 0600: it is all about them); its
    ``user.json`` document."""
    with connect(settings) as conn:
        doc = _document(conn, email)
        audit_user_exported(conn, doc["account"]["id"], len(doc["files"]))
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with (
        os.fdopen(fd, "wb") as fh,
        zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf,
    ):
        for entry in doc["files"]:
            with zf.open(entry["path"], "w", force_zip64=True) as dst:
                for chunk in storage.iter_bytes(object_key(entry["address"])):
                    dst.write(chunk)
        zf.writestr("user.json", msgspec.json.format(msgspec.json.encode(doc), indent=1))
    return doc


def _document(conn: DictConnection, email: str) -> dict[str, Any]:
    user_id = key_rows.user_id(conn, email)
    if user_id is None:
        raise AccountError(f"no user {email}")
    doc: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "exported_at": datetime.now(UTC),
        "account": rows.account(conn, user_id),
    }
    for name in rows.SECTIONS:
        doc[name] = rows.section(conn, name, user_id)
    for entry in doc["files"]:
        entry["path"] = f"files/{entry['task_id']}/{entry['position']}/{entry['filename']}"
    doc["audit"] = audit_entries(conn, user_id)
    return doc
