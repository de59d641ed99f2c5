"""Backups on the lab fleet (roles/backup.py) and a restore drill: a point-in-time restore of
the fleet's database from the S3 repository into a fresh data directory on a spare host, the
API started against it, every job finished before the chosen time readable with its files
and a job made after it absent.

The fleet is test_fleet.py's (the same fixture, the same six hosts: h4 the db primary and a
worker, h6 the replica, h2 an api host). The drill's cluster runs on h6 beside its replica
(port 5433), the drill's API on h2 beside the fleet's (loopback port 8089, reached through
an SSH tunnel as an operator would); neither touches the fleet's own services, and both are
removed afterwards. Durations go to bench/out/backup-times.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import yaml
from minio import Minio

from tests.deploy.alerts import alerts, wait_for
from tests.deploy.fleet import REPO
from tests.deploy.test_fleet import _png, redis_secret
from tests.harness.s3server import S3Server

PRIMARY, SPARE, API = "h4", "h6", "h2"
DRILL_DATA = "/var/lib/postgresql/drill"
DRILL_PORT = 5433
DRILL_API_PORT = 8089
RULES = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus" / "rules"
PGBACKREST = "cd / && runuser -u postgres -- pgbackrest --stanza=appliance"
pytestmark = pytest.mark.timeout(2400)


def _record(times: dict[str, float]) -> None:
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "backup-times.json"
    path.write_text(json.dumps({k: round(v, 1) for k, v in times.items()}, indent=2))


def _sql(fleet, host: str, sql: str, port: int = 5432) -> str:
    cmd = f'cd / && runuser -u postgres -- psql -p {port} -d appliance -XAtc "{sql}"'
    return fleet.lab.run(host, cmd).stdout.strip()


def _timed(fleet, host: str, cmd: str, timeout: int = 600) -> float:
    started = time.monotonic()
    fleet.lab.run(host, cmd, timeout=timeout)
    return time.monotonic() - started


def _backups(fleet, host: str = PRIMARY) -> list[dict]:
    """The repository's backups as the primary's pgBackRest reads them (its status must be
    ok: `info` succeeds with an error status when the repository is unreachable)."""
    out = fleet.lab.run(host, f"{PGBACKREST} --output=json info").stdout
    (stanza,) = json.loads(out)
    if stanza["status"]["code"] != 0 or not stanza["backup"]:
        relay = fleet.lab.run(host, "journalctl -u appliance-backup-tls -n 30 -o cat")
        logs = fleet.lab.run(host, "tail -n 30 /var/log/pgbackrest/*.log", check=False)
        pytest.fail(f"pgbackrest info: {out}\nrelay: {relay.stdout}\nlogs: {logs.stdout}")
    return stanza["backup"]


def _convert(api: httpx.Client, png: Path) -> tuple[str, str]:
    """A finished job (upload, convert to webp, export): its id and its export URL."""
    job = api.post("/v2/jobs", json={"tasks": {
        "up": {"operation": "import/upload"},
        "c": {"operation": "convert", "input": "up", "output_format": "webp"},
        "e": {"operation": "export/url", "input": "c"},
    }}).raise_for_status().json()["data"]  # fmt: skip
    form = job["tasks"][0]["result"]["form"]
    with png.open("rb") as f:
        up = api.post(form["url"], data=form["parameters"], files={"file": ("in.png", f)})
    assert up.status_code == 201, up.text
    done = api.get(f"/sync/v2/jobs/{job['id']}").raise_for_status().json()["data"]
    assert done["status"] == "finished", done
    export = next(t for t in done["tasks"] if t["name"] == "e")
    return job["id"], export["result"]["files"][0]["url"]


def _prometheus_query(port: int, expr: str) -> list[dict]:
    reply = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=15)
    return reply.raise_for_status().json()["data"]["result"]


def test_every_db_host_has_the_backup_timers_and_a_standby_s_run_skips(fleet):
    for name in (PRIMARY, SPARE):
        units = "appliance-backup-full.timer appliance-backup-incr.timer"
        units += " appliance-backup-metrics.timer"
        assert fleet.lab.run(name, f"systemctl is-active {units}").stdout.split() == ["active"] * 3
    fleet.lab.run(SPARE, "systemctl start appliance-backup@incr.service")
    said = fleet.lab.run(SPARE, "journalctl -u appliance-backup@incr.service -o cat -n 20")
    assert "the primary takes the backups" in said.stdout
    # The deploy took the first full backup on the primary, none elsewhere; pgBackRest as
    # postgres (archive_command's user) reads the repository on both hosts.
    assert [b["type"] for b in _backups(fleet)] == ["full"]
    assert [b["type"] for b in _backups(fleet, SPARE)] == ["full"]


def test_the_repository_is_encrypted_and_its_buckets_keep_versions(fleet, s3_server: S3Server):
    info = json.loads(fleet.lab.run(PRIMARY, f"{PGBACKREST} --output=json info").stdout)
    assert info[0]["cipher"] == "aes-256-cbc"
    client = Minio(s3_server.endpoint, s3_server.access_key, s3_server.secret_key,
                   secure=False, region=s3_server.region)  # fmt: skip
    spec = json.loads(Path(fleet.env["APPLIANCE_LAB_FLEET"]).read_text())
    for bucket in ("appliance-backups", spec["data"]["s3_external"]["bucket"]):
        assert client.get_bucket_versioning(bucket).status == "Enabled", bucket
    # Nothing of the database is readable in the store: every object pgBackRest wrote (info
    # files, backup bundles, WAL) is its cipher's output (OpenSSL's salted format).
    names = [o.object_name for o in client.list_objects("appliance-backups", recursive=True)]
    assert any("archive/appliance/" in n for n in names), names[:20]
    assert any("backup/appliance/" in n for n in names), names[:20]
    for name in names[:40]:
        head = client.get_object("appliance-backups", name).read()[:8]
        assert head == b"Salted__", (name, head)


def test_backup_metrics_reach_prometheus_and_no_backup_alert_fires(fleet):
    with fleet.lab.tunnel("h1", 9090) as port:
        deadline = time.monotonic() + 120
        while True:
            up = _prometheus_query(port, 'pgbackrest_repo_up{job="node"}')
            if len(up) == 2 or time.monotonic() > deadline:
                break
            time.sleep(5)
        assert sorted(s["metric"]["instance"].split(":")[0] for s in up) == sorted(
            fleet.lab.ip(n) for n in (PRIMARY, SPARE)
        )
        assert all(s["value"][1] == "1" for s in up), up
        # Each alert's queries return data on a fleet (the local e2e has no pgBackRest).
        for group in yaml.safe_load((RULES / "backups.yml").read_text())["groups"]:
            for rule in group["rules"]:
                for clause in rule["expr"].split(" or "):
                    query = clause.rsplit(">", 1)[0].rsplit("<", 1)[0]
                    assert _prometheus_query(port, query), (rule["alert"], query)
        firing = _prometheus_query(port, 'ALERTS{alertname=~"ApplianceBackup.*|ApplianceWal.*"}')
        assert firing == [], firing


# roles/backup.py: the metrics tool, its textfile and the timer that refreshes it
BACKUP_TOOL = "/usr/local/lib/appliance/backup_tool.py"
BACKUP_TEXTFILE = "/var/lib/prometheus/node-exporter/pgbackrest.prom"
METRICS_UNIT = "appliance-backup-metrics"
# ApplianceBackupStale's `for` in the lab (10 minutes in production, alert_for_scale 0.25),
# a scrape and an evaluation (15 s each), and slack
STALE_FIRES_SECONDS = 300


def test_the_backup_stale_alert_fires_when_the_newest_backup_is_too_old_and_clears_after(fleet):
    """The newest good backup older than ``backup_max_age_hours`` allows, made by lowering the
    bar instead of waiting a day and a half for the clock: on both db hosts the metrics timer
    is stopped and the metrics written once with a bar of 36 seconds (what a lower setting
    would give), so the repository's real newest backup, minutes old, is too old.
    ApplianceBackupStale fires after its `for`; with the timer back the setting's own bar is
    in the metrics again and the alert clears."""
    write = f"python3 {BACKUP_TOOL} metrics --max-age-hours 0.01 --out {BACKUP_TEXTFILE}"
    low = f"systemctl stop {METRICS_UNIT}.timer && {write}"
    back = f"systemctl start {METRICS_UNIT}.timer {METRICS_UNIT}.service"
    with fleet.lab.tunnel("h1", 9090) as port:
        assert alerts(port, "ApplianceBackupStale") == set()
        for host in (PRIMARY, SPARE):
            fleet.lab.run(host, low)
        try:
            firing = lambda: alerts(port, "ApplianceBackupStale", "firing") != set()  # noqa: E731
            fired = wait_for(firing, STALE_FIRES_SECONDS)
            bar = _prometheus_query(port, 'max(pgbackrest_backup_max_age_seconds{job="node"})')
            assert float(bar[0]["value"][1]) == 36.0, bar
        finally:
            for host in (PRIMARY, SPARE):
                fleet.lab.run(host, back)
        cleared = wait_for(lambda: alerts(port, "ApplianceBackupStale") == set(), 120)
        bar = _prometheus_query(port, 'min(pgbackrest_backup_max_age_seconds{job="node"})')
        assert float(bar[0]["value"][1]) == 36 * 3600, bar  # the default (fleet/defaults.py)
    print(
        f"backup stale: fired {fired:.0f} s after the bar was lowered,"
        f" cleared {cleared:.0f} s after it was restored"
    )


def _restore_to_spare(fleet, target: str) -> float:
    """pgBackRest restores the repository to ``target`` into a fresh data directory on the
    spare host and PostgreSQL replays WAL up to it, then promotes: the seconds it took."""
    version = "15"
    conf = "\n".join([
        f"port = {DRILL_PORT}",
        "listen_addresses = '*'",
        # the db host's own rules (pg_auto_failover's node keeps them in its data directory)
        f"hba_file = '/var/lib/postgresql/{version}/node/pg_hba.conf'",
        "unix_socket_directories = '/var/run/postgresql'",
        # as the primary's (a hot standby during recovery needs at least as many)
        "max_connections = 300",
        "max_wal_senders = 10",
        # a drill must never archive into the fleet's repository
        "archive_mode = off",
    ])  # fmt: skip
    pg_ctl = f"cd / && runuser -u postgres -- /usr/lib/postgresql/{version}/bin/pg_ctl"
    restore = f"{PGBACKREST} --pg1-path={DRILL_DATA} --type=time '--target={target}'"
    wait = (
        f'for i in $(seq 300); do [ "$(runuser -u postgres -- psql -p {DRILL_PORT} -XAtc'
        " 'SELECT pg_is_in_recovery()')\" = f ] && exit 0; sleep 1; done; exit 1"
    )
    started = time.monotonic()
    fresh = f"rm -rf {DRILL_DATA} && install -d -o postgres -g postgres -m 700 {DRILL_DATA}"
    fleet.lab.run(SPARE, fresh)
    fleet.lab.run(SPARE, f"{restore} --target-action=promote restore", timeout=900)
    write = f"printf '%s\\n' \"{conf}\" > {DRILL_DATA}/postgresql.conf"
    # pg_auto_failover's synchronous_standby_names came with the backup (ALTER SYSTEM): every
    # commit of the drill's cluster would wait for a standby it does not have. (pgBackRest's
    # recovery settings are in that file too: only the one line goes.)
    write += f" && sed -i '/^synchronous_standby_names/d' {DRILL_DATA}/postgresql.auto.conf"
    fleet.lab.run(SPARE, f"{write} && chown postgres: {DRILL_DATA}/postgresql.conf")
    start = f"{pg_ctl} -D {DRILL_DATA} -l {DRILL_DATA}.log -w -t 600 start"
    fleet.lab.run(SPARE, start, timeout=700)
    fleet.lab.run(SPARE, f"cd / && {wait}", timeout=400)
    return time.monotonic() - started


def _start_drill_api(fleet) -> None:
    """The release's API on the api host, on loopback, against the restored database (the
    fleet's settings otherwise: its S3 bucket, keys and Redis)."""
    password = quote(redis_secret(fleet, "db_password"), safe="")
    url = f"postgresql://appliance:{password}@{fleet.lab.ip(SPARE)}:{DRILL_PORT}/appliance"
    fleet.lab.run(SPARE, f"nft insert rule inet appliance input ip saddr {fleet.lab.ip(API)}"
                         f" tcp dport {DRILL_PORT} accept")  # fmt: skip
    env = {
        "APPLIANCE_DATABASE_URL": f"{url}?connect_timeout=5",
        "APPLIANCE_DATABASE_READ_URL": "",
        "APPLIANCE_HOST": "127.0.0.1",
        "APPLIANCE_PORT": str(DRILL_API_PORT),
        "APPLIANCE_API_METRICS_HOST": "127.0.0.1",
        "APPLIANCE_API_METRICS_PORT": "9189",
        "APPLIANCE_API_WORKERS": "1",
    }
    # Sourced, not EnvironmentFile=: systemd lets those files win over -E settings.
    exports = "; ".join(f"export {k}='{v}'" for k, v in env.items())
    api = "exec runuser -u appliance -- /opt/appliance/current/bin/appliance api"
    sources = "set -a; . /etc/appliance/appliance.env; . /etc/appliance/api.env; set +a"
    script = f"{sources}; {exports}; {api}"
    fleet.lab.run(API, f'systemd-run --unit=appliance-drill-api /bin/sh -c "{script}"')
    ready = f"http://127.0.0.1:{DRILL_API_PORT}/health/ready"
    fleet.lab.run(API, f"for i in $(seq 120); do curl -fs {ready} && exit 0; sleep 1; done;"
                       " journalctl -u appliance-drill-api -n 40 --no-pager; exit 1",
                  timeout=200)  # fmt: skip


def _stop_drill(fleet) -> None:
    fleet.lab.run(API, "systemctl stop appliance-drill-api", check=False)
    fleet.lab.run(SPARE, f"cd / && runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl"
                         f" -D {DRILL_DATA} -m fast stop; rm -rf {DRILL_DATA} {DRILL_DATA}.log;"
                         " nft -f /etc/nftables.conf", check=False)  # fmt: skip


def test_point_in_time_restore_brings_back_every_job_finished_before_the_target(fleet, tmp_path):
    png = _png(tmp_path / "in.png")
    times: dict[str, float] = {}
    key = fleet.key()
    with fleet.client(key) as api:
        before = [_convert(api, png) for _ in range(2)]  # in the incremental backup
        times["backup_incr_seconds"] = _timed(
            fleet, PRIMARY, "systemctl start appliance-backup@incr.service"
        )
        before += [_convert(api, png) for _ in range(2)]  # only in the archived WAL
        files = {job: api.get(url).raise_for_status().content for job, url in before}
        target = _sql(fleet, PRIMARY, "SELECT now()")
        time.sleep(2)
        after, _ = _convert(api, png)
    # The commits after the target reach the archive: recovery stops at the first of them.
    times["archive_check_seconds"] = _timed(fleet, PRIMARY, f"{PGBACKREST} check")
    assert [b["type"] for b in _backups(fleet)] == ["full", "incr"]
    try:
        times["restore_and_replay_seconds"] = _restore_to_spare(fleet, target)
        _start_drill_api(fleet)
        with fleet.lab.tunnel(API, DRILL_API_PORT) as port:
            drill = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                 headers={"Authorization": f"Bearer {key}"})  # fmt: skip
            with drill:
                for job, url in before:
                    got = drill.get(f"/v2/jobs/{job}").raise_for_status().json()["data"]
                    assert got["status"] == "finished", got
                    body = drill.get(url.replace(fleet.url, str(drill.base_url).rstrip("/")))
                    assert body.status_code == 200, body.text
                    assert body.content == files[job] and body.content[8:12] == b"WEBP"
                assert drill.get(f"/v2/jobs/{after}").status_code == 404
        # The restored database is its own timeline: the fleet's primary never saw it.
        assert _sql(fleet, SPARE, "SELECT pg_is_in_recovery()", port=DRILL_PORT) == "f"
        count = f"SELECT count(*) FROM jobs WHERE id = '{after}'"
        assert _sql(fleet, PRIMARY, count) == "1"
    finally:
        _stop_drill(fleet)
    times["backup_full_seconds"] = _timed(
        fleet, PRIMARY, "systemctl start appliance-backup@full.service"
    )
    _record(times)


def test_a_second_deploy_changes_nothing_after_backups_and_a_drill(fleet):
    """Idempotent with the backup role in (test_fleet.py checks the same on a fresh fleet):
    the stanza, the first backup and the relay's certificate are not made again."""
    log, _ = fleet.deploy()
    changed, operation = [], ""
    for line in log.splitlines():
        if "Starting operation:" in line:
            operation = line.split("Starting operation:", 1)[1].strip()
        elif line.strip().endswith("] Success"):
            changed.append(f"{operation}: {line.strip()}")
    assert changed == [], "\n".join(changed)
    assert [b["type"] for b in _backups(fleet)] == ["full", "incr", "full"]
