"""backup (every db host): pgBackRest with its repository in a bucket of the fleet's S3
store (fleet.backup_s3), encrypted with the secret ``backup_cipher_pass``.

- WAL is archived continuously (postgresql.conf: archive_command) by whichever db host is
  the primary; standbys read the archive when streaming lacks a segment (restore_command).
- Full and incremental backups run on systemd timers on every db host; the run on a standby
  succeeds doing nothing, so a failover (pg_auto_failover, roles/db.py) moves the
  backups with the primary and nothing here names the primary at run time.
- pgBackRest speaks S3 over TLS only: for a plain-HTTP store (MinIO on the private network,
  the lab's) a loopback TLS relay (stunnel) with a certificate made on the host sits in front.
- Metrics for the node exporter's textfile collector (fleet/backup_tool.py), refreshed every
  5 minutes and after each backup; ApplianceBackupStale and friends alert on them.

Order (deploy.py): configure() before PostgreSQL (re)starts with archiving on (db.apply),
activate() once the data services (MinIO's bucket) are ready.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyinfra import host
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server

from fleet.model import Fleet, HostSpec
from fleet.render import render
from roles.common import once, put, put_text, restart_if

STANZA = "appliance"
# WAL is closed and archived at least this often when writes are few (the RPO bound).
ARCHIVE_TIMEOUT = "60s"
CONF = "/etc/pgbackrest/pgbackrest.conf"
TOOL = "/usr/local/lib/appliance/backup_tool.py"
TOOL_SOURCE = Path(__file__).resolve().parents[1] / "fleet" / "backup_tool.py"
BACKUP_SCRIPT = "/usr/local/sbin/appliance-backup"
SETUP_SCRIPT = "/etc/appliance/backup-setup.sh"
S3_CONFIG = "/etc/appliance/backup-s3.json"
# Beside pgBackRest's config, readable by postgres and stunnel4 (/etc/appliance is 0750 for
# the app's group on hosts that also run the app); not in /etc/stunnel, whose every *.conf
# Debian's stunnel4 init script would start a second time.
RELAY_CONF = "/etc/pgbackrest/s3-relay.conf"
RELAY_CERT = "/etc/pgbackrest/s3-relay.crt"
RELAY_KEY = "/etc/pgbackrest/s3-relay.key"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
TYPES = ("full", "incr")
PACKAGES = ["pgbackrest", "python3"]


def relayed(fleet: Fleet) -> bool:
    """Whether pgBackRest needs the TLS relay (the store answers plain HTTP)."""
    return not fleet.backup_s3()["secure"]


def _host_port(endpoint: str, secure: bool) -> tuple[str, int]:
    host_part, _, port = endpoint.rpartition(":")
    if not host_part:
        return endpoint, 443 if secure else 80
    return host_part, int(port)


def conf_context(fleet: Fleet, data_dir: str) -> dict[str, object]:
    s3 = fleet.backup_s3()
    s3_host, s3_port = _host_port(s3["endpoint"], s3["secure"])
    return {
        "s3": s3,
        "s3_host": s3_host,
        "s3_port": s3_port,
        "relay_port": fleet.get("backup_tls_relay_port") if relayed(fleet) else 0,
        "relay_cert": RELAY_CERT,
        "fleet_name": fleet.get("fleet_name"),
        "retention_full": int(fleet.get("backup_retention_full")),
        "cipher_pass": fleet.secrets["backup_cipher_pass"],
        "process_max": int(fleet.get("backup_process_max")),
        "stanza": STANZA,
        "data": data_dir,
    }


def postgres_context() -> dict[str, object]:
    """What postgresql.conf.j2 needs for archiving."""
    return {"stanza": STANZA, "archive_timeout": ARCHIVE_TIMEOUT}


def s3_config(fleet: Fleet) -> str:
    """The bucket step's input (backup_tool.py bucket): the backup bucket, and the app's
    bucket on an external store, both asked to keep old versions and to delete them
    ``storage_noncurrent_days`` later (MinIO's are set by the storage role)."""
    also = []
    if fleet.get("s3_external") and not fleet.role("storage"):
        app = fleet.s3()
        also.append({k: app[k] for k in ("endpoint", "access_key", "secret_key", "region",
                                          "secure", "bucket")})  # fmt: skip
    days = int(fleet.get("storage_noncurrent_days"))
    config = {"s3": fleet.backup_s3(), "also_versioned": also, "noncurrent_days": days}
    return json.dumps(config, indent=2) + "\n"


def unit_context(fleet: Fleet, pg_service: str) -> dict[str, object]:
    return {
        "relay": relayed(fleet),
        "pg_service": pg_service,
        "backup_script": BACKUP_SCRIPT,
        "tool": TOOL,
        "max_age_hours": fleet.get("backup_max_age_hours"),
        "textfile": f"{TEXTFILE_DIR}/pgbackrest.prom",
        "textfile_dir": TEXTFILE_DIR,
        "conf": RELAY_CONF,
    }


def configure(fleet: Fleet, data_dir: str) -> None:
    """Packages, pgBackRest's configuration, the relay and the scripts: everything
    archive_command needs before PostgreSQL starts archiving."""
    apt.packages(name="pgBackRest", packages=PACKAGES, no_recommends=True)
    files.directory(name="pgBackRest config dir", path="/etc/pgbackrest", mode="755")
    put("pyinfra/templates/pgbackrest.conf.j2", CONF, mode="640", group="postgres",
        **conf_context(fleet, data_dir))  # fmt: skip
    files.directory(name="Backup tool dir", path=str(Path(TOOL).parent), mode="755")
    put_text(TOOL_SOURCE.read_text(), TOOL, mode="755")
    put("pyinfra/templates/appliance-backup.sh.j2", BACKUP_SCRIPT, mode="755", stanza=STANZA)
    if relayed(fleet):
        _relay(fleet)


def relay_context(fleet: Fleet) -> dict[str, object]:
    return {
        "relay_port": fleet.get("backup_tls_relay_port"),
        "s3_endpoint": fleet.backup_s3()["endpoint"],
        "relay_cert": RELAY_CERT,
        "relay_key": RELAY_KEY,
    }


def relay_cert_command(cert: str, key: str) -> str:
    """A self-signed certificate for 127.0.0.1 (the name pgBackRest checks it against; it
    trusts exactly this certificate: repo1-storage-ca-file)."""
    return (
        "openssl req -x509 -newkey rsa:2048 -nodes -days 36500 -subj /CN=127.0.0.1"
        f" -keyout {key} -out {cert}"
    )


def _relay(fleet: Fleet) -> None:
    apt.packages(name="stunnel (TLS relay to S3)", packages=["stunnel4"], no_recommends=True)
    if not host.get_fact(File, path=RELAY_CERT):
        server.shell(
            name="TLS key and certificate of the S3 relay (made on this host, once)",
            commands=[
                relay_cert_command(RELAY_CERT, RELAY_KEY),
                f"chown root:stunnel4 {RELAY_KEY} && chmod 640 {RELAY_KEY}"
                f" && chmod 644 {RELAY_CERT}",
            ],
        )
    conf = put("pyinfra/templates/backup-tls.conf.j2", RELAY_CONF, **relay_context(fleet))
    unit = put("systemd/appliance-backup-tls.service.j2",
               "/etc/systemd/system/appliance-backup-tls.service", conf=RELAY_CONF)  # fmt: skip
    restart_if("appliance-backup-tls", conf, unit)


def activate(fleet: Fleet, me: HostSpec, pg_service: str) -> None:
    """Units and timers on every db host; on the primary of the moment the bucket, the
    stanza and a first full backup (once per configuration)."""
    ctx = unit_context(fleet, pg_service)
    units: list[OperationMeta] = [
        put(f"systemd/{unit}.j2", f"/etc/systemd/system/{unit}", **ctx)
        for unit in ("appliance-backup@.service", "appliance-backup-metrics.service")
    ]
    timers = {
        f"appliance-backup-{kind}": put(
            "systemd/appliance-backup.timer.j2",
            f"/etc/systemd/system/appliance-backup-{kind}.timer",
            type=kind,
            schedule=fleet.get(f"backup_{kind}_schedule", me),
        )
        for kind in TYPES
    }
    timers["appliance-backup-metrics"] = put(
        "systemd/appliance-backup-metrics.timer.j2",
        "/etc/systemd/system/appliance-backup-metrics.timer",
    )
    files.directory(name="Textfile collector dir", path=TEXTFILE_DIR, mode="755")
    # On every db host: the script does its work on whichever is the primary now.
    _setup_repository(fleet, units)
    for name, timer in timers.items():
        restart_if(f"{name}.timer", timer, *units)


def _setup_repository(fleet: Fleet, units: list[OperationMeta]) -> None:
    config = s3_config(fleet)
    put_text(config, S3_CONFIG, mode="600")
    setup = render("pyinfra/templates/backup-setup.sh.j2", tool=TOOL, s3_config=S3_CONFIG,
                   stanza=STANZA)  # fmt: skip
    put_text(setup, SETUP_SCRIPT, mode="700")
    server.shell(
        name="systemd knows the backup units",
        commands=["systemctl daemon-reload"],
        _if=lambda: any(u.did_change() for u in units),
    )
    # Rerun when the repository's configuration changes (the rendered pgbackrest.conf).
    repo = render("pyinfra/templates/pgbackrest.conf.j2", **conf_context(fleet, ""))
    once("backup-setup", setup + config + repo, SETUP_SCRIPT)
