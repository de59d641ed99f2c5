"""Every file the roles write, rendered from the lab fleet and checked by the tool that
reads it: nginx -t, systemd-analyze verify, promtool, nft -c, redis-server, postgres, and
the app's own settings parser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fleet.render import render
from fleet.wheelhouse import Release
from roles import api, app, base, db, lb, monitoring, rolling, storage, worker

from appliance.security.limits import client_address, networks
from appliance.settings import Settings
from tests.deploy.unit.conftest import make_fleet


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


# -- nginx ----------------------------------------------------------------------------------
@pytest.fixture
def nginx_prefix(tmp_path: Path) -> Path:
    """An nginx prefix whose nginx.conf includes the two rendered files, with a real cert."""
    assert shutil.which("nginx"), "nginx is needed (scripts/install.sh --dev)"
    (tmp_path / "logs").mkdir()
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    made = _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-keyout", str(key), "-out", str(cert), "-subj", "/CN=lab")  # fmt: skip
    assert made.returncode == 0, made.stderr
    return tmp_path


def _nginx_files(fleet, prefix: Path) -> tuple[str, str]:
    site = render("nginx/appliance.conf.j2", **lb.site_context(fleet))
    site = site.replace(lb.CERT, str(prefix / "c.pem")).replace(lb.KEY, str(prefix / "k.pem"))
    site = site.replace("/var/log/nginx/", f"{prefix}/logs/")
    upstream = render("nginx/appliance-upstream.conf.j2", **lb.upstream_context(fleet))
    return site, upstream


def _nginx_t(prefix: Path, site: str, upstream: str) -> subprocess.CompletedProcess[str]:
    (prefix / "site.conf").write_text(site)
    (prefix / "upstream.conf").write_text(upstream)
    (prefix / "nginx.conf").write_text(
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\n"
        "events {}\nhttp {\n"
        f"  access_log {prefix}/logs/access.log;\n"
        f"  include {prefix}/upstream.conf;\n  include {prefix}/site.conf;\n}}\n"
    )
    return _run("nginx", "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"))


def test_nginx_config_passes_nginx_t(fleet, nginx_prefix):
    result = _nginx_t(nginx_prefix, *_nginx_files(fleet, nginx_prefix))
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_nginx_limits_match_the_app(fleet, nginx_prefix):
    site, upstream = _nginx_files(fleet, nginx_prefix)
    limit = int(re.search(r"client_max_body_size (\d+);", site)[1])
    assert limit == fleet.get("max_upload_bytes") + 1024 * 1024  # the app's multipart slack
    upload = site[site.index("location /v2/upload/") :]
    assert "proxy_request_buffering off;" in upload[: upload.index("}")]
    (retry,) = re.findall(r"\n\s*proxy_next_upstream ([^;]*);", site)
    assert retry.startswith("error timeout") and "non_idempotent" not in retry
    assert "rid=$request_id" in site and "X-Request-ID $request_id" in site
    assert "keepalive 32;" in upstream
    assert upstream.count("max_fails=2") == 2


def test_every_tls_response_asks_browsers_for_tls_only(fleet, nginx_prefix):
    site, _ = _nginx_files(fleet, nginx_prefix)
    plain, tls = site.split("listen 443", 1)
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in tls
    assert "Strict-Transport-Security" not in plain  # meaningless over plain HTTP
    locations = re.findall(r"\n\s*location [^{]*\{[^}]*\}", tls)
    assert locations and not any("add_header" in block for block in locations)


def test_upstream_idle_connections_close_on_nginx_side_first(fleet, nginx_prefix):
    """granian closes an idle keep-alive connection after its header read timeout (30 s,
    measured); nginx must drop its idle ones before that, or a request it sends on one the
    api host just closed fails."""
    _, upstream = _nginx_files(fleet, nginx_prefix)
    seconds = int(re.search(r"keepalive_timeout (\d+)s;", upstream)[1])
    assert seconds == api.UPSTREAM_KEEPALIVE_SECONDS < 30
    fails = re.findall(r"max_fails=(\d+) fail_timeout=(\d+)s;", upstream)
    assert fails == [(str(api.UPSTREAM_MAX_FAILS), str(api.UPSTREAM_FAIL_TIMEOUT_SECONDS))] * 2


def test_rolling_refusal_ruleset_passes_nft_check():
    ruleset = rolling.refuse_command(8080).split("echo '")[1].split("' | nft")[0]
    checked = _run("nft", "-c", "-f", "-", input=ruleset)
    assert checked.returncode == 0, checked.stderr
    assert "tcp dport 8080 ct state new reject with tcp reset" in ruleset
    assert 'iif "lo" accept' in ruleset.split("reject")[0]


NETNS_CONNECTION = """
import socket, subprocess, sys
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", "10.254.0.1/32", "dev", "lo"], check=True)
listener = socket.create_server(("10.254.0.1", 8080))
client = socket.create_connection(("10.254.0.1", 8080), source_address=("10.254.0.1", 0))
peer, _ = listener.accept()
for own_ip in sys.argv[1:]:
    done = subprocess.run(["sh", "-c", own_ip], capture_output=True, text=True, timeout=30)
    print(done.returncode, "open" if "still open" in done.stderr else "gone")
client.close(); peer.close()
"""


def test_rolling_waits_for_connections_from_other_hosts_only():
    """In a network namespace of its own: one established connection to :8080 whose peer
    is 10.254.0.1. Seen from a host with another address it is a connection to wait for;
    from 10.254.0.1 itself it is local and ignored."""
    other = rolling.connections_gone_command("10.254.0.2", 8080, 2)
    own = rolling.connections_gone_command("10.254.0.1", 8080, 2)
    done = _run("unshare", "-n", "python3", "-c", NETNS_CONNECTION, other, own)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["0 open", "0 gone"]


STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$STUB_LOG"
if [ "$(basename "$0")" = ss ] && [ -f "$STUB_LOG.busy" ]; then
    echo "ESTAB 0 0 10.200.0.12:8080 10.200.0.11:4000"
fi
exit 0
"""


def _stubbed(command: str, tmp_path: Path, busy: bool = False) -> list[str]:
    """Runs ``command`` with every program it changes the host with replaced by a stub
    that logs its arguments; the log, one program call per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("touch", "nft", "ss", "ln", "mv", "rm", "systemctl", "curl", "sleep"):
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    if busy:
        (tmp_path / "calls.log.busy").touch()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_LOG": str(log)}
    done = _run("sh", "-c", command, env=env)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


def test_rolling_commands_run_every_step_in_order(fleet, tmp_path):
    """The whole chain runs: a step that exits (the ready wait) must not end the command
    before the refusal is lifted (it once did, and the host stayed out of the upstream)."""
    me = fleet.host("h2")
    drain = [c.split()[0] for c in _stubbed(rolling.drain_command(me.ip, 8080), tmp_path)]
    assert drain == ["touch", "nft", "nft", "ss"]  # no connection left: no wait
    release = Release(id="0123456789abcdef", wheelhouse=Path("/nowhere"), app_wheel="a.whl")
    calls = _stubbed(rolling.restart_command(fleet, me, release), tmp_path)
    assert [c.split()[0] for c in calls] == [
        "ln", "mv", "rm", "systemctl", "systemctl", "curl", "nft",
    ]  # fmt: skip
    assert calls[-1] == "nft delete table inet appliance_drain"
    # Between hosts: nginx's fail_timeout, then until traffic is back (here at once).
    back = _stubbed(rolling.back_in_use_command(me.ip, 8080), tmp_path, busy=True)
    assert back == [f"sleep {api.UPSTREAM_FAIL_TIMEOUT_SECONDS + 1}", back[1]]
    assert back[1].startswith("ss -Htn state established")


def test_rolling_drain_and_restart_commands_use_the_drain_file_the_app_reads(fleet):
    env = render("pyinfra/templates/appliance.env.j2", **app.env_context(fleet, fleet.host("h2")))
    assert f'APPLIANCE_DRAIN_FILE="{app.DRAIN_FILE}"' in env
    me = fleet.host("h2")
    drain = rolling.drain_command(me.ip, 8080)
    assert drain.startswith(f"touch {app.DRAIN_FILE} && ")
    restart = rolling.restart_command(
        fleet, me, Release(id="0123456789abcdef", wheelhouse=Path("/nowhere"), app_wheel="a.whl")
    )
    # The drain file goes before the restart (the new process must not start draining),
    # the refusal only after the host answers ready.
    assert restart.index(f"rm -f {app.DRAIN_FILE}") < restart.index("systemctl restart")
    assert restart.index("/health/ready") < restart.index(rolling.unrefuse_command())


# -- systemd ----------------------------------------------------------------------------------
@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    """The unit's ExecStart must exist for systemd-analyze verify."""
    binary = tmp_path / "opt" / "current" / "bin" / "appliance"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return tmp_path / "opt"


def _verify(unit_dir: Path, *units: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("systemd-analyze"), "systemd is needed for systemd-analyze"
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice"}
    return _run("systemd-analyze", "verify", "--man=no", *[str(unit_dir / u) for u in units],
                env=env)  # fmt: skip


HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
             "ReadWritePaths=/var/lib/appliance", "Restart=on-failure")  # fmt: skip


def test_api_unit_is_hardened_and_verifies(fleet, app_root, tmp_path):
    text = render("systemd/appliance-api.service.j2", app_user="appliance",
                  app_root=str(app_root), memory_max="1G")  # fmt: skip
    assert all(line in text.splitlines() for line in HARDENING)
    assert "MemoryMax=1G" in text
    (tmp_path / "appliance-api.service").write_text(text)
    result = _verify(tmp_path, "appliance-api.service")
    assert result.returncode == 0, result.stderr


def test_worker_template_verifies_for_each_queue_and_stops_gracefully(fleet, app_root, tmp_path):
    me = fleet.host("h4")
    context = worker.unit_context(fleet, me, "light") | {"app_root": str(app_root)}
    text = render("systemd/appliance-worker@.service.j2", **context)
    assert all(line in text.splitlines() for line in HARDENING)
    assert "KillSignal=SIGTERM" in text
    assert f"TimeoutStopSec={fleet.get('worker_stop_seconds')}" in text
    assert f"TasksMax={fleet.get('worker_tasks_max')}" in text.splitlines()
    (tmp_path / "appliance-worker@.service").write_text(text)
    for queue in ("light", "office", "media"):
        os.link(
            tmp_path / "appliance-worker@.service", tmp_path / f"appliance-worker@{queue}.service"
        )
    result = _verify(tmp_path, "appliance-worker@light.service", "appliance-worker@media.service")
    assert result.returncode == 0, result.stderr


def test_minio_unit_verifies(tmp_path):
    binary = tmp_path / "minio"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    text = render("systemd/minio.service.j2", minio_bin=str(binary), data_dir=storage.DATA_DIR,
                  memory_max="2G")  # fmt: skip
    assert "ReadWritePaths=/var/lib/minio" in text and "NoNewPrivileges=yes" in text
    (tmp_path / "minio.service").write_text(text)
    result = _verify(tmp_path, "minio.service")
    assert result.returncode == 0, result.stderr


# -- the app's settings ---------------------------------------------------------------------
def _env(text: str) -> dict[str, str]:
    """The file as sh reads it (the `appliance` wrapper sources it; systemd agrees)."""
    out = subprocess.run(["sh", "-c", "set -a; . /dev/stdin; env -0"], input=text,
                         capture_output=True, text=True, env={}, check=True).stdout  # fmt: skip
    return dict(item.split("=", 1) for item in out.split("\0") if item.startswith("APPLIANCE_"))


def test_the_app_settings_file_is_accepted_by_the_app(fleet):
    me = fleet.host("h2")
    env = _env(render("pyinfra/templates/appliance.env.j2", **app.env_context(fleet, me)))
    settings = Settings.from_env(env)
    assert settings.host == "10.200.1.2" and settings.storage == "s3"
    assert settings.database_url == fleet.database_url
    assert "prefer-standby" in settings.database_read_url
    assert settings.secret_key == fleet.secrets["secret_key"]
    assert settings.max_upload_bytes == fleet.get("max_upload_bytes")
    assert settings.max_jobs_in_flight_per_user == 500  # the app's default
    # a request through the lb counts against the client's address, not the lb's
    lb_ip = fleet.host("h1").ip
    assert settings.trusted_proxies == lb_ip
    trusted = networks(settings.trusted_proxies)
    assert client_address(lb_ip, "198.51.100.7", trusted) == "198.51.100.7"
    capped = make_fleet(max_jobs_in_flight_per_user=0, max_stored_bytes_per_user=7,
                        s3_external={"endpoint": "10.200.0.1:9000"})  # fmt: skip
    env = _env(render("pyinfra/templates/appliance.env.j2",
                      **app.env_context(capped, capped.host("h2"))))  # fmt: skip
    settings = Settings.from_env(env)
    assert (settings.max_jobs_in_flight_per_user, settings.max_stored_bytes_per_user) == (0, 7)


def test_worker_instance_settings_use_the_contract_ports(fleet):
    conf = fleet.queues(fleet.host("h5"))
    assert list(conf) == ["light"]
    text = render("pyinfra/templates/worker.env.j2", queue="light", listen_ip="10.200.1.5",
                  **conf["light"])  # fmt: skip
    env = _env(text)
    assert env["APPLIANCE_WORKER_METRICS_PORT"] == "9181"
    assert env["APPLIANCE_WORKER_METRICS_HOST"] == "10.200.1.5"


# -- Prometheus -------------------------------------------------------------------------------
def test_prometheus_config_passes_promtool(fleet, tmp_path):
    assert shutil.which("promtool"), "promtool is needed (Debian package prometheus)"
    text = render("pyinfra/templates/prometheus.yml.j2", **monitoring.prometheus_context(fleet))
    path = tmp_path / "prometheus.yml"
    path.write_text(text.replace("/etc/prometheus/rules/appliance", str(tmp_path / "rules")))
    (tmp_path / "rules").mkdir()
    for name, rules in monitoring.rule_texts(fleet).items():
        (tmp_path / "rules" / name).write_text(rules)
    result = _run("promtool", "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    for job in fleet.scrape_targets():
        if fleet.scrape_targets()[job]:
            assert f"job_name: {job}" in text


def test_the_fleets_objectives_and_runbook_shape_the_alerts(tmp_path):
    fleet = make_fleet(
        slo_objectives={"latency": 0.99}, runbook_url="https://git.example/ops/RUNBOOK.md"
    )
    texts = monitoring.rule_texts(fleet)
    assert set(texts) == {p.name for p in monitoring.rule_files()}
    # 14.4 x a 1% latency budget; availability keeps its 0.1% one
    assert 'ratio_rate1h{slo="latency"} > 0.144 and' in texts["slo.yml"]
    assert 'ratio_rate1h{slo="availability"} > 0.0144 and' in texts["slo.yml"]
    for text in texts.values():
        assert "monitoring/RUNBOOK.md#" not in text
        assert "runbook_url: https://git.example/ops/RUNBOOK.md#" in text.replace('"', "")
    (tmp_path / "slo.yml").write_text(texts["slo.yml"])
    result = _run("promtool", "check", "rules", str(tmp_path / "slo.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


# -- firewall -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["h1", "h2", "h4", "h6"])
def test_firewall_rules_pass_nft_check(fleet, tmp_path, name):
    assert shutil.which("nft"), "nft is needed (Debian package nftables)"
    me = fleet.host(name)
    text = render("pyinfra/templates/nftables.conf.j2", **base.firewall_context(fleet, me))
    path = tmp_path / "rules.nft"
    path.write_text(text)
    result = _run("nft", "-c", "-f", str(path))  # -c: checked, never loaded
    assert result.returncode == 0, result.stderr
    assert "policy drop" in text


# -- Redis --------------------------------------------------------------------------------------
def test_redis_config_starts_with_aof_and_a_password(tmp_path):
    from appliance.local_services import free_port

    port = free_port()
    conf = render("pyinfra/templates/redis.conf.j2", listen_ip="127.0.0.1", password="pw",
                  maxmemory="64mb")  # fmt: skip
    (tmp_path / "redis.conf").write_text(conf)
    proc = subprocess.Popen(
        ["redis-server", str(tmp_path / "redis.conf"), "--port", str(port), "--dir",
         str(tmp_path), "--pidfile", str(tmp_path / "r.pid"), "--logfile", "",
         "--supervised", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import redis

        client = redis.Redis(port=port, password="pw")
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                import time

                time.sleep(0.05)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
    finally:
        proc.terminate()
        proc.wait(10)


# -- PostgreSQL ---------------------------------------------------------------------------------
def test_postgres_settings_parse_and_enable_streaming_replication(fleet, work_root):
    bindir = Path("/usr/lib/postgresql") / str(fleet.get("postgres_version")) / "bin"
    if not bindir.exists():  # the machine's own major version (the hosts get theirs)
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    data = work_root / "deploy-pgconf"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    assert _run(*as_pg, str(bindir / "initdb"), "-D", str(data)).returncode == 0
    conf = render("pyinfra/templates/postgresql.conf.j2", shared_buffers=db.SHARED_BUFFERS)
    (data / "appliance.conf").write_text(conf)
    with (data / "postgresql.conf").open("a") as out:
        out.write("include 'appliance.conf'\n")
    for name, want in [("wal_level", "replica"), ("hot_standby", "on"),
                       ("max_replication_slots", "10")]:  # fmt: skip
        got = _run(*as_pg, str(bindir / "postgres"), "-D", str(data), "-C", name)
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == want


def test_pg_hba_lets_app_hosts_and_replicas_in_only(fleet):
    text = render("pyinfra/templates/pg_hba.conf.j2", **db.hba_context(fleet))
    app_lines = [line.split() for line in text.splitlines() if line.startswith("host    appliance")]
    assert sorted(line[3] for line in app_lines) == [
        "10.200.1.2/32", "10.200.1.3/32", "10.200.1.4/32", "10.200.1.5/32", "10.200.1.6/32"
    ]  # fmt: skip
    repl = [line.split()[3] for line in text.splitlines() if " replication " in line]
    assert repl == ["10.200.1.4/32", "10.200.1.6/32"]
    assert all(line[-1] == "scram-sha-256" for line in app_lines)


def test_db_setup_sql_is_idempotent_on_a_real_server(fleet, postgres_server):
    fleet.secrets["db_password"] = "pw1"
    sql = db.setup_sql(fleet).replace("'appliance'", "'deploytest'")
    sql = re.sub(r"\bappliance\b", "deploytest", sql)
    sql = re.sub(r"(?s)SELECT pg_create_physical_replication_slot.*?;\n", "", sql)
    for _ in range(2):
        result = _run("psql", postgres_server, "-q", "-v", "ON_ERROR_STOP=1", input=sql)
        assert result.returncode == 0, result.stderr
    check = _run("psql", postgres_server, "-Atc",
                 "SELECT count(*) FROM pg_database WHERE datname = 'deploytest'")  # fmt: skip
    assert check.stdout.strip() == "1"
