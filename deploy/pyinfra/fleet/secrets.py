"""Fleet secrets: generated on the first deploy and kept on the operator's machine.

The file is ``$APPLIANCE_DEPLOY_SECRETS_DIR/<fleet>.json`` (default
``~/.config/appliance-deploy``), mode 0600 in a 0700 directory; it never enters the repository.
Any secret may come from the environment instead: ``APPLIANCE_DEPLOY_<NAME>`` (e.g.
``APPLIANCE_DEPLOY_DB_PASSWORD``), which wins over the file. On hosts, secrets only land in
files readable by root and the service's own group (mode 0640 or tighter).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

# name -> what it protects. 32 random bytes each, URL-safe (they go into URLs and env files).
NAMES = {
    "db_password": "the app's PostgreSQL role",
    "replication_password": "the streaming-replication role (pgautofailover_replicator)",
    "autoctl_password": "pg_auto_failover's roles: autoctl_node (keepers -> monitor) and"
    " pgautofailover_monitor (the monitor's health checks of the db hosts)",
    # Redis: one ACL user per role (fleet/redis_acl.py); the default user is off.
    "redis_api_password": "Redis user `api` (the API hosts)",
    "redis_worker_password": "Redis user `worker` (the worker hosts)",
    "redis_exporter_password": "Redis user `exporter` (the redis exporter: statistics only)",
    "redis_admin_password": "Redis user `admin` (every command; for operators, on no host)",
    "secret_key": "the app's URL-signing key (the same on every api host)",
    "master_keys": "the master keys wrapping users' data keys (`id:base64url`, comma-separated,"
    " the last current; the same on every api and worker host)",
    "minio_root_password": "MinIO's root user",
    "minio_app_password": "MinIO's user for the app",
    "minio_prometheus_password": "MinIO's user `prometheus` (metrics only; signs its token)",
    "minio_kms_key": "MinIO's server-side encryption key (base64, 32 bytes)",
    "minio_backup_password": "MinIO's user `pgbackrest` (the backup bucket only)",
    "backup_cipher_pass": "the backup repository's encryption passphrase (pgBackRest); without"
    " it no backup can be restored: keep a copy of this file away from the fleet",
    "grafana_admin_password": "Grafana's admin user",
    "s3_access_key": "an external S3 endpoint's access key (when not in group data)",
    "s3_secret_key": "an external S3 endpoint's secret key (when not in group data)",
}
ENV_PREFIX = "APPLIANCE_DEPLOY_"


def secrets_dir() -> Path:
    configured = os.environ.get("APPLIANCE_DEPLOY_SECRETS_DIR")
    return Path(configured or "~/.config/appliance-deploy").expanduser()


def _generate(name: str) -> str:
    if name == "master_keys":  # appliance/security/envelope.py's format
        from datetime import UTC, datetime

        ident = f"mk-{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
        return f"{ident}:{secrets.token_urlsafe(32)}"
    if name == "minio_kms_key":
        import base64

        return base64.b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_urlsafe(32)


def load_or_create(fleet_name: str, directory: Path | None = None) -> dict[str, str]:
    """The fleet's secrets: read, completed with new ones for names not yet there, and
    written back (atomically, 0600) when something was added."""
    directory = directory or secrets_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / f"{fleet_name}.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [n for n in NAMES if n not in stored]
    for name in missing:
        stored[name] = _generate(name)
    if missing or (path.stat().st_mode & 0o077):
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(stored, out, indent=2, sort_keys=True)
        os.replace(tmp, path)
    values = dict(stored)
    for name in NAMES:
        from_env = os.environ.get(ENV_PREFIX + name.upper())
        if from_env:
            values[name] = from_env
    return values
