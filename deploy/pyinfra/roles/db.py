"""db: PostgreSQL primary plus streaming replicas (hot standby). The primary gets the app's
role and database, a replication role and one physical slot per replica; each replica is
cloned from the primary once (pg_basebackup -R with its slot) and then follows it. Lag is
visible through the postgres exporter (pg_replication_* metrics). Every db host archives WAL
and backs up when it is the primary (roles/backup.py)."""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import apt, server

from fleet.checks import MONITORING
from fleet.model import Fleet, HostSpec
from fleet.render import render
from roles import backup
from roles.common import once, put, put_text, restart_if

SHARED_BUFFERS = "256MB"
# Replication lag for the dashboards and alerts (monitoring/, CONTRACTS.md).
QUERIES = MONITORING / "prometheus" / "postgres-exporter" / "queries.yaml"


def paths(fleet: Fleet) -> dict[str, str]:
    version = fleet.get("postgres_version")
    return {
        "service": f"postgresql@{version}-main",
        "conf": f"/etc/postgresql/{version}/main",
        "data": f"/var/lib/postgresql/{version}/main",
        "bin": f"/usr/lib/postgresql/{version}/bin",
    }


def hba_context(fleet: Fleet) -> dict[str, object]:
    app_hosts = fleet.role("api") + fleet.role("worker") + fleet.role("db")
    return {
        "db_name": fleet.get("db_name"),
        "db_user": fleet.get("db_user"),
        "app_sources": sorted({h.ip for h in app_hosts}),
        "replication_sources": sorted({h.ip for h in fleet.role("db")}),
    }


def setup_sql(fleet: Fleet) -> str:
    return render(
        "pyinfra/templates/db-setup.sql.j2",
        db_name=fleet.get("db_name"),
        db_user=fleet.get("db_user"),
        db_password=fleet.secrets["db_password"],
        replication_password=fleet.secrets["replication_password"],
        slots=[fleet.slot_name(r) for r in fleet.db_replicas],
    )


def apply(fleet: Fleet, me: HostSpec) -> None:
    p = paths(fleet)
    # install
    apt.packages(
        name="PostgreSQL and its exporter",
        packages=[f"postgresql-{fleet.get('postgres_version')}", "prometheus-postgres-exporter"],
        no_recommends=True,
    )
    # configure
    conf = put(
        "pyinfra/templates/postgresql.conf.j2",
        f"{p['conf']}/conf.d/appliance.conf",
        shared_buffers=SHARED_BUFFERS,
        **backup.postgres_context(),
    )
    hba = put(
        "pyinfra/templates/pg_hba.conf.j2",
        f"{p['conf']}/pg_hba.conf",
        mode="640",
        user="postgres",
        group="postgres",
        **hba_context(fleet),
    )
    queries = put_text(
        QUERIES.read_text(), "/etc/prometheus/postgres-exporter-queries.yaml", mode="644"
    )
    exporter = put(
        "pyinfra/templates/postgres-exporter.default.j2",
        "/etc/default/prometheus-postgres-exporter",
        listen_ip=me.ip,
    )
    if me != fleet.db_primary:
        put(
            "pyinfra/templates/pgpass.j2",
            "/var/lib/postgresql/.pgpass",
            mode="600",
            user="postgres",
            group="postgres",
            primary_ip=fleet.db_primary.ip,
            replication_password=fleet.secrets["replication_password"],
        )
    # archive_command's pgBackRest and its configuration, before archiving starts.
    backup.configure(fleet, p["data"])
    # activate: the primary's roles and slots; replicas clone it afterwards (clone_replica).
    restart_if(p["service"], conf, hba)
    if me == fleet.db_primary:
        sql = setup_sql(fleet)
        put_text(sql, "/etc/appliance/db-setup.sql", mode="600", user="postgres", group="postgres")
        once(
            "db-setup",
            sql,
            "cd / && runuser -u postgres --"
            " psql -q -v ON_ERROR_STOP=1 -f /etc/appliance/db-setup.sql",
        )
    restart_if("prometheus-postgres-exporter", exporter, queries)


def clone_replica(fleet: Fleet, me: HostSpec) -> None:
    """Once per replica (no standby.signal yet): replace the empty cluster with a copy of
    the primary that streams from it through its slot. deploy.py calls it after every db
    host's apply (the primary's roles and slots exist by then)."""
    if me == fleet.db_primary:
        return
    p = paths(fleet)
    if host.get_fact(File, path=f"{p['data']}/standby.signal"):
        return
    data = p["data"]
    server.shell(
        name=f"Clone the primary {fleet.db_primary.ip} into this replica",
        # Cloned aside first: a failed clone leaves the host's cluster as it was.
        commands=[
            f"rm -rf {data}.clone && install -d -m 700 -o postgres -g postgres {data}.clone",
            f"cd / && runuser -u postgres -- {p['bin']}/pg_basebackup -h {fleet.db_primary.ip}"
            f" -U replicator -D {data}.clone -R -S {fleet.slot_name(me)} -X stream -c fast -w",
            f"systemctl stop {p['service']}",
            f"rm -rf {data} && mv {data}.clone {data}",
            f"systemctl start {p['service']}",
        ],
    )
