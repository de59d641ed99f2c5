"""Every file the roles write, rendered from the lab fleet and checked by the tool that
reads it: nginx -t, systemd-analyze verify, promtool, nft -c, redis-server, postgres, and
the app's own settings parser."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from fleet import minio
from fleet.model import FleetError
from fleet.render import render
from fleet.wheelhouse import Release
from roles import api, app, backup, base, db, lb, monitoring, redis, rolling, storage, worker

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
    tls = site.split("listen 443", 1)[1]
    (retry,) = re.findall(r"\n    proxy_next_upstream ([^;]*);", tls)  # the server's own
    assert retry.startswith("error timeout") and "non_idempotent" not in retry
    assert "rid=$request_id" in site and "X-Request-ID $request_id" in site
    assert "keepalive 32;" in upstream
    assert upstream.count("max_fails=2") == 2


def _locations(tls: str) -> dict[str, str]:
    """location -> its directives (up to its first nested block)."""
    return dict(re.findall(r"\n\s*location ([^{]*?)\s*\{([^}]*)\}", tls))


def test_only_posts_with_an_idempotency_key_are_resent_after_reaching_a_host(fleet, nginx_prefix):
    """A POST a dying api host received may have made its job: nginx resends it to another
    host only with an Idempotency-Key (the app then answers with the first job); keyless
    POSTs and uploads (streamed, so impossible to resend) keep the plain retry policy."""
    site, _ = _nginx_files(fleet, nginx_prefix)
    keyed = re.search(
        r'map "\$request_method:\$http_idempotency_key" \$idempotent_post \{([^}]*)\}', site
    )
    assert keyed and "default 0;" in keyed[1] and '"~^POST:." 1;' in keyed[1]
    api_server = site.split("listen 443", 1)[1].split("listen 127.0.0.1:8081")[0]
    blocks = _locations(api_server)
    rewrite = "if ($idempotent_post) {\n            rewrite ^ /_idempotent$uri last;"
    for where in ("/", "/sync/"):
        assert rewrite in blocks[where], where
    assert "idempotent" not in blocks["/v2/upload/"]
    for where in ("/_idempotent/", "/_idempotent/sync/"):
        assert "internal;" in blocks[where]
        (retry,) = re.findall(r"proxy_next_upstream ([^;]*);", blocks[where])
        assert retry == "error timeout http_502 http_504 non_idempotent", where
        assert "proxy_pass http://appliance_api$request_uri;" in blocks[where]
    sync = fleet.get("sync_timeout_seconds") + 15
    assert f"proxy_read_timeout {sync}s;" in blocks["/_idempotent/sync/"]
    assert "proxy_read_timeout" not in blocks["/_idempotent/"]  # the server's: as "/"
    resent = [b for b in blocks.values() if "non_idempotent" in b]
    assert len(resent) == 2  # no other location resends a POST


def test_every_tls_response_asks_browsers_for_tls_only(fleet, nginx_prefix):
    site, _ = _nginx_files(fleet, nginx_prefix)
    plain, tls = site.split("listen 443", 1)
    assert 'add_header Strict-Transport-Security "max-age=31536000" always;' in tls
    assert "Strict-Transport-Security" not in plain  # meaningless over plain HTTP
    locations = re.findall(r"\n\s*location [^{]*\{[^}]*\}", tls)
    assert locations and not any("add_header" in block for block in locations)


def test_only_blocking_routes_wait_longer_than_the_api_read_timeout(fleet, nginx_prefix):
    """A request in flight on an api host that died is given up after the read timeout (and
    an idempotent one sent to another host); the routes that wait for a job by design (the
    sync API, /wait, signed URLs) wait up to the app's sync timeout instead."""
    site, _ = _nginx_files(fleet, nginx_prefix)
    tls = site.split("listen 443", 1)[1]
    general = tls[: tls.index("\n    location ")]
    read = fleet.get("api_read_timeout_seconds")
    assert f"proxy_read_timeout {read}s;" in general
    assert f"proxy_next_upstream_timeout {read + 15}s;" in general  # room to retry after it
    blocks = dict(re.findall(r"\n\s*location ([^{]*?)\s*\{([^}]*)\}", tls))
    sync = fleet.get("sync_timeout_seconds") + 15
    for where in ("/sync/", "~ ^/v2/(jobs|tasks)/[^/]+/wait$", "/v2/s/"):
        assert f"proxy_read_timeout {sync}s;" in blocks[where], where
    assert "proxy_read_timeout" not in blocks["/"]


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
                  app_root=str(app_root), memory_max="1G",
                  api_env_file="/etc/appliance/api.env")  # fmt: skip
    assert "EnvironmentFile=/etc/appliance/api.env" in text
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
    assert (settings.job_retention_hours, settings.idempotency_key_hours) == (24.0, 24.0)
    capped = make_fleet(max_jobs_in_flight_per_user=0, max_stored_bytes_per_user=7,
                        job_retention_hours=0.05, idempotency_key_hours=2,
                        s3_external={"endpoint": "10.200.0.1:9000"})  # fmt: skip
    env = _env(render("pyinfra/templates/appliance.env.j2",
                      **app.env_context(capped, capped.host("h2"))))  # fmt: skip
    settings = Settings.from_env(env)
    assert (settings.max_jobs_in_flight_per_user, settings.max_stored_bytes_per_user) == (0, 7)
    assert (settings.job_retention_hours, settings.idempotency_key_hours) == (0.05, 2.0)


def test_worker_instance_settings_use_the_contract_ports_and_the_worker_redis_user(fleet):
    conf = fleet.queues(fleet.host("h5"))
    assert list(conf) == ["light"]
    text = render("pyinfra/templates/worker.env.j2", queue="light", listen_ip="10.200.1.5",
                  redis_url=fleet.redis_url("worker"), clamd_socket=worker.CLAMD_SOCKET,
                  **conf["light"])  # fmt: skip
    env = _env(text)
    assert env["APPLIANCE_WORKER_METRICS_PORT"] == "9181"
    assert env["APPLIANCE_WORKER_METRICS_HOST"] == "10.200.1.5"
    assert env["APPLIANCE_REDIS_URL"].startswith("redis://worker:")


def test_the_api_gets_its_own_redis_user(fleet):
    shared = _env(render("pyinfra/templates/appliance.env.j2",
                         **app.env_context(fleet, fleet.host("h2"))))  # fmt: skip
    assert "APPLIANCE_REDIS_URL" not in shared  # workers on the host must not get the api's
    env = _env(api.api_env_text(fleet))
    settings = Settings.from_env({**shared, **env})
    assert settings.redis_url == fleet.redis_url("api")
    assert settings.redis_url.startswith("redis://api:")
    assert settings.trusted_proxies == fleet.host("h1").ip


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


def test_a_test_fleet_may_shorten_every_alerts_hold_and_production_keeps_them(tmp_path):
    def holds(texts: dict[str, str]) -> list[str]:
        return [h for t in texts.values() for h in re.findall(r"^\s+for: (\S+)$", t, re.M)]

    kept = holds(monitoring.rule_texts(make_fleet()))
    assert kept == holds({p.name: p.read_text() for p in monitoring.rule_files()})
    assert "2m" in kept and "10m" in kept
    texts = monitoring.rule_texts(make_fleet(alert_for_scale=0.25))
    seconds = {"s": 1, "m": 60, "h": 3600}
    assert holds(texts) == [f"{int(h[:-1]) * seconds[h[-1]] // 4}s" for h in kept]
    for name, text in texts.items():  # still rules Prometheus loads
        (tmp_path / name).write_text(text)
        result = _run("promtool", "check", "rules", str(tmp_path / name))
        assert result.returncode == 0, result.stdout + result.stderr
    with pytest.raises(ValueError, match="alert_for_scale"):
        monitoring.rule_texts(make_fleet(alert_for_scale=0))


def _minio_fleet():
    fleet = make_fleet()
    host = fleet.hosts[5]
    fleet.hosts[5] = type(host)(host.name, host.groups | {"storage"}, host.data)
    return fleet


def test_minio_metrics_need_a_token_and_prometheus_sends_its_own(tmp_path):
    fleet = _minio_fleet()
    env = render("pyinfra/templates/minio.default.j2", data_dir="/var/lib/minio",
                 listen_ip="10.200.1.6", root_password="r", kms_key="k")  # fmt: skip
    assert re.findall(r"^MINIO_PROMETHEUS_AUTH_TYPE=(.*)$", env, re.M) == ["jwt"]
    text = render("pyinfra/templates/prometheus.yml.j2", **monitoring.prometheus_context(fleet))
    config = yaml.safe_load(text)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "minio"]
    assert job["authorization"] == {"type": "Bearer",
                                    "credentials_file": monitoring.MINIO_TOKEN_FILE}  # fmt: skip
    others = [j for j in config["scrape_configs"] if j["job_name"] != "minio"]
    assert all("authorization" not in j for j in others)
    token = tmp_path / "minio.token"
    token.write_text(minio.metrics_token(fleet.secrets["minio_prometheus_password"]))
    path = tmp_path / "prometheus.yml"
    path.write_text(text.replace(monitoring.MINIO_TOKEN_FILE, str(token)))
    result = _run("promtool", "check", "config", "--syntax-only", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_minio_token_is_an_hs512_jwt_of_the_metrics_user_signed_with_its_secret():
    secret = "s3cret-minio-prometheus-password"
    token = minio.metrics_token(secret)
    assert token == minio.metrics_token(secret)  # a re-run writes the same file
    assert token != minio.metrics_token(secret + "x")
    header, claims, signature = token.split(".")

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    assert json.loads(decode(header)) == {"alg": "HS512", "typ": "JWT"}
    body = json.loads(decode(claims))
    assert body["sub"] == "prometheus" and body["iss"] == "prometheus"
    assert body["exp"] > time.time() + 50 * 365 * 86400
    mac = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha512).digest()
    assert hmac.compare_digest(decode(signature), mac)


def test_minio_setup_gives_prometheus_a_metrics_only_user():
    fleet = _minio_fleet()
    script = render("pyinfra/templates/minio-setup.sh.j2",
                    **storage.setup_context(fleet, fleet.host("h6")))  # fmt: skip
    policy = re.search(r"metrics-policy.json\" <<'POLICY'\n(.*?)\nPOLICY", script, re.S)
    assert policy, script
    statement = json.loads(policy[1])["Statement"]
    assert statement == [{"Effect": "Allow", "Action": ["admin:Prometheus"]}]
    assert f"user add local prometheus '{fleet.secrets['minio_prometheus_password']}'" in script
    assert "attach local appliance-metrics --user prometheus" in script


# -- firewall -----------------------------------------------------------------------------------
def _nft_check(text: str, tmp_path: Path) -> None:
    assert shutil.which("nft"), "nft is needed (Debian package nftables)"
    path = tmp_path / "rules.nft"
    path.write_text(text)
    result = _run("nft", "-c", "-f", str(path))  # -c: checked, never loaded
    assert result.returncode == 0, result.stderr


def _ssh_rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "dport 22 " in line]


@pytest.mark.parametrize("name", ["h1", "h2", "h4", "h6"])
def test_firewall_rules_pass_nft_check(fleet, tmp_path, name):
    me = fleet.host(name)
    context = base.firewall_context(fleet, me, "203.0.113.7")
    text = render("pyinfra/templates/nftables.conf.j2", **context)
    _nft_check(text, tmp_path)
    assert "policy drop" in text


def test_ssh_is_let_in_only_from_the_deploy_s_own_address_by_default(fleet, tmp_path):
    me = fleet.host("h2")
    text = render("pyinfra/templates/nftables.conf.j2",
                  **base.firewall_context(fleet, me, "203.0.113.7\n"))  # fmt: skip
    _nft_check(text, tmp_path)
    assert _ssh_rules(text) == ["ip saddr 203.0.113.7/32 tcp dport 22 accept"]
    v6 = base.firewall_context(fleet, me, "2001:db8::5")["ssh_sources"]
    assert v6 == ["2001:db8::5/128"]


def test_ssh_is_let_in_from_the_admin_networks_when_set(tmp_path):
    fleet = make_fleet(admin_networks=["198.51.100.0/24", "2001:db8:1::/48", "192.0.2.9"])
    text = render("pyinfra/templates/nftables.conf.j2",
                  **base.firewall_context(fleet, fleet.host("h1"), "203.0.113.7"))  # fmt: skip
    _nft_check(text, tmp_path)
    assert _ssh_rules(text) == [
        "ip saddr 192.0.2.9/32 tcp dport 22 accept",
        "ip saddr 198.51.100.0/24 tcp dport 22 accept",
        "ip6 saddr 2001:db8:1::/48 tcp dport 22 accept",
    ]
    assert "0.0.0.0/0" not in text and "::/0" not in text


def test_no_admin_networks_and_no_known_deploy_address_is_refused(fleet):
    with pytest.raises(FleetError, match="set admin_networks"):
        base.firewall_context(fleet, fleet.host("h1"), "")


def test_prometheus_and_grafana_listen_on_loopback_only(fleet):
    args = render("pyinfra/templates/prometheus.default.j2", retention="15d")
    assert re.findall(r"--web\.listen-address=(\S+)", args) == ["127.0.0.1:9090"]
    grafana = render("pyinfra/templates/grafana.default.j2", admin_password="x")
    assert re.findall(r"^GF_SERVER_HTTP_ADDR=(.*)$", grafana, re.M) == ["127.0.0.1"]
    assert all(9090 not in fleet.internal_ports(h) for h in fleet.hosts)
    assert all(3000 not in fleet.internal_ports(h) for h in fleet.hosts)


# -- Redis --------------------------------------------------------------------------------------
def test_redis_config_starts_with_aof_and_role_users(fleet, tmp_path):
    from appliance.local_services import free_port

    port = free_port()
    fleet.secrets["redis_admin_password"] = "pw"
    conf = render("pyinfra/templates/redis.conf.j2", **redis.conf_context(fleet, fleet.host("h2")))
    assert "requirepass" not in conf and fleet.secrets["redis_api_password"] not in conf
    (tmp_path / "redis.conf").write_text(conf)
    proc = subprocess.Popen(
        ["redis-server", str(tmp_path / "redis.conf"), "--port", str(port), "--dir",
         str(tmp_path), "--pidfile", str(tmp_path / "r.pid"), "--logfile", "",
         "--supervised", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import redis as redis_client

        client = redis_client.Redis(port=port, username="admin", password="pw")
        for _ in range(100):
            try:
                client.ping()
                break
            except redis_client.ConnectionError:
                time.sleep(0.05)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        with pytest.raises(redis_client.AuthenticationError):
            redis_client.Redis(port=port).ping()
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
    conf = render("pyinfra/templates/postgresql.conf.j2", shared_buffers=db.SHARED_BUFFERS,
                  **backup.postgres_context())  # fmt: skip
    (data / "appliance.conf").write_text(conf)
    with (data / "postgresql.conf").open("a") as out:
        out.write("include 'appliance.conf'\n")
    for name, want in [("wal_level", "replica"), ("hot_standby", "on"),
                       ("max_replication_slots", "10"), ("archive_mode", "on"),
                       ("archive_command", "pgbackrest --stanza=appliance archive-push %p"),
                       ("archive_timeout", "60")]:  # fmt: skip
        got = _run(*as_pg, str(bindir / "postgres"), "-D", str(data), "-C", name)
        assert got.returncode == 0, got.stderr
        assert got.stdout.strip() == want


def test_pg_hba_lets_app_hosts_replicas_and_the_failover_monitor_in_only(fleet):
    text = render("pyinfra/templates/pg_hba.conf.j2", **db.hba_context(fleet))
    rules = [line.split() for line in text.splitlines() if line.startswith("host ")]
    app_lines = [r for r in rules if r[1] == "appliance"]
    assert sorted(line[3] for line in app_lines) == [
        "10.200.1.2/32", "10.200.1.3/32", "10.200.1.4/32", "10.200.1.5/32", "10.200.1.6/32"
    ]  # fmt: skip
    repl = [r[3] for r in rules if r[2] == "pgautofailover_replicator"]
    assert repl == ["10.200.1.4/32"] * 2 + ["10.200.1.6/32"] * 2
    assert [r[1:4] for r in rules if r[2] == "pgautofailover_monitor"] == [
        ["postgres", "pgautofailover_monitor", "10.200.1.1/32"]
    ]
    assert all(r[-1] == "scram-sha-256" for r in rules)
    monitor = render("pyinfra/templates/pg_hba.monitor.conf.j2", keeper_sources=["10.200.1.4"])
    assert [line.split() for line in monitor.splitlines() if line.startswith("host")] == [
        ["host", "pg_auto_failover", "autoctl_node", "10.200.1.4/32", "scram-sha-256"]
    ]


def test_pg_auto_failover_passwords_are_in_pgpass_not_in_commands(fleet):
    for me in (fleet.host("h4"), None):
        command = db.create_command(fleet, me)
        assert "--ssl-self-signed --skip-pg-hba" in command
        assert not any(secret in command for secret in fleet.secrets.values())
    assert "--name h4 --monitor 'postgres://autoctl_node@10.200.1.1:5431/" in db.create_command(
        fleet, fleet.host("h4")
    )
    sql = db.monitor_sql(fleet)
    assert "ALTER ROLE autoctl_node PASSWORD 's3cret-autoctl-password';" in sql
    # the monitor promotes only after a cut-off primary has stopped by itself
    settings = db.MONITOR_SETTINGS
    assert settings["primary_demote_timeout"] > db.NETWORK_PARTITION_SECONDS * 1000
    assert f"pgautofailover.primary_demote_timeout = {settings['primary_demote_timeout']}" in sql


def test_pg_auto_failover_unit_verifies_and_runs_pg_autoctl_as_postgres(fleet, tmp_path):
    text = render("systemd/pgautofailover@.service.j2", version=15)
    lines = text.splitlines()
    assert "User=postgres" in lines and "ExecStart=/usr/bin/pg_autoctl run" in lines
    assert "Environment=PGDATA=/var/lib/postgresql/15/%i" in lines
    unit_file = tmp_path / "pgautofailover@.service"
    unit_file.write_text(text.replace("/usr/bin/pg_autoctl", "/bin/true"))
    os.link(unit_file, tmp_path / "pgautofailover@node.service")
    result = _verify(tmp_path, "pgautofailover@node.service")
    assert result.returncode == 0, result.stderr


def test_db_setup_sql_is_idempotent_on_a_real_server(fleet, postgres_server):
    fleet.secrets["db_password"] = "pw1"
    sql = db.setup_sql(fleet).replace("'appliance'", "'deploytest'")
    sql = re.sub(r"\bappliance\b", "deploytest", sql)
    for _ in range(2):
        result = _run("psql", postgres_server, "-q", "-v", "ON_ERROR_STOP=1", input=sql)
        assert result.returncode == 0, result.stderr
    check = _run("psql", postgres_server, "-Atc",
                 "SELECT count(*) FROM pg_database WHERE datname = 'deploytest'")  # fmt: skip
    assert check.stdout.strip() == "1"


# -- ClamAV (worker hosts) --------------------------------------------------------------------
def test_clamd_config_runs_a_real_clamd_that_the_workers_settings_reach(fleet, work_root):
    from appliance.scanning.clamd import Clamd
    from appliance.scanning.daemon import wait_ready
    from tests.harness.clamd import EICAR, write_signatures

    me = fleet.host("h5")
    text = render("pyinfra/templates/clamd.conf.j2", **worker.clamd_context(fleet, me))
    assert f"LocalSocket {worker.CLAMD_SOCKET}" in text and "LocalSocketGroup appliance" in text
    assert f"StreamMaxLength {fleet.get('max_upload_bytes') + 1024 * 1024}" in text
    # the same file, with this machine's paths and user, runs clamd
    here = work_root / "clamd-deploy"
    socket = here / "c.sock"
    local = text.replace(worker.CLAMD_SOCKET, str(socket)).replace("/var/lib/clamav", str(
        write_signatures(here / "db"))).replace("User clamav", "Foreground yes")  # fmt: skip
    local = local.replace("LocalSocketGroup appliance", "").replace("LogSyslog true", "")
    (here / "clamd.conf").write_text(local)
    proc = subprocess.Popen(["clamd", "--config-file", str(here / "clamd.conf")])
    try:
        wait_ready(proc, str(socket), 30)
        assert not Clamd(str(socket)).scan_bytes(EICAR).clean
    finally:
        proc.kill()
        proc.wait()
    queue_env = render("pyinfra/templates/worker.env.j2", queue="light", listen_ip=me.ip,
                       redis_url=fleet.redis_url("worker"), clamd_socket=worker.CLAMD_SOCKET,
                       **fleet.queues(me)["light"])  # fmt: skip
    env = _env(queue_env) | _env(render("pyinfra/templates/appliance.env.j2",
                                        **app.env_context(fleet, me)))  # fmt: skip
    settings = Settings.from_env(env)
    assert settings.virus_scan == "clamd" and settings.effective_clamd_socket == worker.CLAMD_SOCKET


def test_freshclam_config_is_accepted_by_clamconf(fleet, tmp_path):
    text = render("pyinfra/templates/freshclam.conf.j2", mirror="mirror.example.net")
    (tmp_path / "freshclam.conf").write_text(text)
    out = _run("clamconf", "-c", str(tmp_path)).stdout
    assert 'DatabaseMirror = "mirror.example.net"' in out


def test_scanning_off_leaves_the_workers_without_a_clamd_socket(fleet):
    me = fleet.host("h5")
    text = render("pyinfra/templates/worker.env.j2", queue="light", listen_ip=me.ip,
                  redis_url=fleet.redis_url("worker"), clamd_socket="",
                  **fleet.queues(me)["light"])  # fmt: skip
    assert "CLAMD" not in text
