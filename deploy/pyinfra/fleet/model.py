"""Who holds which role: the fleet's hosts, their private addresses, and what follows from
them (the app's connection URLs, the lb's upstream, Prometheus's targets, firewall sources)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fleet.defaults import DEFAULTS, active_queues
from fleet.redis_acl import user

ROLES = ("base", "db", "redis", "storage", "api", "worker", "lb", "monitoring")
# Internal TCP ports each role opens to the fleet's own addresses (nothing else reaches them).
ROLE_PORTS: dict[str, list[int]] = {
    "base": [9100],  # node exporter
    "db": [5432, 9187],
    "redis": [6379, 9121],
    "storage": [9000],
    "api": [],  # api_port and api_metrics_port, added from settings
    "worker": [],  # worker metrics ports, added from settings
    "lb": [9113],
    "monitoring": [],  # Prometheus and Grafana listen on loopback: operators use ssh -L
}
# Settings that were replaced: an inventory still setting one is refused, not ignored.
RENAMED = {
    "ssh_sources": "admin_networks (SSH only from there; empty: this deploy's address)",
    "admin_sources": "admin_networks (SSH only; Prometheus and Grafana are on loopback)",
}
PUBLIC_PORTS: dict[str, list[int]] = {"lb": [80, 443]}


class FleetError(ValueError):
    """The inventory does not describe a fleet the deploy can build."""


@dataclass(frozen=True)
class HostSpec:
    name: str
    groups: frozenset[str]
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def ip(self) -> str:
        return str(self.data.get("private_ip") or self.data.get("ssh_hostname") or self.name)

    def has(self, role: str) -> bool:
        return role in self.groups


@dataclass
class Fleet:
    hosts: list[HostSpec]
    secrets: dict[str, str] = field(default_factory=dict)

    # -- settings --------------------------------------------------------------------------
    def get(self, key: str, host: HostSpec | None = None) -> Any:
        """A setting: the host's own data (its groups' data included), else the fleet's
        (group data ``all``, the same on every host), else the default."""
        if key not in DEFAULTS:
            raise KeyError(f"unknown fleet setting {key!r}")
        for source in ([host] if host else []) + self.hosts[:1]:
            if key in source.data and source.data[key] is not None:
                return source.data[key]
        return DEFAULTS[key]

    # -- roles -----------------------------------------------------------------------------
    def role(self, role: str) -> list[HostSpec]:
        return [h for h in self.hosts if h.has(role)]

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise FleetError(f"no host {name!r} in the inventory")

    @property
    def db_primary(self) -> HostSpec:
        dbs = self.role("db")
        if not dbs:
            raise FleetError("the inventory has no db host")
        primaries = [h for h in dbs if h.data.get("db_primary")]
        if len(primaries) > 1:
            raise FleetError(f"more than one db_primary: {[h.name for h in primaries]}")
        return primaries[0] if primaries else dbs[0]

    @property
    def db_replicas(self) -> list[HostSpec]:
        return [h for h in self.role("db") if h != self.db_primary]

    @property
    def db_monitor(self) -> HostSpec:
        """Where pg_auto_failover's monitor runs: the host with ``db_monitor: True``, else
        the first monitoring host that holds no database, else the first host that holds
        none, else (a single-host fleet) the db primary. Off the db hosts, so that the
        death of one db host leaves the monitor and the other db host to decide."""
        chosen = [h for h in self.hosts if h.data.get("db_monitor")]
        if len(chosen) > 1:
            raise FleetError(f"more than one db_monitor: {[h.name for h in chosen]}")
        spare = [h for h in self.hosts if not h.has("db")]
        monitoring = [h for h in spare if h.has("monitoring")]
        return (chosen or monitoring or spare or [self.db_primary])[0]

    @property
    def monitor_uri(self) -> str:
        """The keepers' connection to the monitor; the password is in each db host's
        ~postgres/.pgpass (pgpass.j2), not in pg_autoctl's configuration."""
        where = f"{self.db_monitor.ip}:{self.get('db_monitor_port')}"
        return f"postgres://autoctl_node@{where}/pg_auto_failover?sslmode=require"

    def validate(self) -> None:
        """What every deploy needs; raised before any host is touched."""
        for role in ("db", "redis", "api", "worker", "lb"):
            if not self.role(role):
                raise FleetError(f"the inventory has no {role} host")
        if len(self.role("redis")) > 1:
            raise FleetError("one redis host only (Redis holds only rebuildable state)")
        if self.role("storage") and self.get("s3_external"):
            raise FleetError("choose MinIO (a storage host) or s3_external, not both")
        if not self.role("storage") and not self.get("s3_external"):
            raise FleetError("no storage host and no s3_external endpoint")
        if self.get("backup_bucket") == self.s3()["bucket"] and not self.get("backup_s3"):
            raise FleetError("backup_bucket must not be the app's bucket (s3_bucket)")
        if self.role("storage") and not self.get("minio_sha256"):
            raise FleetError("minio_sha256 must be set: the MinIO binary is checked against it")
        self._validate_admin_networks()
        ips = [h.ip for h in self.hosts]
        if len(set(ips)) != len(ips):
            raise FleetError(f"two hosts share a private address: {ips}")
        self.db_primary  # noqa: B018 - raises on a bad db_primary set-up
        self.db_monitor  # noqa: B018 - raises on a bad db_monitor set-up

    def _validate_admin_networks(self) -> None:
        for h in self.hosts:
            for old, new in RENAMED.items():
                if old in h.data:
                    raise FleetError(f"{h.name}: the setting {old!r} is now {new}")
            for net in self.get("admin_networks", h):
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError:
                    raise FleetError(f"admin_networks: {net!r} is no address or CIDR") from None

    # -- what follows from the roles -------------------------------------------------------
    def _db_url(self, hosts: list[HostSpec], attrs: str) -> str:
        user = self.get("db_user")
        password = quote(self.secrets["db_password"], safe="")
        where = ",".join(f"{h.ip}:5432" for h in hosts)
        return f"postgresql://{user}:{password}@{where}/{self.get('db_name')}?{attrs}"

    @property
    def database_url(self) -> str:
        """The primary, found among all db hosts: after a replica is promoted the app
        follows without a new deploy."""
        order = [self.db_primary, *self.db_replicas]
        return self._db_url(order, "target_session_attrs=read-write&connect_timeout=5")

    @property
    def database_read_url(self) -> str:
        """Status reads: a standby when one is up, else the primary."""
        if not self.db_replicas:
            return ""
        order = [*self.db_replicas, self.db_primary]
        return self._db_url(
            order, "target_session_attrs=prefer-standby&load_balance_hosts=random&connect_timeout=5"
        )

    def redis_url(self, role: str) -> str:
        """As the role's own ACL user (``api``, ``worker``: fleet/redis_acl.py)."""
        password = quote(self.secrets[user(role).secret], safe="")
        return f"redis://{role}:{password}@{self.role('redis')[0].ip}:6379/0"

    @property
    def public_url(self) -> str:
        configured = str(self.get("public_url")).rstrip("/")
        if configured:
            return configured
        lb = self.role("lb")[0]
        return f"https://{lb.data.get('ssh_hostname') or lb.name}"

    def s3(self) -> dict[str, Any]:
        """Endpoint, credentials and bucket the app uses."""
        external = self.get("s3_external")
        if external:
            return {
                "endpoint": external["endpoint"],
                "access_key": external.get("access_key") or self.secrets["s3_access_key"],
                "secret_key": external.get("secret_key") or self.secrets["s3_secret_key"],
                "bucket": external.get("bucket", self.get("s3_bucket")),
                "region": external.get("region", "us-east-1"),
                "secure": bool(external.get("secure", False)),
                "public_url": external.get("public_url", self.get("s3_public_url")),
            }
        return {
            "endpoint": f"{self.role('storage')[0].ip}:9000",
            "access_key": "appliance",
            "secret_key": self.secrets["minio_app_password"],
            "bucket": self.get("s3_bucket"),
            "region": "us-east-1",
            "secure": False,
            "public_url": self.get("s3_public_url"),
        }

    def backup_s3(self) -> dict[str, Any]:
        """Where pgBackRest keeps the repository: ``backup_s3`` when set, else a bucket of
        the fleet's own store (MinIO's backup user, or s3_external's endpoint and keys)."""
        configured = self.get("backup_s3")
        if configured:
            return {
                "endpoint": configured["endpoint"],
                "access_key": configured["access_key"],
                "secret_key": configured["secret_key"],
                "bucket": configured.get("bucket", self.get("backup_bucket")),
                "region": configured.get("region", "us-east-1"),
                "secure": bool(configured.get("secure", False)),
            }
        if self.role("storage"):
            return {
                "endpoint": f"{self.role('storage')[0].ip}:9000",
                "access_key": "pgbackrest",
                "secret_key": self.secrets["minio_backup_password"],
                "bucket": self.get("backup_bucket"),
                "region": "us-east-1",
                "secure": False,
            }
        app = self.s3()
        keys = ("endpoint", "access_key", "secret_key", "region", "secure")
        return {**{k: app[k] for k in keys}, "bucket": self.get("backup_bucket")}

    def queues(self, host: HostSpec) -> dict[str, dict[str, Any]]:
        """The worker instances this host runs, with their settings."""
        table = self.get("worker_queues", host)
        return {q: table[q] for q in active_queues(self.get("engine_families", host))}

    def internal_ports(self, host: HostSpec) -> list[int]:
        ports = {p for role in ROLES if host.has(role) or role == "base" for p in ROLE_PORTS[role]}
        if host.has("api"):
            ports |= {int(self.get("api_port")), int(self.get("api_metrics_port"))}
        if host.has("worker"):
            ports |= {int(q["metrics_port"]) for q in self.queues(host).values()}
        if host == self.db_monitor:
            ports.add(int(self.get("db_monitor_port")))
        return sorted(ports)

    def public_ports(self, host: HostSpec) -> list[int]:
        return sorted({p for role, ports in PUBLIC_PORTS.items() if host.has(role) for p in ports})

    def scrape_targets(self) -> dict[str, list[str]]:
        """Prometheus jobs (names fixed in CONTRACTS.md) and their host:port targets."""
        api_metrics = self.get("api_metrics_port")
        return {
            "prometheus": ["127.0.0.1:9090"],
            "node": [f"{h.ip}:9100" for h in self.hosts],
            "appliance-api": [f"{h.ip}:{api_metrics}" for h in self.role("api")],
            "appliance-worker": [
                f"{h.ip}:{q['metrics_port']}"
                for h in self.role("worker")
                for q in self.queues(h).values()
            ],
            "postgres": [f"{h.ip}:9187" for h in self.role("db")],
            "redis": [f"{h.ip}:9121" for h in self.role("redis")],
            "nginx": [f"{h.ip}:9113" for h in self.role("lb")],
            "minio": [f"{h.ip}:9000" for h in self.role("storage")],
        }


def fleet_from_pyinfra(inventory: Any, secrets: dict[str, str]) -> Fleet:
    hosts = [
        HostSpec(h.name, frozenset(g for g in h.groups if g in ROLES), h.data.dict())
        for h in inventory
    ]
    return Fleet(hosts, secrets)
