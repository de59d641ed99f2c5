"""storage: MinIO from a configurable URL checked against its SHA-256, run as its own user
under a hardened unit, with the app's bucket, its own user and policy, and server-side
encryption of every object (SSE-S3 with a key from the operator's secrets), the backup bucket
with pgBackRest's own user, and versioning on both buckets (old versions kept
``storage_noncurrent_days``) so a deleted or overwritten object can be brought back. Its metrics
answer only Prometheus's bearer token (fleet/minio.py).

Fleets may instead point the app at any S3 service (group data ``s3_external``); then no host
holds this role. The lab uses the test harness's Swift+s3api that way: MinIO cannot be
downloaded here, so this role is checked for its files only (tests/deploy/unit).
"""

from __future__ import annotations

from pyinfra.operations import files, server

from fleet import minio
from fleet.model import Fleet, HostSpec
from fleet.render import render
from roles.common import once, put, put_text, restart_if

MINIO_BIN = "/usr/local/bin/minio"
MC_BIN = "/usr/local/bin/mc"
DATA_DIR = "/var/lib/minio"


def setup_context(fleet: Fleet, me: HostSpec) -> dict[str, object]:
    return {
        "mc_bin": MC_BIN,
        "listen_ip": me.ip,
        "root_password": fleet.secrets["minio_root_password"],
        "app_password": fleet.secrets["minio_app_password"],
        "bucket": fleet.get("s3_bucket"),
        "backup_bucket": fleet.get("backup_bucket"),
        "backup_password": fleet.secrets["minio_backup_password"],
        "noncurrent_days": int(fleet.get("storage_noncurrent_days")),
        "metrics_user": minio.METRICS_USER,
        "metrics_policy": minio.METRICS_POLICY,
        "metrics_password": fleet.secrets["minio_prometheus_password"],
    }


def apply(fleet: Fleet, me: HostSpec) -> None:
    server.group(name="MinIO group", group="minio-user", system=True)
    server.user(
        name="MinIO user",
        user="minio-user",
        group="minio-user",
        system=True,
        home=DATA_DIR,
        shell="/usr/sbin/nologin",
    )
    files.directory(
        name="MinIO data", path=DATA_DIR, user="minio-user", group="minio-user", mode="750"
    )
    binary = files.download(
        name="MinIO server binary (checked)",
        src=fleet.get("minio_url", me),
        dest=MINIO_BIN,
        sha256sum=fleet.get("minio_sha256", me),
        mode="755",
    )
    files.download(
        name="MinIO client binary (checked)",
        src=fleet.get("mc_url", me),
        dest=MC_BIN,
        sha256sum=fleet.get("mc_sha256", me) or None,
        mode="755",
    )
    env = put(
        "pyinfra/templates/minio.default.j2",
        "/etc/default/minio",
        mode="640",
        group="minio-user",
        data_dir=DATA_DIR,
        listen_ip=me.ip,
        root_password=fleet.secrets["minio_root_password"],
        kms_key=fleet.secrets["minio_kms_key"],
    )
    unit = put(
        "systemd/minio.service.j2",
        "/etc/systemd/system/minio.service",
        minio_bin=MINIO_BIN,
        data_dir=DATA_DIR,
        memory_max="2G",
    )
    restart_if("minio", binary, env, unit)
    setup = render("pyinfra/templates/minio-setup.sh.j2", **setup_context(fleet, me))
    put_text(setup, "/etc/appliance/minio-setup.sh", mode="700")
    once("minio-setup", setup, "/etc/appliance/minio-setup.sh")
