"""Defaults of every fleet setting; an inventory's group data (``group_data/all.py``, or a
group's own file) overrides any of them. Units are in the names or the comments."""

from __future__ import annotations

from typing import Any

from appliance.engines import QUEUE_CLASSES, QueueClass
from appliance.engines.enabled import enabled_engines
from appliance.settings import Settings

MiB = 1024 * 1024
PER_USER_CAPS = (
    "max_jobs_in_flight_per_user",
    "max_sync_waits_per_user",
    "max_stored_bytes_per_user",
)


def _engine_tables() -> tuple[dict[str, list[str]], dict[str, QueueClass]]:
    """The engine descriptors' families: each with its engines' Debian packages (in the order
    the engines list them) and the heaviest of their queue classes."""
    packages: dict[str, list[str]] = {}
    queues: dict[str, QueueClass] = {}
    for engine in enabled_engines():
        d = engine.descriptor
        listed = packages.setdefault(d.family, [])
        listed += [p for p in d.packages if p not in listed]
        queues[d.family] = max(queues.get(d.family, d.queue), d.queue, key=QUEUE_CLASSES.index)
    return packages, queues


# Debian packages each engine family needs on a worker host, and the queue class whose worker
# the family needs: both from the engines' descriptors (appliance/engines), their one home.
ENGINE_PACKAGES, FAMILY_QUEUE = _engine_tables()

DEFAULTS: dict[str, Any] = {
    # Name of the fleet: keys the operator's secrets file (one fleet, one file).
    "fleet_name": "appliance",
    # Address every other host reaches this one at (host data; defaults to the SSH host).
    "private_ip": None,
    # Networks (CIDRs) SSH answers on every host: where you administer from (office, VPN,
    # bastion). Empty: the address this deploy's SSH connection comes from, as each host sees
    # it (so the run that closes SSH can never lock its own operator out); set it when you
    # administer from anywhere else. Nothing else is open to these networks: Prometheus and
    # Grafana listen on loopback (ssh -L), the other internal ports answer only the fleet.
    "admin_networks": [],
    "firewall": True,
    "unattended_upgrades": True,
    # The API
    "api_port": 8080,
    "api_workers": 2,
    # The API's /metrics listener (one per api host, on its private address; Prometheus
    # scrapes it there: the API's own port answers /metrics with 404).
    "api_metrics_port": Settings().api_metrics_port,
    "api_memory_max": "1G",
    # Base URL clients use; empty: https://<first lb host's SSH name>.
    "public_url": "",
    "max_upload_bytes": 100 * MiB,
    # The app's own limits, counted in Redis across api hosts (0: none); nginx's per-address
    # request limit below comes first.
    "requests_per_minute_per_address": 600,
    "requests_per_minute_per_key": 1200,
    "conversions_per_minute_per_address": 10,
    # Per-user caps (0: none), the app's defaults: jobs and single tasks in flight, blocking
    # (sync) requests open on the fleet, bytes stored.
    **{name: getattr(Settings(), name) for name in PER_USER_CAPS},
    "sync_timeout_seconds": 120,
    "log_level": "INFO",
    # Workers: engine families installed on worker hosts, and per queue class its processes,
    # threads, metrics port (CONTRACTS.md) and memory limit. Queues whose families are all
    # absent get no worker instance.
    "engine_families": list(ENGINE_PACKAGES),
    "worker_queues": {
        "light": {"processes": 2, "threads": 2, "metrics_port": 9181, "memory_max": "2G"},
        "office": {"processes": 1, "threads": 1, "metrics_port": 9182, "memory_max": "3G"},
        "media": {"processes": 1, "threads": 1, "metrics_port": 9183, "memory_max": "3G"},
    },
    # Seconds a worker gets to finish its running tasks on stop before systemd kills it; an
    # unfinished task's lease lapses and the reconciler runs it again on another worker.
    "worker_stop_seconds": 150,
    # Processes and threads one worker instance may run, its engine helpers' included (the
    # unit's TasksMax, a cgroup pids limit), behind each helper's own limit
    # (APPLIANCE_ENGINE_MAX_PROCESSES). A helper peaks at ~15 tasks with LibreOffice, ~55 with
    # calibre, and libvips adds a thread per core: 8192 leaves room for 64-core hosts, and is
    # far below the host's pid limit (systemd's own default is 15% of it).
    "worker_tasks_max": 8192,
    "engine_timeout_seconds": 120,
    # bwrap (sandboxed engines) or off. Keep bwrap in production.
    "sandbox": "bwrap",
    # Virus scanning: clamd (on every worker host, signatures kept current by freshclam) or
    # off. Imports wait while clamd is down or loading (fail closed).
    "virus_scan": "clamd",
    # Where freshclam fetches signatures (a private mirror's host, if the fleet has no way out).
    "clamav_mirror": "database.clamav.net",
    # Audit records are kept this long (days; 0: forever).
    "audit_retention_days": 365,
    # Jobs and their files are deleted this long after creation (hours), and an
    # Idempotency-Key answers its repeats this long.
    **{
        name: getattr(Settings(), name) for name in ("job_retention_hours", "idempotency_key_hours")
    },
    # Database
    "postgres_version": 15,
    # pg_auto_failover's monitor (a small Postgres of its own, on the monitoring host unless
    # a host has `db_monitor: True`): its port, open to the db hosts only.
    "db_monitor_port": 5431,
    "db_name": "appliance",
    "db_user": "appliance",
    "db_pool_size": 10,
    # Backups (pgBackRest, roles/backup.py): continuous WAL archiving plus full and
    # incremental backups on systemd timers (calendar expressions, systemd.time(7), in the
    # hosts' time zone), taken by whichever db host is the primary, into this bucket of the
    # fleet's S3 store (MinIO's, with its own user; or s3_external's endpoint and keys),
    # encrypted with the secret `backup_cipher_pass`. backup_s3 sends them to another S3
    # service instead: {"endpoint": "host:port", "access_key", "secret_key", "bucket",
    # "region", "secure"} (a second site is better than the store the data lives in).
    "backup_bucket": "appliance-backups",
    "backup_s3": None,
    "backup_full_schedule": "Sun *-*-* 01:00:00",
    "backup_incr_schedule": "Mon..Sat *-*-* 01:00:00",
    # Full backups kept (a count); older ones go with their incrementals and WAL, so the
    # oldest point a restore can reach is the oldest kept full backup's start.
    "backup_retention_full": 4,
    # Past this age (hours) of the newest good backup, ApplianceBackupStale fires.
    "backup_max_age_hours": 36,
    # Processes a backup or restore uses to compress, encrypt and transfer files.
    "backup_process_max": 2,
    # Local TLS relay port on db hosts: pgBackRest speaks S3 over TLS only, MinIO (and the
    # lab's store) answer plain HTTP on the private network.
    "backup_tls_relay_port": 9444,
    # Object storage keeps every overwritten or deleted object's old version this many days
    # (MinIO versioning plus a lifecycle rule; 0: forever).
    "storage_noncurrent_days": 30,
    # Redis
    "redis_maxmemory": "512mb",
    # Storage: MinIO on the storage group, or an external S3 service when s3_external is set
    # ({"endpoint": "host:port", "access_key", "secret_key", "bucket", "region", "secure",
    # "public_url"}; the keys may also come from the secrets file / environment).
    "s3_external": None,
    "s3_bucket": "appliance",
    "s3_public_url": "",
    "minio_url": (
        "https://dl.min.io/server/minio/release/linux-amd64/archive/"
        "minio.RELEASE.2025-09-07T16-13-09Z"
    ),
    "minio_sha256": "",  # required when a storage host exists: the deploy checks it
    "mc_url": (
        "https://dl.min.io/client/mc/release/linux-amd64/archive/mc.RELEASE.2025-08-13T08-35-41Z"
    ),
    "mc_sha256": "",
    # lb: TLS from the operator (paths on the operator's machine) or self-signed on first
    # deploy; outer rate limit per client address.
    "tls_cert_file": "",
    "tls_key_file": "",
    "rate_limit_per_second": 50,
    "rate_limit_burst": 200,
    # Longest the lb waits for an api host's answer to an ordinary API call (s; waits, sync
    # calls and uploads have their own). A host that died with a request in flight costs
    # that request this long; an idempotent one (GET, DELETE) is then retried on another.
    "api_read_timeout_seconds": 15,
    # Monitoring
    "prometheus_retention": "15d",
    # Service-level objectives over the defaults of appliance/metrics/slo.py (availability
    # 0.999, latency 0.95, jobs 0.999: the share of good events); the burn-rate alerts
    # follow them. E.g. {"latency": 0.99}.
    "slo_objectives": {},
    # Where the alerts' runbook_url points (each adds #<alert name>): the operator's copy of
    # monitoring/RUNBOOK.md, e.g. on their git host; the default is the repository path.
    "runbook_url": "monitoring/RUNBOOK.md",
    # Every alert's `for` (how long its condition must hold before it fires) times this.
    # Production keeps 1; a test fleet whose drills hold each fault for seconds, not
    # minutes, may shorten them all (the lab runs 0.25: 2 minutes become 30 s).
    "alert_for_scale": 1.0,
    "grafana": True,
    "grafana_skip_reason": "",
}


def engine_packages(families: list[str]) -> list[str]:
    unknown = sorted(set(families) - set(ENGINE_PACKAGES))
    if unknown:
        raise ValueError(f"unknown engine families {unknown}; known: {sorted(ENGINE_PACKAGES)}")
    return sorted({pkg for family in families for pkg in ENGINE_PACKAGES[family]})


def active_queues(families: list[str]) -> list[str]:
    """Queue classes a worker host runs: those at least one installed family feeds."""
    wanted = {FAMILY_QUEUE[f] for f in families}
    return [q for q in QUEUE_CLASSES if q in wanted]
