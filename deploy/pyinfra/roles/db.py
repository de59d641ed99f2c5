"""db: PostgreSQL with automatic failover by pg_auto_failover.

A monitor (a small Postgres of its own with the pgautofailover extension, under pg_autoctl)
runs on the fleet's monitor host (fleet.db_monitor); each db host runs a keeper (pg_autoctl
under pgautofailover@node.service) that starts, stops, promotes and demotes its Postgres as
the monitor assigns. The first db host (or ``db_primary: True``) is created first and becomes
the primary with the app's role and database; the others are cloned from it by pg_autoctl and
follow it as hot standbys, synchronously while they are healthy (so a failover loses no
commit). Debian's own cluster unit (postgresql@15-main) does not run: its cluster is dropped
on a fresh host. After a failover nothing here names the primary: the app's multi-host URLs
find it, the setup SQL and the backups run wherever the primary is. Lag is visible through
the postgres exporter (pg_replication_* metrics); every db host archives WAL and backs up
when it is the primary (roles/backup.py).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

from fleet.checks import MONITORING
from fleet.model import Fleet, HostSpec
from fleet.render import render
from roles import backup
from roles.common import once, put, put_text, restart_if

SHARED_BUFFERS = "256MB"
# Replication lag for the dashboards and alerts (monitoring/, CONTRACTS.md).
QUERIES = MONITORING / "prometheus" / "postgres-exporter" / "queries.yaml"
PGPASS = "/var/lib/postgresql/.pgpass"
# pg_autoctl as postgres with its home: its configuration lives under $HOME/.config, and
# libpq reads the passwords from $HOME/.pgpass.
AS_POSTGRES = "cd / && runuser -u postgres -- env HOME=/var/lib/postgresql"
INCLUDE = "include 'appliance.conf'"
# How soon a lost primary is replaced (pg_auto_failover's defaults: 20 s unhealthy, 30 s
# demote timeout, 5 s health-check timeout; a failover took about a minute). A node is
# unhealthy once its keeper is silent for 10 s and two retried health checks failed; its
# standby is promoted 15 s later. A primary cut off from the monitor and its standby stops
# by itself after NETWORK_PARTITION_SECONDS, well before that (no two primaries).
MONITOR_SETTINGS = {
    "health_check_period": 2000,  # ms
    "health_check_timeout": 2000,  # ms
    "health_check_retry_delay": 1000,  # ms
    "node_considered_unhealthy_timeout": 10000,  # ms
    "primary_demote_timeout": 15000,  # ms
}
NETWORK_PARTITION_SECONDS = 10


def paths(fleet: Fleet) -> dict[str, str]:
    version = fleet.get("postgres_version")
    return {
        "service": "pgautofailover@node",
        "data": f"/var/lib/postgresql/{version}/node",
        "monitor_service": "pgautofailover@monitor",
        "monitor_data": f"/var/lib/postgresql/{version}/monitor",
        "bin": f"/usr/lib/postgresql/{version}/bin",
    }


def packages(fleet: Fleet) -> list[str]:
    version = fleet.get("postgres_version")
    return [f"postgresql-{version}", f"postgresql-{version}-auto-failover", "pg-auto-failover-cli"]


def hba_context(fleet: Fleet) -> dict[str, object]:
    app_hosts = fleet.role("api") + fleet.role("worker") + fleet.role("db")
    return {
        "db_name": fleet.get("db_name"),
        "db_user": fleet.get("db_user"),
        "app_sources": sorted({h.ip for h in app_hosts}),
        "replication_sources": sorted({h.ip for h in fleet.role("db")}),
        "monitor_ip": fleet.db_monitor.ip,
    }


def setup_sql(fleet: Fleet) -> str:
    return render(
        "pyinfra/templates/db-setup.sql.j2",
        db_name=fleet.get("db_name"),
        db_user=fleet.get("db_user"),
        db_password=fleet.secrets["db_password"],
        replication_password=fleet.secrets["replication_password"],
        autoctl_password=fleet.secrets["autoctl_password"],
    )


def monitor_sql(fleet: Fleet) -> str:
    return render(
        "pyinfra/templates/monitor-setup.sql.j2",
        autoctl_password=fleet.secrets["autoctl_password"],
        settings=MONITOR_SETTINGS,
    )


def create_command(fleet: Fleet, me: HostSpec | None) -> str:
    """pg_autoctl's creation of a node (``me``: a db host; a first one initialises the
    primary, a later one clones the primary and follows it) or of the monitor (None). The
    deploy owns pg_hba.conf (--skip-pg-hba); the passwords come from ~postgres/.pgpass."""
    p = paths(fleet)
    common = f"--pgctl {p['bin']}/pg_ctl --ssl-self-signed --skip-pg-hba"
    if me is None:
        monitor = fleet.db_monitor
        what = (f"monitor --pgdata {p['monitor_data']} --pgport {fleet.get('db_monitor_port')}"
                f" --hostname {monitor.ip}")  # fmt: skip
    else:
        what = (f"postgres --pgdata {p['data']} --pgport 5432 --hostname {me.ip}"
                f" --name {me.name} --monitor '{fleet.monitor_uri}'")  # fmt: skip
    # C.UTF-8: initdb's encoding (UTF8) and locale, as on a host with no locale set up
    return f"{AS_POSTGRES} LANG=C.UTF-8 pg_autoctl create {what} {common}"


@operation()
def created(command: str, data: str, bin_dir: str):
    """``command`` (a pg_autoctl create) when ``data`` holds no cluster yet, then Postgres
    stopped: from then on the pgautofailover@ unit starts it."""
    if host.get_fact(File, path=f"{data}/PG_VERSION"):
        return
    pg_ctl = f"runuser -u postgres -- {bin_dir}/pg_ctl -D {data}"
    yield command
    yield f"cd / && if {pg_ctl} status >/dev/null; then {pg_ctl} -m fast -w stop; fi"


@operation()
def debian_cluster_dropped(version: int):
    """Debian's package makes a cluster 15/main on 5432 (postgresql@15-main); an empty one
    is dropped, one that holds a database of its own is left, and the deploy stops (an
    existing fleet moves its data first: README, Operators)."""
    if not host.get_fact(File, path=f"/etc/postgresql/{version}/main/postgresql.conf"):
        return
    held = (
        'runuser -u postgres -- psql -p 5432 -XAtc "SELECT datname FROM pg_database'
        " WHERE datname NOT IN ('postgres', 'template0', 'template1')\" 2>/dev/null"
    )
    yield (
        f'cd / && if [ -n "$({held})" ]; then echo \'the cluster {version}/main holds'
        " databases: move them to pg_auto_failover first (README)' >&2; exit 1; fi"
        f" && pg_dropcluster --stop {version} main"
    )


def install(fleet: Fleet) -> None:
    """Packages, Debian's cluster out of the way, pg_autoctl's unit and the passwords of its
    connections: on every db host and on the monitor's host."""
    apt.packages(
        name="PostgreSQL and pg_auto_failover", packages=packages(fleet), no_recommends=True
    )
    debian_cluster_dropped(
        name="Debian's own cluster is not run (pg_autoctl runs Postgres)",
        version=fleet.get("postgres_version"),
    )
    put(
        "pyinfra/templates/pgpass.j2",
        PGPASS,
        mode="600",
        user="postgres",
        group="postgres",
        monitor_port=fleet.get("db_monitor_port"),
        autoctl_password=fleet.secrets["autoctl_password"],
        replication_password=fleet.secrets["replication_password"],
    )


def unit(fleet: Fleet) -> OperationMeta:
    return put(
        "systemd/pgautofailover@.service.j2",
        "/etc/systemd/system/pgautofailover@.service",
        version=fleet.get("postgres_version"),
    )


def monitor(fleet: Fleet) -> None:
    """The monitor's host: its own Postgres (port db_monitor_port) under
    pgautofailover@monitor, the keepers let in with a password, failover timings set."""
    p = paths(fleet)
    install(fleet)
    service = unit(fleet)
    created(
        name="pg_auto_failover's monitor",
        command=create_command(fleet, None),
        data=p["monitor_data"],
        bin_dir=p["bin"],
    )
    hba = put(
        "pyinfra/templates/pg_hba.monitor.conf.j2",
        f"{p['monitor_data']}/pg_hba.conf",
        mode="600",
        user="postgres",
        group="postgres",
        keeper_sources=sorted({h.ip for h in fleet.role("db")}),
    )
    restart_if(p["monitor_service"], service, hba)
    sql = monitor_sql(fleet)
    put_text(sql, "/etc/appliance/monitor-setup.sql", mode="600", user="postgres",
             group="postgres")  # fmt: skip
    port = fleet.get("db_monitor_port")
    once(
        "db-monitor-setup",
        sql,
        f"cd / && {wait_for_postgres(port, 'pg_auto_failover')} && runuser -u postgres --"
        f" psql -p {port} -d pg_auto_failover -q -v ON_ERROR_STOP=1"
        " < /etc/appliance/monitor-setup.sql",
    )


def wait_for_postgres(port: int, db: str = "postgres") -> str:
    """A shell loop: until the local Postgres on ``port`` answers (up to 120 s)."""
    return (
        f"for i in $(seq 120); do runuser -u postgres -- psql -p {port} -d {db} -XAtc"
        " 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done"
    )


def apply(fleet: Fleet, me: HostSpec) -> None:
    """Every db host: packages and files; the first primary is created and started here, the
    standbys after it (join)."""
    p = paths(fleet)
    install(fleet)
    service = unit(fleet)
    # archive_command's pgBackRest and its configuration, before archiving starts.
    backup.configure(fleet, p["data"])
    if me == fleet.db_primary:
        node(fleet, me, service)


def node(fleet: Fleet, me: HostSpec, service: OperationMeta | None) -> None:
    """This db host's node: created once (pg_autoctl), then its configuration (files in the
    data directory, the same on every node), and its unit restarted when one changed."""
    p = paths(fleet)
    data = p["data"]
    created(name="pg_auto_failover node", command=create_command(fleet, me), data=data,
            bin_dir=p["bin"])  # fmt: skip
    partition = (
        f"{AS_POSTGRES} pg_autoctl config set --pgdata {data}"
        f" timeout.network_partition_timeout {NETWORK_PARTITION_SECONDS}"
        f" && if systemctl -q is-active {p['service']}; then systemctl reload {p['service']}; fi"
    )
    # a reload is enough for it
    once("db-keeper-config", partition, partition)
    conf = put(
        "pyinfra/templates/postgresql.conf.j2",
        f"{data}/appliance.conf",
        mode="600",
        user="postgres",
        group="postgres",
        shared_buffers=SHARED_BUFFERS,
        **backup.postgres_context(),
    )
    include = files.line(
        name="postgresql.conf includes the deploy's settings last",
        path=f"{data}/postgresql.conf",
        line=INCLUDE,
    )
    hba = put(
        "pyinfra/templates/pg_hba.conf.j2",
        f"{data}/pg_hba.conf",
        mode="600",
        user="postgres",
        group="postgres",
        **hba_context(fleet),
    )
    settings_applied(p["service"], conf, include, hba)
    restart_if(p["service"], service)


def settings_applied(service: str, *changes: OperationMeta | None) -> None:
    """Postgres's changed files (its settings, pg_hba.conf) take effect by a reload; the
    node restarts only when the reload left a setting waiting for a restart that was not
    waiting before (``pending_restart``), or when its Postgres does not answer. Restarting
    the primary is a short outage for writes, and a deploy reaches every db host at about
    the same time: a restart for each change would take both nodes down together."""
    loaded = as_postgres_sql("SELECT pg_conf_load_time()")
    pending = as_postgres_sql(
        "SELECT string_agg(name, chr(32) ORDER BY name) FROM pg_settings WHERE pending_restart"
    )
    reload = (
        f"before=$({loaded}) && was=$({pending})"
        f" && {as_postgres_sql('SELECT pg_reload_conf()')} >/dev/null"
        # the postmaster reloads on its own time: until its load time moves (up to 10 s)
        f' && for i in $(seq 50); do [ "$({loaded})" != "$before" ] && break; sleep 0.2; done'
        f" && now=$({pending})"
        ' && echo "settings waiting for a restart: before the reload [$was], after [$now]"'
        # only what this change left waiting restarts it (pg_autoctl may leave its own)
        ' && [ "$now" = "$was" ]'
    )
    server.shell(
        name="Postgres reloads its changed settings (restarts only if one needs it)",
        commands=[
            f"cd / && if systemctl -q is-active {service}; then"
            f" ( {reload} ) || systemctl restart {service}; fi"
        ],
        _if=any_changed(*[c for c in changes if c is not None]),
    )


def as_postgres_sql(sql: str) -> str:
    """A shell command: ``sql`` on this host's node (port 5432), its rows unadorned."""
    return f"runuser -u postgres -- psql -p 5432 -XAtc '{sql}'"


def exporter(fleet: Fleet, me: HostSpec) -> None:
    apt.packages(
        name="Postgres exporter", packages=["prometheus-postgres-exporter"], no_recommends=True
    )
    queries = put_text(
        QUERIES.read_text(), "/etc/prometheus/postgres-exporter-queries.yaml", mode="644"
    )
    conf = put(
        "pyinfra/templates/postgres-exporter.default.j2",
        "/etc/default/prometheus-postgres-exporter",
        listen_ip=me.ip,
    )
    restart_if("prometheus-postgres-exporter", conf, queries)


def join(fleet: Fleet, me: HostSpec) -> None:
    """After the primary is up (deploy.py's barrier): the app's roles and database on
    whichever db host is the primary now (a standby skips: it has them by replication),
    then the standbys' nodes (pg_autoctl clones the primary), then the exporter."""
    p = paths(fleet)
    sql = setup_sql(fleet)
    put_text(sql, "/etc/appliance/db-setup.sql", mode="600", user="postgres", group="postgres")
    data = p["data"]
    skip = f"[ ! -f {data}/PG_VERSION ] || [ -f {data}/standby.signal ]"
    once(
        "db-setup",
        sql,
        f"cd / && if {skip}; then echo 'a standby (or none yet): the primary has them';"
        f" else {wait_for_postgres(5432)}; runuser -u postgres --"
        " psql -q -v ON_ERROR_STOP=1 < /etc/appliance/db-setup.sql; fi",
    )
    if me != fleet.db_primary:
        node(fleet, me, None)
    exporter(fleet, me)


def switchover_command(fleet: Fleet) -> str:
    """On the monitor's host: a planned switchover (waits until it is done, up to 60 s), then
    the formation's state, for the deploy's log."""
    monitor = f"--pgdata {paths(fleet)['monitor_data']}"
    return (
        f"{AS_POSTGRES} pg_autoctl perform switchover {monitor}"
        f" && {AS_POSTGRES} pg_autoctl show state {monitor}"
    )
