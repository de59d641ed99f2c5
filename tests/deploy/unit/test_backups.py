"""Backups (roles/backup.py, fleet/backup_tool.py): where the repository goes, the files the
role writes checked by the tools that read them, the metrics textfile, and the rendered
pgBackRest configuration and TLS relay driven for real: a bucket made and versioned on the
harness's S3 server, WAL archived, a backup taken and a point-in-time restore that stops
before a later commit."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fleet import backup_tool
from fleet.model import FleetError
from fleet.render import render
from minio import Minio
from roles import backup, storage

from tests.deploy.unit.conftest import make_fleet
from tests.harness.s3server import S3Server

EXTERNAL = {"endpoint": "10.200.0.1:9000", "access_key": "a", "secret_key": "b"}


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


# -- where the repository goes ----------------------------------------------------------------
def test_with_minio_backups_go_to_their_own_bucket_as_their_own_user():
    fleet = make_fleet(minio_sha256="x")
    fleet.hosts[0] = type(fleet.hosts[0])("h1", frozenset({"lb", "monitoring", "storage"}),
                                          fleet.hosts[0].data)  # fmt: skip
    s3 = fleet.backup_s3()
    assert s3["endpoint"] == "10.200.1.1:9000" and s3["bucket"] == "appliance-backups"
    assert s3["access_key"] == "pgbackrest"
    assert s3["secret_key"] == fleet.secrets["minio_backup_password"] != fleet.s3()["secret_key"]
    setup = render(
        "pyinfra/templates/minio-setup.sh.j2", **storage.setup_context(fleet, fleet.hosts[0])
    )
    # pgBackRest's user may touch its bucket only; both buckets keep old versions 30 days.
    assert '"arn:aws:s3:::appliance-backups", "arn:aws:s3:::appliance-backups/*"' in setup
    assert "admin user add local pgbackrest 's3cret-minio-backup-password'" in setup
    for bucket in ("appliance", "appliance-backups"):
        assert f"version enable local/{bucket}\n" in setup
        assert f"ilm import local/{bucket} <" in setup
    assert '"NoncurrentDays": 30' in setup


def test_with_an_external_store_backups_use_its_endpoint_and_keys_in_their_own_bucket():
    fleet = make_fleet(s3_external={**EXTERNAL, "bucket": "app"})
    assert fleet.backup_s3() == {**EXTERNAL, "bucket": "appliance-backups",
                                 "region": "us-east-1", "secure": False}  # fmt: skip
    config = json.loads(backup.s3_config(fleet))
    assert [b["bucket"] for b in [config["s3"], *config["also_versioned"]]] == [
        "appliance-backups",
        "app",
    ]
    assert config["noncurrent_days"] == 30  # old versions of both deleted after that


class _Store(http.server.BaseHTTPRequestHandler):
    """A bucket's lifecycle subresource as S3 answers it: 404 NoSuchLifecycleConfiguration
    until one is put. Each request is kept: (method, path, headers, body)."""

    rules: bytes | None = None
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def _answer(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, b""))
        if self.rules is None:
            self._answer(404, b"<Error><Code>NoSuchLifecycleConfiguration</Code></Error>")
        else:
            self._answer(200, self.rules)

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("PUT", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        type(self).rules = body
        self._answer(200)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def store() -> Iterator[tuple[type[_Store], dict[str, str]]]:
    handler = type("Store", (_Store,), {"rules": None, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    s3 = {"endpoint": f"127.0.0.1:{server.server_address[1]}", "access_key": "a",
          "secret_key": "b", "region": "eu-1"}  # fmt: skip
    try:
        yield handler, s3
    finally:
        server.shutdown()
        thread.join(10)


def test_old_versions_are_given_an_expiry_signed_with_the_body_s_md5(store):
    handler, s3 = store
    assert backup_tool.expire_old_versions(s3, "app", 30) == "set"
    put = [r for r in handler.seen if r[0] == "PUT"]
    assert len(put) == 1
    _, path, headers, body = put[0]
    assert path == "/app?lifecycle" and body == backup_tool.lifecycle(30)
    assert b"<NoncurrentDays>30</NoncurrentDays>" in body
    assert headers["content-md5"] == base64.b64encode(hashlib.md5(body).digest()).decode()
    when = datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    again = backup_tool.signed_headers(s3, "PUT", "/app", "lifecycle=", body, when,
                                       {"content-md5": headers["content-md5"]})  # fmt: skip
    assert headers["authorization"] == again["authorization"]
    assert "content-md5" in headers["authorization"]  # signed with the rest
    # the next deploy finds its own rule and leaves it alone, or sets its new number of days
    assert backup_tool.expire_old_versions(s3, "app", 30) == "kept"
    assert len([r for r in handler.seen if r[0] == "PUT"]) == 1
    assert backup_tool.expire_old_versions(s3, "app", 7) == "set"
    assert handler.rules == backup_tool.lifecycle(7)


def test_a_bucket_with_lifecycle_rules_of_its_own_keeps_them(store):
    handler, s3 = store
    theirs = b"<LifecycleConfiguration><Rule><ID>logs</ID></Rule></LifecycleConfiguration>"
    handler.rules = theirs
    assert backup_tool.expire_old_versions(s3, "app", 30) == "theirs"
    assert handler.rules == theirs and all(r[0] == "GET" for r in handler.seen)


def test_a_second_site_for_backups_is_used_as_given():
    other = {"endpoint": "s3.example:443", "access_key": "k", "secret_key": "s",
             "bucket": "offsite", "region": "eu-1", "secure": True}  # fmt: skip
    fleet = make_fleet(s3_external=EXTERNAL, backup_s3=other)
    assert fleet.backup_s3() == other
    conf = render("pyinfra/templates/pgbackrest.conf.j2", **backup.conf_context(fleet, "/d"))
    # TLS straight to it: no relay
    assert "repo1-s3-endpoint=s3.example\n" in conf and "repo1-storage-port=443\n" in conf
    assert "repo1-storage-host" not in conf and not backup.relayed(fleet)


def test_backups_in_the_app_s_own_bucket_are_refused():
    fleet = make_fleet(s3_external={**EXTERNAL, "bucket": "same"}, backup_bucket="same")
    with pytest.raises(FleetError, match="backup_bucket must not be the app's bucket"):
        fleet.validate()


def test_the_repository_is_encrypted_with_the_fleet_s_secret_and_keeps_the_set_retention():
    fleet = make_fleet(s3_external=EXTERNAL, backup_retention_full=7, fleet_name="prod")
    conf = render("pyinfra/templates/pgbackrest.conf.j2", **backup.conf_context(fleet, "/d"))
    lines = conf.splitlines()
    for want in ("repo1-cipher-type=aes-256-cbc", "repo1-cipher-pass=s3cret-backup-cipher-pass",
                 "repo1-retention-full=7", "repo1-path=/prod", "[appliance]", "pg1-path=/d",
                 "repo1-storage-host=127.0.0.1", "repo1-storage-port=9444",
                 f"repo1-storage-ca-file={backup.RELAY_CERT}"):  # fmt: skip
        assert want in lines, want


# -- units ------------------------------------------------------------------------------------
def _verify(unit_dir: Path, *units: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice"}
    return _run("systemd-analyze", "verify", "--man=no", *[str(unit_dir / u) for u in units],
                env=env)  # fmt: skip


def test_backup_units_and_timers_verify_and_run_the_installed_scripts(tmp_path):
    fleet = make_fleet(s3_external=EXTERNAL)
    ctx = backup.unit_context(fleet, "pgautofailover@node")
    script = tmp_path / "appliance-backup"  # ExecStart must exist for verify
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    files = {
        "appliance-backup@.service": render("systemd/appliance-backup@.service.j2",
                                            **{**ctx, "backup_script": str(script)}),
        "appliance-backup-metrics.service": render(
            "systemd/appliance-backup-metrics.service.j2", **ctx),
        "appliance-backup-metrics.timer": render("systemd/appliance-backup-metrics.timer.j2"),
        "appliance-backup-tls.service": render("systemd/appliance-backup-tls.service.j2",
                                               conf=backup.RELAY_CONF),
    }  # fmt: skip
    for kind in backup.TYPES:
        files[f"appliance-backup-{kind}.timer"] = render(
            "systemd/appliance-backup.timer.j2",
            type=kind,
            schedule=fleet.get(f"backup_{kind}_schedule"),
        )
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    os.link(tmp_path / "appliance-backup@.service", tmp_path / "appliance-backup@full.service")
    assert "User=postgres" in files["appliance-backup@.service"]
    assert (
        "After=network-online.target pgautofailover@node.service appliance-backup-tls.service"
        in (files["appliance-backup@.service"])
    )
    assert (
        "--max-age-hours 36 --out /var/lib/prometheus/node-exporter/pgbackrest.prom"
        in (files["appliance-backup-metrics.service"])
    )
    result = _verify(tmp_path, "appliance-backup@full.service",
                     "appliance-backup-metrics.service", "appliance-backup-tls.service",
                     "appliance-backup-full.timer", "appliance-backup-incr.timer",
                     "appliance-backup-metrics.timer")  # fmt: skip
    assert result.returncode == 0, result.stderr
    for kind in backup.TYPES:  # the schedules are calendar expressions systemd accepts
        done = _run("systemd-analyze", "calendar", fleet.get(f"backup_{kind}_schedule"))
        assert done.returncode == 0, done.stderr


# -- metrics ----------------------------------------------------------------------------------
def _backup(label: str, kind: str, start: int, stop: int, error: bool = False) -> dict:
    return {"label": label, "type": kind, "error": error,
            "timestamp": {"start": start, "stop": stop},
            "info": {"repository": {"delta": 1000 + stop - start}}}  # fmt: skip


def test_metrics_name_the_newest_good_backup_of_each_type_at_full_precision():
    info = [{"name": "appliance", "status": {"code": 0}, "backup": [
        _backup("F1", "full", 1796553769, 1796553813),
        _backup("F2", "full", 1796640000, 1796640100),
        _backup("I1", "incr", 1796700000, 1796700007),
        _backup("I2", "incr", 1796800000, 1796800009, error=True),  # a checksum error
    ]}]  # fmt: skip
    text = backup_tool.render_metrics(info, (1796800001.5, 0), 36 * 3600, 1796800050.25)
    lines = set(text.splitlines())
    for want in ('pgbackrest_repo_up 1',
                 'pgbackrest_backups 3',
                 'pgbackrest_backup_last_good_completion_seconds{type="full"} 1796640100',
                 'pgbackrest_backup_last_duration_seconds{type="full"} 100',
                 'pgbackrest_backup_last_good_completion_seconds{type="incr"} 1796700007',
                 'pgbackrest_backup_last_size_bytes{type="incr"} 1007',
                 'pgbackrest_backup_max_age_seconds 129600',
                 'pgbackrest_wal_last_archived_timestamp_seconds 1796800001.5',
                 'pgbackrest_wal_last_failed_timestamp_seconds 0',
                 'pgbackrest_metrics_updated_timestamp_seconds 1796800050.25'):  # fmt: skip
        assert want in lines, want
    assert 'type="diff"' not in text
    checked = _run("promtool", "check", "metrics", input=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_unreadable_repository_and_a_standby_say_so_without_backup_figures():
    text = backup_tool.render_metrics(None, None, 3600, 1.0)
    assert "pgbackrest_repo_up 0" in text.splitlines()
    assert "pgbackrest_backup_last" not in text and "pgbackrest_wal" not in text
    failing = [{"name": "appliance", "status": {"code": 99, "message": "other"}, "backup": []}]
    text = backup_tool.render_metrics(failing, None, 3600, 1.0)
    assert "pgbackrest_repo_up 0" in text.splitlines()


# -- for real: S3, the relay, pgBackRest, PostgreSQL -----------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def relayed_repo(s3_server: S3Server, work_root: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The role's pgbackrest.conf and TLS relay, rendered for a fleet whose store is the
    harness's S3 server, with local paths: (pgBackRest's config, its environment)."""
    for tool in ("pgbackrest", "stunnel4", "openssl"):
        assert shutil.which(tool), f"{tool} is needed (scripts/install.sh --dev)"
    work = work_root / f"backup-{uuid.uuid4().hex[:8]}"
    work.mkdir(mode=0o755)
    shutil.chown(work, "postgres", "postgres")  # its data directories and socket go here
    store = {"endpoint": s3_server.endpoint, "access_key": s3_server.access_key,
             "secret_key": s3_server.secret_key, "region": s3_server.region,
             "bucket": f"app{uuid.uuid4().hex[:8]}"}  # fmt: skip
    fleet = make_fleet(s3_external=store, backup_tls_relay_port=_free_port(),
                       backup_bucket=f"bk{uuid.uuid4().hex[:8]}")  # fmt: skip
    cert, key = work / "tls.crt", work / "tls.key"
    assert _run("sh", "-c", backup.relay_cert_command(str(cert), str(key))).returncode == 0
    relay = render("pyinfra/templates/backup-tls.conf.j2", **{**backup.relay_context(fleet),
                   "relay_cert": str(cert), "relay_key": str(key)})  # fmt: skip
    (work / "relay.conf").write_text(relay)
    (work / "s3.json").write_text(backup.s3_config(fleet))
    data = work / "data"
    conf = render("pyinfra/templates/pgbackrest.conf.j2", **backup.conf_context(fleet, str(data)))
    conf = conf.replace(backup.RELAY_CERT, str(cert))
    conf = conf.replace("pg1-socket-path=/var/run/postgresql", f"pg1-socket-path={work}")
    (work / "pgbackrest.conf").write_text(conf + f"pg1-port={(port := _free_port())}\n")
    logs = work / "log"
    logs.mkdir()
    shutil.chown(logs, "postgres", "postgres")
    env = {**os.environ, "PGBACKREST_CONFIG": str(work / "pgbackrest.conf"),
           "PGBACKREST_LOG_PATH": str(logs), "PGBACKREST_LOCK_PATH": str(logs),
           "PGPORT": str(port), "PGHOST": str(work)}  # fmt: skip
    relay_proc = subprocess.Popen(["stunnel4", str(work / "relay.conf")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield work, env
    finally:
        relay_proc.terminate()
        relay_proc.wait(10)


def _pg(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    return _run("runuser", "-u", "postgres", "--", str(bindir / args[0]), *args[1:], env=env,
                cwd="/")  # fmt: skip


def _as_pg(env: dict[str, str], *cmd: str) -> subprocess.CompletedProcess[str]:
    return _run("runuser", "-u", "postgres", "--", *cmd, env=env, cwd="/")


def test_the_role_s_config_archives_backs_up_and_restores_to_a_point_in_time(relayed_repo):
    work, env = relayed_repo
    made = _run("python3", str(backup.TOOL_SOURCE), "bucket", str(work / "s3.json"))
    assert made.returncode == 0, made.stderr
    # The harness's Swift keeps versions (object_versioning): both buckets were asked to.
    assert made.stdout.count("versioning enabled") == 2, made.stdout
    # It keeps no lifecycle rules (s3api has none), so the deploy says old versions stay.
    assert made.stdout.count("keeps no lifecycle rules") == 2, made.stdout
    data = work / "data"
    assert _pg(work, env, "initdb", "-D", str(data)).returncode == 0
    conf = render("pyinfra/templates/postgresql.conf.j2", shared_buffers="32MB",
                  **backup.postgres_context())  # fmt: skip
    with (data / "postgresql.conf").open("a") as out:
        out.write(conf + f"port = {env['PGPORT']}\nunix_socket_directories = '{work}'\n")
        out.write("listen_addresses = ''\nmax_connections = 20\n")
    started = _pg(work, env, "pg_ctl", "-D", str(data), "-l", str(work / "pg.log"), "-w", "start")
    assert started.returncode == 0, started.stderr
    try:
        for step in ("stanza-create", "check"):
            done = _as_pg(env, "pgbackrest", "--stanza=appliance", step)
            assert done.returncode == 0, done.stdout + done.stderr
        done = _as_pg(env, "pgbackrest", "--stanza=appliance", "--type=full", "backup")
        assert done.returncode == 0, done.stdout + done.stderr
        psql = ("psql", "-XAt", "-d", "postgres", "-c")
        assert (
            _as_pg(env, *psql, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)").returncode == 0
        )
        target = _as_pg(env, *psql, "SELECT now()").stdout.strip()
        time.sleep(1.5)
        assert _as_pg(env, *psql, "INSERT INTO t VALUES (2)").returncode == 0
        done = _as_pg(env, "pgbackrest", "--stanza=appliance", "check")  # WAL switched, archived
        assert done.returncode == 0, done.stdout + done.stderr
        info = _as_pg(env, "pgbackrest", "--stanza=appliance", "--output=json", "info")
        metrics = backup_tool.render_metrics(json.loads(info.stdout), None, 3600, time.time())
        assert "pgbackrest_repo_up 1" in metrics.splitlines()
        assert 'pgbackrest_backup_last_good_completion_seconds{type="full"}' in metrics
    finally:
        _pg(work, env, "pg_ctl", "-D", str(data), "-m", "fast", "stop")
    # The restore: a fresh directory, up to the target, promoted; the later row absent.
    restored = work / "restored"
    restored.mkdir(mode=0o700)
    shutil.chown(restored, "postgres", "postgres")
    point = ("--type=time", f"--target={target}", "--target-action=promote")
    done = _as_pg(env, "pgbackrest", "--stanza=appliance", f"--pg1-path={restored}", *point,
                  "restore")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with (restored / "postgresql.conf").open("a") as out:
        out.write("archive_mode = off\n")  # never into the repository it came from
    started = _pg(work, env, "pg_ctl", "-D", str(restored), "-l", str(work / "r.log"), "-w",
                  "-t", "120", "start")  # fmt: skip
    assert started.returncode == 0, (work / "r.log").read_text()[-3000:]
    try:
        deadline = time.monotonic() + 60
        while _as_pg(env, *psql, "SELECT pg_is_in_recovery()").stdout.strip() != "f":
            assert time.monotonic() < deadline, (work / "r.log").read_text()[-3000:]
            time.sleep(0.5)
        assert _as_pg(env, *psql, "SELECT array_agg(n) FROM t").stdout.strip() == "{1}"
    finally:
        _pg(work, env, "pg_ctl", "-D", str(restored), "-m", "fast", "stop")
    client = Minio(*(json.loads((work / "s3.json").read_text())["s3"][k]
                     for k in ("endpoint", "access_key", "secret_key")),
                   secure=False, region="us-east-1")  # fmt: skip
    bucket = json.loads((work / "s3.json").read_text())["s3"]["bucket"]
    assert client.get_bucket_versioning(bucket).status == "Enabled"
