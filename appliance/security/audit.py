"""The tamper-evident audit log: who did what to which user, key, job, file or webhook.

Record an event with ``record(conn, event, user_id, subject, details)`` (or
``record_async``) in the transaction that made the change, so the record commits or rolls
back with it. ``details`` is a small JSON object; it must never carry a secret (a key, a
password, a webhook's signing secret) and, for an erased user, no personal data.

A record is appended to ``audit_pending`` without waiting for any other append, and chained
later by ``seal`` (migration 0027): the reconciler seals on each pass, and ``verify``,
``show``, a user's export and ``prune`` seal before they read. A record is tamper-evident
from its sealing on, within one reconciler interval of its commit.

The chain: each record's ``hash`` is SHA-256 over its sequence number, the hash before it
(``prev``), its time and the SHA-256 of each text field (``record_hash``, computed here and,
the same way, by Postgres's appliance_audit_hash when it appends). ``verify`` walks the
chain from the start or from retention's last anchor and names every record that was
edited, deleted or moved. ``prune`` applies the retention: it deletes the oldest records and
keeps an anchor, signed with the appliance's secret key, that the first kept record chains
onto.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from appliance.db import AsyncDictConnection, AsyncPool, DictConnection
from appliance.db.queries import audit as audit_rows
from appliance.security.limits import Rule

log = logging.getLogger(__name__)

GENESIS = "0" * 64  # the prev of the first record ever
SEAL_BATCH = 5000  # pending records chained in one transaction
ANCHOR_PURPOSE = b"appliance audit anchor"

# The events recorded, by name (``appliance audit show --event`` takes one, or a prefix
# such as ``key``): kept in one list so the documentation and the tests know them all.
EVENTS = frozenset(
    {
        "user.created",
        "user.disabled",
        "user.enabled",
        "user.deleted",
        "user.erased",
        "user.exported",
        "key.created",
        "key.revoked",
        "job.created",
        "job.deleted",
        "task.created",
        "task.deleted",
        "file.downloaded",
        "file.infected",
        "webhook.created",
        "webhook.deleted",
        "limit.hit",
        "operator.command",
        "audit.pruned",
    }
)


class Record(msgspec.Struct, frozen=True):
    seq: int
    at: datetime
    event: str
    user_id: uuid.UUID | None
    actor: str
    subject: str
    details: str  # JSON text, exactly as hashed
    prev: str
    hash: str


class Report(msgspec.Struct):
    """What ``verify`` found: ``problems`` is empty when the chain is whole."""

    records: int = 0
    first: int | None = None  # sequence numbers of the first and last record kept
    last: int | None = None
    head: str = GENESIS  # the hash of the last record: note it elsewhere to detect a rewrite
    anchored: int | None = None  # the last pruned sequence number, when retention pruned
    problems: list[str] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def operator() -> str:
    """The actor of an operator's command: the system user who ran it."""
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return "operator"


def command_details(conn: DictConnection, argv: list[str]) -> dict[str, Any]:
    """An operator command's details: its arguments, each e-mail address in them replaced by
    its user's id (``user:<id>``), or by ``<e-mail>`` when no user has it (any more). The log
    cannot be edited, so no record may hold an e-mail: a user's erasure must leave none."""
    return {"argv": [_without_email(conn, arg) for arg in argv]}


def _without_email(conn: DictConnection, arg: str) -> str:
    if "@" not in arg:
        return arg
    option, value = "", arg
    if arg.startswith("--") and "=" in arg:  # --user=EMAIL
        option, _, value = arg.partition("=")
        option += "="
    user = audit_rows.user_by_email(conn, value)
    return option + (f"user:{user}" if user else "<e-mail>")


def details_text(details: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":"), default=str)


def entry(
    event: str, details: Mapping[str, Any] | None = None, *, actor: str = "system"
) -> tuple[str, str, str]:
    """(event, actor, details text) of a record a statement appends along with its change
    (a query taking ``audited``), checked as ``record`` checks it."""
    _check_event(event)
    return event, actor, details_text(details)


def record(
    conn: DictConnection,
    event: str,
    user_id: uuid.UUID | None,
    subject: str,
    details: Mapping[str, Any] | None = None,
    *,
    actor: str = "system",
) -> int:
    """Append one record (pending until ``seal``); its pending number."""
    _check_event(event)
    return audit_rows.append(conn, event, user_id, actor, subject, details_text(details))


async def record_async(
    conn: AsyncDictConnection,
    event: str,
    user_id: uuid.UUID | None,
    subject: str,
    details: Mapping[str, Any] | None = None,
    *,
    actor: str = "system",
) -> int:
    _check_event(event)
    return await audit_rows.append_async(
        conn, event, user_id, actor, subject, details_text(details)
    )


async def record_download_async(
    conn: AsyncDictConnection, sha256: str, filename: str, address: str
) -> None:
    """A stored file was downloaded from ``address``: recorded as the user's who holds it."""
    details = details_text({"filename": filename, "address": address})
    await audit_rows.append_download(conn, sha256, "download", f"file:{sha256}", details)


class SampledLimits:
    """Audits rate-limit refusals, at most one per rule and identity (a client address, a
    key's identifier) every ``every`` seconds in this process: a client hammering a limit
    leaves a trace, not a flood. Best effort: a failed write is logged, the refusal stands."""

    MAX_REMEMBERED = 10_000  # identities remembered; then the memory starts afresh

    def __init__(self, pool: AsyncPool, every: float) -> None:
        self.pool, self.every = pool, every
        self._last: dict[tuple[str, str], float] = {}

    async def refused(self, rule: Rule, ident: str) -> None:
        now = time.monotonic()
        last = self._last.get((rule.name, ident))
        if not self.every or (last is not None and now - last < self.every):
            return
        if len(self._last) >= self.MAX_REMEMBERED:
            self._last.clear()
        self._last[(rule.name, ident)] = now
        details = {"rule": rule.name, "limit": rule.limit, "window": rule.window}
        user = uuid.UUID(ident) if rule.scope == "user" else None  # a per-user cap's
        try:
            async with self.pool.connection() as conn:
                subject = f"{rule.scope}:{ident}"
                await record_async(conn, "limit.hit", user, subject, details, actor="api")
        except Exception:
            log.warning("audit of a rate-limit refusal failed", exc_info=True)


def _check_event(event: str) -> None:
    if event not in EVENTS:
        raise ValueError(f"unknown audit event {event!r}; add it to security.audit.EVENTS")


def record_hash(r: Record) -> str:
    """The hash a record must carry (the same formula as appliance_audit_hash)."""

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    at = r.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fields = [r.event, str(r.user_id) if r.user_id else "", r.actor, r.subject, r.details]
    text = "|".join([str(r.seq), r.prev, at, *(digest(f) for f in fields)])
    return digest(text)


def seal(conn: DictConnection) -> int:
    """Chain every committed pending record onto the log, oldest append first, in batches
    of ``SEAL_BATCH`` each in a transaction of its own (on an autocommit connection; within
    the caller's, if one is open); how many."""
    sealed = 0
    while True:
        with conn.transaction():
            batch = audit_rows.seal(conn, SEAL_BATCH)
        sealed += batch
        if batch < SEAL_BATCH:
            return sealed


def anchor_signature(key: bytes, seq: int, hash_: str) -> str:
    mac_key = hmac.new(key, ANCHOR_PURPOSE, hashlib.sha256).digest()
    return hmac.new(mac_key, f"{seq}:{hash_}".encode(), hashlib.sha256).hexdigest()


def verify(conn: DictConnection, key: bytes, noted: tuple[int, str] | None = None) -> Report:
    """Walk the whole chain (in one transaction: a consistent snapshot). ``noted``: a
    (sequence number, hash) an operator wrote down elsewhere from an earlier verify: a chain
    rewritten since, every hash recomputed, no longer holds it. What is pending is sealed
    first."""
    seal(conn)
    with conn.transaction():
        report = Report()
        seq, prev = _start(conn, key, report)
        seen: str | None = None
        for row in audit_rows.chain(conn, report.anchored or 0):
            r = msgspec.convert(row, Record)
            _check_link(r, seq, prev, report)
            seq, prev = r.seq + 1, r.hash
            report.records += 1
            report.first = report.first or r.seq
            report.last, report.head = r.seq, r.hash
            if noted is not None and r.seq == noted[0]:
                seen = r.hash
        _check_head(audit_rows.head(conn), report, prev)
        if noted is not None:
            _check_noted(conn, noted, seen, report)
    return report


def _check_noted(
    conn: DictConnection, noted: tuple[int, str], seen: str | None, report: Report
) -> None:
    seq, hash_ = noted
    if seen is None and report.anchored is not None and seq == report.anchored:
        anchor = audit_rows.last_anchor(conn)
        seen = None if anchor is None else str(anchor["hash"])
    if seen is None:
        where = "was pruned" if seq <= (report.anchored or 0) else "is not in the log"
        report.problems.append(f"the noted record {seq} {where}: it cannot be compared")
    elif not hmac.compare_digest(seen, hash_):
        report.problems.append(
            f"record {seq} is not the one noted (its hash differs): the log was rewritten"
        )


def _start(conn: DictConnection, key: bytes, report: Report) -> tuple[int, str]:
    """Where the chain must start: after retention's last anchor, else at record 1."""
    anchor = audit_rows.last_anchor(conn)
    if anchor is None:
        return 1, GENESIS
    report.anchored = int(anchor["seq"])
    expected = anchor_signature(key, anchor["seq"], anchor["hash"])
    if not hmac.compare_digest(expected, anchor["signature"]):
        report.problems.append(
            f"the retention anchor at record {anchor['seq']} is not signed with this"
            " appliance's secret key (forged, or the key changed)"
        )
    return int(anchor["seq"]) + 1, str(anchor["hash"])


def _check_link(r: Record, seq: int, prev: str, report: Report) -> None:
    if r.seq > seq:
        gap = f"{seq}" if r.seq == seq + 1 else f"{seq} to {r.seq - 1}"
        report.problems.append(f"record {gap} missing (deleted)")
    if record_hash(r) != r.hash:
        report.problems.append(f"record {r.seq} does not match its hash (edited or moved)")
    elif r.prev != prev:
        report.problems.append(
            f"record {r.seq} does not follow the record before it (reordered, or a record"
            " before it was edited or deleted)"
        )


def _check_head(head: Mapping[str, Any], report: Report, last_hash: str) -> None:
    """The chain's head names the last record appended: a record deleted from the end
    shows here."""
    last = report.last or report.anchored or 0
    if int(head["seq"]) != last or head["hash"] != last_hash:
        report.problems.append(
            f"the chain's head is record {head['seq']} but the log ends at record {last}"
            " (records at its end deleted, or the head changed)"
        )


def show(
    conn: DictConnection,
    email: str | None = None,
    since: datetime | None = None,
    event: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest records first, of one user (by email, or by id for an erased one), since
    a time, of one event or event family. What is pending is sealed first."""
    seal(conn)
    user = None
    if email:
        user = _user_ref(conn, email)
    return audit_rows.show(conn, user, since, event, limit)


def _user_ref(conn: DictConnection, who: str) -> uuid.UUID:
    try:
        return uuid.UUID(who)
    except ValueError:
        pass
    found = audit_rows.user_by_email(conn, who)
    if found is None:
        raise LookupError(f"no user {who} (an erased user is named by id)")
    return found  # type: ignore[no-any-return]


def prune(conn: DictConnection, key: bytes, retention_days: float, now: datetime) -> int:
    """Delete the records older than the retention, keeping a signed anchor of the last one
    deleted and recording the pruning; how many went (0 when retention is off). What is
    pending is sealed first."""
    if retention_days <= 0:
        return 0
    seal(conn)
    with conn.transaction():
        end = audit_rows.prune_end(conn, now - timedelta(days=retention_days))
        if end is None:
            return 0
        seq, hash_, records = int(end["seq"]), str(end["hash"]), int(end["records"])
        audit_rows.prune(conn, seq, hash_, records, anchor_signature(key, seq, hash_))
        details = {"through": seq, "records": records, "retention_days": retention_days}
        record(conn, "audit.pruned", None, f"audit:{seq}", details)
    return records
