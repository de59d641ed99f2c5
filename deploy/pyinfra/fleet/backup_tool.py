"""The db hosts' backup helper, stdlib only (Debian's python3): roles/backup.py installs this
file as /usr/local/lib/appliance/backup_tool.py. Two commands:

    backup_tool.py bucket /etc/appliance/backup-s3.json
        the backup bucket (and the app's, on an external store) exists and is asked to keep
        old object versions, and to delete them ``noncurrent_days`` after they were replaced
        or deleted (a store that cannot do either, or a bucket with lifecycle rules of its own,
        says so: a warning, not an error);
    backup_tool.py metrics --max-age-hours H --out FILE
        the node exporter's textfile: what ``pgbackrest info`` says of the repository (the
        newest good backup of each type, its duration and size) and, on the primary,
        pg_stat_archiver (WAL archiving), written atomically.

pgBackRest itself makes no bucket and knows nothing of versioning, and the hosts have no S3
client, so S3 requests are signed here (AWS Signature Version 4, path-style addressing).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

STANZA = "appliance"
VERSIONING = (
    b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Status>Enabled</Status></VersioningConfiguration>"
)
BACKUP_TYPES = ("full", "diff", "incr")
# The lifecycle rule that deletes old versions; MinIO's setup imports one of the same ID
# (minio-setup.sh.j2), so a MinIO bucket's rule is recognised as the fleet's own.
RULE_ID = "noncurrent-versions"


def lifecycle(days: int) -> bytes:
    return (
        '<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule>'
        f"<ID>{RULE_ID}</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status>"
        f"<NoncurrentVersionExpiration><NoncurrentDays>{days}</NoncurrentDays>"
        "</NoncurrentVersionExpiration></Rule></LifecycleConfiguration>"
    ).encode()


# -- S3 -------------------------------------------------------------------------------------
def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signed_headers(
    s3: dict[str, Any],
    method: str,
    path: str,
    query: str,
    body: bytes,
    now: datetime,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The headers of an S3 request signed with Signature Version 4 (``query`` is already
    canonical: ``versioning=``); ``extra`` headers (lower-case names) are signed too."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": s3["endpoint"], "x-amz-content-sha256": payload, "x-amz-date": stamp}
    headers.update(extra or {})
    names = ";".join(sorted(headers))
    canonical = "\n".join(
        [method, path, query, *(f"{k}:{headers[k]}" for k in sorted(headers)), "", names, payload]
    )
    scope = f"{stamp[:8]}/{s3['region']}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + s3["secret_key"]).encode()
    for part in (stamp[:8], s3["region"], "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={s3['access_key']}/{scope},"
        f" SignedHeaders={names}, Signature={signature}"
    )
    return headers


def s3_request(
    s3: dict[str, Any], method: str, path: str, query: str = "", body: bytes = b""
) -> tuple[int, bytes]:
    kind = http.client.HTTPSConnection if s3.get("secure") else http.client.HTTPConnection
    conn = kind(s3["endpoint"], timeout=30)
    # S3 wants a body's MD5 on some requests (a lifecycle configuration's among them)
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    extra = {"content-md5": base64.b64encode(digest).decode()} if body else {}
    try:
        headers = signed_headers(s3, method, path, query, body, datetime.now(UTC), extra)
        conn.request(method, path + (f"?{query.rstrip('=')}" if query else ""), body, headers)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def ensure_bucket(s3: dict[str, Any], bucket: str) -> str:
    status, _ = s3_request(s3, "HEAD", f"/{bucket}")
    if status == 200:
        return "exists"
    body = b""
    if s3["region"] != "us-east-1":  # AWS wants the region named outside its default one
        body = (
            "<CreateBucketConfiguration><LocationConstraint>"
            f"{s3['region']}</LocationConstraint></CreateBucketConfiguration>"
        ).encode()
    status, reply = s3_request(s3, "PUT", f"/{bucket}", body=body)
    if status != 200:
        raise RuntimeError(f"cannot create bucket {bucket}: HTTP {status} {reply[:300]!r}")
    return "created"


def keep_versions(s3: dict[str, Any], bucket: str) -> bool:
    """Ask ``bucket`` to keep old versions; False when the store cannot (NotImplemented)."""
    status, reply = s3_request(s3, "PUT", f"/{bucket}", "versioning=", VERSIONING)
    if status == 200:
        return True
    if status == 501 or b"NotImplemented" in reply:
        return False
    raise RuntimeError(f"versioning of {bucket}: HTTP {status} {reply[:300]!r}")


def expire_old_versions(s3: dict[str, Any], bucket: str, days: int) -> str:
    """Ask ``bucket`` to delete an object's old versions ``days`` after they stop being
    current, unless it has lifecycle rules of its own (setting ours would replace them):
    "set", "kept" (ours already), "theirs", or "unsupported" (the store keeps no rules).
    Our rule alone, with another number of days, is replaced."""
    status, reply = s3_request(s3, "GET", f"/{bucket}", "lifecycle=")
    if status == 200 and b"<LifecycleConfiguration" in reply:
        if f"<ID>{RULE_ID}</ID>".encode() not in reply or reply.count(b"<Rule>") != 1:
            return "theirs"
        if f"<NoncurrentDays>{days}</NoncurrentDays>".encode() in reply:
            return "kept"
    elif status != 404:  # a store without lifecycle rules answers otherwise (a listing, 501)
        return "unsupported"
    status, reply = s3_request(s3, "PUT", f"/{bucket}", "lifecycle=", lifecycle(days))
    if status != 200:
        return "unsupported"
    status, reply = s3_request(s3, "GET", f"/{bucket}", "lifecycle=")
    return "set" if status == 200 and f"<ID>{RULE_ID}</ID>".encode() in reply else "unsupported"


def cmd_bucket(config_path: str) -> int:
    with open(config_path) as f:
        config = json.load(f)
    days = int(config.get("noncurrent_days", 0))
    # The app's bucket too: on a first deploy the app has not yet started to make it.
    for target in [config["s3"], *config.get("also_versioned", [])]:
        bucket = target["bucket"]
        print(f"bucket {bucket}: {ensure_bucket(target, bucket)}")
        if not keep_versions(target, bucket):
            print(
                f"WARNING: bucket {bucket}: this S3 store keeps no object versions"
                " (versioning not implemented); protect it another way (monitoring/RUNBOOK.md)"
            )
            continue
        print(f"bucket {bucket}: versioning enabled")
        if not days:
            print(f"bucket {bucket}: old versions kept forever (storage_noncurrent_days 0)")
            continue
        done = expire_old_versions(target, bucket, days)
        if done in ("set", "kept"):
            print(f"bucket {bucket}: old versions deleted after {days} days")
        elif done == "theirs":
            print(
                f"WARNING: bucket {bucket}: has lifecycle rules of its own, left as they are;"
                " let one delete old (noncurrent) versions, or they are kept forever"
            )
        else:
            print(
                f"WARNING: bucket {bucket}: this S3 store keeps no lifecycle rules (or"
                " refused ours), so old versions of deleted files are kept forever: set an"
                " expiry of noncurrent versions with the store's own tools"
            )
    return 0


# -- metrics --------------------------------------------------------------------------------
def _number(value: float) -> str:
    """Full precision: a unix time in seconds needs all ten digits."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _line(name: str, value: float, **labels: str) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}"


HELP = {
    "pgbackrest_repo_up": "1 when pgbackrest info read the stanza from the repository",
    "pgbackrest_backup_last_good_completion_seconds": "End of the newest good backup (unix s)",
    "pgbackrest_backup_last_duration_seconds": "How long the newest good backup took",
    "pgbackrest_backup_last_size_bytes": "Bytes the newest good backup stored in the repository",
    "pgbackrest_backups": "Backups in the repository",
    "pgbackrest_backup_max_age_seconds": "Age of the newest good backup that alerts (setting)",
    "pgbackrest_wal_last_archived_timestamp_seconds": "Last WAL segment archived (unix s)",
    "pgbackrest_wal_last_failed_timestamp_seconds": "Last WAL archiving failure (0: none)",
    "pgbackrest_metrics_updated_timestamp_seconds": "When this host last wrote these metrics",
}


def render_metrics(
    info: list[dict[str, Any]] | None,
    archiver: tuple[float, float] | None,
    max_age_seconds: float,
    now: float,
) -> str:
    """The textfile: ``info`` is ``pgbackrest --output=json info`` (None: it failed),
    ``archiver`` (last archived, last failed) as unix times from the primary (None: a
    standby, which archives nothing)."""
    stanza = next((s for s in info or [] if s.get("name") == STANZA), None)
    up = stanza is not None and stanza.get("status", {}).get("code") == 0
    values: dict[str, list[str]] = {name: [] for name in HELP}
    values["pgbackrest_repo_up"].append(_line("pgbackrest_repo_up", int(up)))
    values["pgbackrest_backup_max_age_seconds"].append(
        _line("pgbackrest_backup_max_age_seconds", max_age_seconds)
    )
    values["pgbackrest_metrics_updated_timestamp_seconds"].append(
        _line("pgbackrest_metrics_updated_timestamp_seconds", now)
    )
    if stanza is not None:
        backups = [b for b in stanza.get("backup", []) if not b.get("error")]
        values["pgbackrest_backups"].append(_line("pgbackrest_backups", len(backups)))
        for kind in BACKUP_TYPES:
            done = [b for b in backups if b["type"] == kind]
            if not done:
                continue
            last = max(done, key=lambda b: b["timestamp"]["stop"])
            stamp = last["timestamp"]
            repo = last.get("info", {}).get("repository", {})
            for name, value in (
                ("pgbackrest_backup_last_good_completion_seconds", stamp["stop"]),
                ("pgbackrest_backup_last_duration_seconds", stamp["stop"] - stamp["start"]),
                ("pgbackrest_backup_last_size_bytes", repo.get("delta", 0)),
            ):
                values[name].append(_line(name, value, type=kind))
    if archiver is not None:
        for name, value in zip(
            ("pgbackrest_wal_last_archived_timestamp_seconds",
             "pgbackrest_wal_last_failed_timestamp_seconds"),
            archiver,
            strict=True,
        ):  # fmt: skip
            values[name].append(_line(name, value))
    out = []
    for name, lines in values.items():
        if lines:
            out += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge", *lines]
    return "\n".join(out) + "\n"


def _pgbackrest_info() -> list[dict[str, Any]] | None:
    done = subprocess.run(
        ["pgbackrest", f"--stanza={STANZA}", "--log-level-file=off", "--output=json", "info"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        print(f"pgbackrest info failed: {done.stderr.strip()}", file=sys.stderr)
        return None
    return json.loads(done.stdout)


ARCHIVER_SQL = (
    "SELECT pg_is_in_recovery(),"
    " coalesce(extract(epoch FROM last_archived_time), 0),"
    " coalesce(extract(epoch FROM last_failed_time), 0) FROM pg_stat_archiver"
)


def _archiver() -> tuple[float, float] | None:
    done = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-XAt", "-F", " ", "-c", ARCHIVER_SQL],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    if done.returncode != 0:
        print(f"pg_stat_archiver: {done.stderr.strip()}", file=sys.stderr)
        return None
    standby, archived, failed = done.stdout.split()
    return None if standby == "t" else (float(archived), float(failed))


def cmd_metrics(max_age_hours: float, out: str) -> int:
    text = render_metrics(_pgbackrest_info(), _archiver(), max_age_hours * 3600, time.time())
    tmp = f"{out}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)  # the node exporter never reads half a file
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backup_tool.py")
    sub = parser.add_subparsers(dest="command", required=True)
    bucket = sub.add_parser("bucket")
    bucket.add_argument("config")
    metrics = sub.add_parser("metrics")
    metrics.add_argument("--max-age-hours", type=float, required=True)
    metrics.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "bucket":
        return cmd_bucket(args.config)
    return cmd_metrics(args.max_age_hours, args.out)


if __name__ == "__main__":
    sys.exit(main())
