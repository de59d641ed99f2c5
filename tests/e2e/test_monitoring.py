"""A real Prometheus, with the Debian exporters, scrapes a running appliance (API and worker
processes, a streaming replica of its Postgres, nginx in front of the API) while a small load
runs; then every PromQL expression of the dashboards and alert rules is evaluated through
Prometheus's HTTP API. Each must parse and return data that is a number: no panel may show
nothing. Scrapes and rule evaluations run every second so the test stays short.

Alert expressions have the form ``<query> <comparison> <threshold>``, or clauses of that
form joined by ``and`` / ``or`` (the burn-rate alerts): the whole expression must parse, and
each query must return data (the comparisons themselves are tested by promtool).

The burn-rate alerts must fire in a running appliance, through storms of real failures, not
of a route made for the test: a latency storm is requests waiting on a lock that a
long transaction holds on the jobs table (a slow database), a 5xx storm is requests reading
jobs from a view that is gone (a broken database; the deployment's database is this
module's own).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from appliance import local_services
from tests.e2e.conftest import Deployment, task, upload

# Its own deployment: it renames a view under the API to make it fail, and counts every
# conversion of the database.
OWN_DEPLOYMENT = True

ROOT = Path(__file__).parents[2]
RULES = ROOT / "monitoring" / "prometheus" / "rules"
PG_QUERIES = ROOT / "monitoring" / "prometheus" / "postgres-exporter" / "queries.yaml"
DASHBOARDS = ROOT / "monitoring" / "grafana" / "dashboards"
SCRAPE_INTERVAL = "1s"
# Jobs whose exporter may need more than the 1 s a scrape of every second allows: the postgres
# exporter queries every database on the server (0.85 s idle with 800 of them), and a failed
# scrape leaves its series stale, so queries for them come back empty.
SLOW_SCRAPES = {"postgres": "3s"}
# Grafana's variable, replaced for direct queries: a window holding many 1 s scrapes.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "5m"}
# Rule files whose metrics only a fleet has: pgBackRest's (backups.yml) come from db hosts'
# textfiles; tests/deploy/test_backups.py evaluates them against the lab fleet instead.
FLEET_ONLY_RULES = {"backups.yml"}


def rule_paths() -> list[Path]:
    return [p for p in sorted(RULES.glob("*.yml")) if p.name not in FLEET_ONLY_RULES]


pytestmark = pytest.mark.parametrize("deployment", ["local"], indirect=True)


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every dashboard target and alert or recording rule."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for var, value in GRAFANA_VARS.items():
                    expr = expr.replace(var, value)
                out.append((f"{path.name}: {panel['title']} [{target['refId']}]", expr))
    for path in rule_paths():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                out.append((f"{path.name}: {name}", rule["expr"]))
    return out


def alerts() -> set[str]:
    """``where`` (as in expressions()) of every alert rule."""
    return {
        f"{path.name}: {rule['alert']}"
        for path in rule_paths()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)")
# A set operator with its vector matching, if any (``and on (instance)``).
SET_OPERATOR = re.compile(r"\s(and|or|unless)\s+(?:(?:on|ignoring)\s*\([^)]*\)\s*)?")


def top_level(expr: str) -> list[int]:
    """Indexes of the characters of ``expr`` outside brackets and quotes."""
    depth, quoted, out = 0, False, []
    for i, ch in enumerate(expr):
        if ch == '"' and (i == 0 or expr[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch in "({[":
            depth += 1
        elif not quoted and ch in ")}]":
            depth -= 1
        elif not quoted and depth == 0:
            out.append(i)
    return out


def clauses(expr: str) -> list[str]:
    """The operands of the top-level ``and`` / ``or`` / ``unless`` of ``expr``."""
    cuts = [m for i in top_level(expr) if (m := SET_OPERATOR.match(expr, i))]
    starts = [0, *(m.end() for m in cuts)]
    ends = [*(m.start() for m in cuts), len(expr)]
    return [expr[a:b].strip() for a, b in zip(starts, ends, strict=True)]


def split_comparison(expr: str) -> tuple[str, str] | None:
    """(query, comparison + threshold) when the top level ends in a comparison with a
    number, else None."""
    last = None
    for i in top_level(expr):
        if COMPARISON.match(expr, i):
            last = i if last is None or i > last + 1 else last  # ">=" is one operator
    if last is None:
        return None
    rest = expr[last:]
    if not re.fullmatch(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.e-]+\s*", rest):
        return None
    return expr[:last].strip(), rest.strip()


def alert_queries(expr: str) -> list[str] | None:
    """The queries of an alert's clauses, or None when one is not <query> <cmp> <number>."""
    parts = [split_comparison(clause) for clause in clauses(expr)]
    return None if None in parts else [p[0] for p in parts if p is not None]


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    fh = open(log, "wb")  # noqa: SIM115  (the child keeps writing to it)
    return subprocess.Popen(
        cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def nginx_config(root: Path, port: int, status_port: int, upstream: str) -> Path:
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass {upstream}; }}
    }}
    server {{
        listen 127.0.0.1:{status_port};
        location = /stub_status {{ stub_status; }}
    }}
}}
"""
    )
    return conf


def start_replica(primary_url: str, work: Path) -> local_services.LocalService:
    """A hot-standby streaming replica of the harness's Postgres (pg_basebackup -R)."""
    runner = local_services._PgRunner(
        local_services._bindir_for(work / "none"), local_services._pg_owner()
    )
    data = work
    local_services._prepare_data_dir(runner, data)  # owned by the postgres user when root
    port = primary_url.rsplit(":", 1)[1].split("/")[0]
    res = runner.run(
        "pg_basebackup",
        *("-h", "127.0.0.1", "-p", port, "-U", "appliance", "-D", str(data)),
        *("-R", "-X", "stream", "-c", "fast"),  # -R: a standby; fast: no wait for a checkpoint
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return local_services.start_postgres(data, local_services.free_port(), fast=True)


@pytest.fixture(scope="module")
def monitored(
    deployment: Deployment, postgres_server, redis_server, work_root, tmp_path_factory
) -> Iterator:
    work = tmp_path_factory.mktemp("monitoring")
    work.chmod(0o755)
    ports = {name: local_services.free_port() for name in ("prom", "node", "pg", "pg2", "redis")}
    ports |= {n: local_services.free_port() for n in ("nginx", "stub", "nginx_exporter")}
    procs: list[subprocess.Popen] = []
    replica = start_replica(postgres_server, work_root / f"replica-{uuid.uuid4().hex[:8]}")
    try:
        redis_addr = redis_server.rsplit("/", 1)[0]
        exporters = [
            (
                [
                    "prometheus-node-exporter",
                    f"--web.listen-address=127.0.0.1:{ports['node']}",
                    "--collector.disable-defaults",
                    "--collector.cpu",
                    "--collector.meminfo",
                    "--collector.filesystem",
                ],
                None,
            ),
            (
                [
                    "prometheus-postgres-exporter",
                    f"--web.listen-address=127.0.0.1:{ports['pg']}",
                    f"--extend.query-path={PG_QUERIES}",
                ],
                {**os.environ, "DATA_SOURCE_NAME": postgres_server + "?sslmode=disable"},
            ),
            (
                [
                    "prometheus-postgres-exporter",
                    f"--web.listen-address=127.0.0.1:{ports['pg2']}",
                    f"--extend.query-path={PG_QUERIES}",
                ],
                {**os.environ, "DATA_SOURCE_NAME": replica.url + "?sslmode=disable"},
            ),
            (
                [
                    "prometheus-redis-exporter",
                    f"-redis.addr={redis_addr}",
                    f"-web.listen-address=127.0.0.1:{ports['redis']}",
                ],
                None,
            ),
        ]
        for i, (cmd, env) in enumerate(exporters):
            procs.append(start(cmd, work / f"exporter-{i}.log", env))
        conf = nginx_config(work / "nginx", ports["nginx"], ports["stub"], deployment.url)
        procs.append(
            start(
                ["nginx", "-c", str(conf), "-p", str(work / "nginx"), "-g", "daemon off;"],
                work / "nginx.log",
            )
        )
        wait_http(f"http://127.0.0.1:{ports['stub']}/stub_status", work, procs)
        procs.append(
            start(
                [
                    "prometheus-nginx-exporter",
                    f"-nginx.scrape-uri=http://127.0.0.1:{ports['stub']}/stub_status",
                    f"-web.listen-address=127.0.0.1:{ports['nginx_exporter']}",
                ],
                work / "nginx-exporter.log",
            )
        )
        worker_port = deployment.env["APPLIANCE_WORKER_METRICS_PORT"]
        api = "127.0.0.1:" + deployment.env["APPLIANCE_API_METRICS_PORT"]
        jobs = {
            "appliance-api": [api],
            "appliance-worker": [f"127.0.0.1:{worker_port}"],
            "node": [f"127.0.0.1:{ports['node']}"],
            "postgres": [f"127.0.0.1:{ports['pg']}", f"127.0.0.1:{ports['pg2']}"],
            "redis": [f"127.0.0.1:{ports['redis']}"],
            "nginx": [f"127.0.0.1:{ports['nginx_exporter']}"],
            "prometheus": [f"127.0.0.1:{ports['prom']}"],
        }
        procs.append(prometheus(work, jobs, ports["prom"]))
        prom = f"http://127.0.0.1:{ports['prom']}"
        wait_for_targets(prom, sum(len(t) for t in jobs.values()), work, procs)
        yield prom, f"http://127.0.0.1:{ports['nginx']}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        replica.stop()
        shutil.rmtree(work / "tsdb", ignore_errors=True)


def prometheus(work: Path, jobs: dict[str, list[str]], port: int) -> subprocess.Popen:
    """Prometheus with the repository's rules, scraping ``jobs`` every second (the slow ones
    every few)."""
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in sorted(RULES.glob("*.yml"))],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": targets}]}
            | (
                {"scrape_interval": SLOW_SCRAPES[name], "scrape_timeout": SLOW_SCRAPES[name]}
                if name in SLOW_SCRAPES
                else {}
            )
            for name, targets in jobs.items()
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    return start(
        [
            "prometheus",
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        work / "prometheus.log",
    )


def logs_of(work: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(work.glob("*.log")))


def wait_http(url: str, work: Path, procs: list) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"{p.args[0]} exited:\n{logs_of(work)}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer:\n{logs_of(work)}")


def wait_for_targets(prom: str, count: int, work: Path, procs: list) -> None:
    """Until every target has been scraped and is up (90 s at most: in a whole-suite run on a
    busy machine, no target had been scraped after 30 s)."""
    deadline = time.monotonic() + 90
    targets: list = []
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"{p.args[0]} exited:\n{logs_of(work)}"
        try:
            targets = httpx.get(prom + "/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
        except (httpx.HTTPError, ValueError):  # not listening, or not ready (503 text)
            targets = []
        if len(targets) == count and all(t["health"] == "up" for t in targets):
            return
        time.sleep(0.3)
    down = [(t["labels"]["job"], t["scrapeUrl"], t["lastError"]) for t in targets]
    raise AssertionError(f"targets not all up: {down}\n{logs_of(work)}")


def scraped(prom: str, times: int = 1, seconds: float = 30) -> None:
    """Return once every target has been scraped ``times`` more times from now (its ``up``
    sample's timestamp is later than the previous round's start): Prometheus's own record,
    not a guess at its interval."""
    for _ in range(times):
        since = time.time()
        deadline = time.monotonic() + seconds
        while True:
            oldest = numbers(query(prom, "min(timestamp(up))"))
            if oldest and oldest[0] > since:
                break
            assert time.monotonic() < deadline, f"no scrape of every target since {since}"
            time.sleep(0.1)


def drive_load(deployment: Deployment, prom: str, via_nginx: str, png: Path, tmp: Path) -> None:
    """Jobs that finish (and one repeated, a cache hit), one whose engine fails, reads, and a
    request no route matches; through nginx, so its counters move too."""
    key = deployment.key()
    truncated = tmp / "truncated.png"
    truncated.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    spec: dict[str, dict] = {
        "up": {"operation": "import/upload"},
        "c": {"operation": "convert", "input": "up", "output_format": "webp", "width": 50},
        "e": {"operation": "export/url", "input": "c"},
    }
    with httpx.Client(
        base_url=via_nginx, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as api:
        # Three sizes (engine runs: a histogram's rate needs a second observation after the
        # first scrape saw it), the first size again (a cache hit), and a broken file.
        for width, source in ((50, png), (60, png), (70, png), (50, png), (50, truncated)):
            spec["c"]["width"] = width
            job = api.post("/v2/jobs", json={"tasks": spec}).json()["data"]
            assert upload(task(job, "up")["result"]["form"], source).status_code == 201
            done = api.get(f"/sync/v2/jobs/{job['id']}").json()["data"]
            assert done["status"] == ("error" if source == truncated else "finished"), done
            for _ in range(20):
                assert api.get(f"/v2/jobs/{job['id']}").status_code == 200
            scraped(prom)  # at least one scrape between jobs
        assert api.get("/v2/no-such-route").status_code == 404


def query(prom: str, expr: str) -> dict:
    return httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=10).json()


def numbers(reply: dict) -> list[float]:
    result = reply["data"]["result"]
    if reply["data"]["resultType"] == "scalar":
        return [float(result[1])]
    return [float(sample["value"][1]) for sample in result]


@pytest.fixture(scope="module")
def loaded(deployment, monitored, png_file, tmp_path_factory) -> str:
    """The monitored deployment once a load has run through it (each test that reads the
    load's metrics asks for it: none relies on another test having run first)."""
    prom, via_nginx = monitored
    drive_load(deployment, prom, via_nginx, png_file, tmp_path_factory.mktemp("load"))
    scraped(prom, times=3)  # a few more scrapes after the load, so rates span it
    return prom


def test_every_dashboard_and_alert_expression_parses_and_returns_data(loaded):
    prom = loaded
    exprs = expressions()
    alert_names = {where for where, _ in exprs if where in alerts()}
    assert len(exprs) > 30 and len(alert_names) > 10
    problems = []
    for where, expr in exprs:
        reply = query(prom, expr)
        if reply.get("status") != "success":
            problems.append(f"{where}: does not evaluate: {reply.get('error')}")
            continue
        if where in alert_names:  # an alert rule: evaluate its queries
            queries = alert_queries(expr)
            if queries is None:
                problems.append(f"{where}: not of the form <query> <comparison> <number>")
                continue
            replies = [query(prom, q) for q in queries]
        else:
            replies = [reply]
        for q, reply in zip(queries if where in alert_names else [expr], replies, strict=True):
            values = numbers(reply)
            if not values or all(math.isnan(v) for v in values):
                problems.append(f"{where}: no data for {q}")
    assert problems == [], "\n".join(problems)


def test_top_users_are_read_from_postgres_at_scrape_time(deployment, loaded):
    """The load's user converted five times (one failed: a truncated file); the per-tenant
    series name that user alone, with no label per user on the request path's metrics."""
    prom = loaded
    users = deployment.sql(
        "SELECT user_id::text AS id, count(*) AS n FROM tasks WHERE operation = 'convert'"
        " GROUP BY user_id"
    )
    assert len(users) == 1 and users[0]["n"] == 5
    reply = query(prom, 'appliance_user_conversions_last_hour{job="appliance-api"}')
    assert [(s["metric"]["user"], s["value"][1]) for s in reply["data"]["result"]] == [
        (users[0]["id"], "5")
    ]
    reply = query(prom, 'appliance_user_errors_last_hour{job="appliance-api"}')
    assert [s["metric"]["user"] for s in reply["data"]["result"]] == [users[0]["id"]]
    reply = query(prom, 'count({job="appliance-api", user!=""})')
    assert numbers(reply) == [2.0]  # those two series, and no other metric has a user label


def test_replication_lag_is_read_from_a_real_streaming_replica(deployment, monitored):
    prom, _ = monitored
    reply = query(prom, 'pg_replication_lag{job="postgres"}')
    assert len(numbers(reply)) == 2  # the primary reports 0, the replica its replay delay
    reply = query(prom, 'pg_replication_is_replica{job="postgres"}')
    assert sorted(numbers(reply)) == [0.0, 1.0]


def test_the_worker_group_port_aggregates_its_processes(deployment, loaded):
    port = deployment.env["APPLIANCE_WORKER_METRICS_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'appliance_tasks_ended_total{operation="convert",status="finished"}' in text
    ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10)
    assert ready.status_code == 200 and ready.json() == {
        "status": "ok",
        "checks": {"postgres": "ok", "redis": "ok", "storage": "ok"},
        "failed": [],
        "virus_scan": "off",  # the e2e deployments scan nothing (tests/e2e/conftest.py)
    }


def firing(prom: str) -> set[str]:
    reply = httpx.get(prom + "/api/v1/alerts", timeout=10).json()
    return {a["labels"]["alertname"] for a in reply["data"]["alerts"] if a["state"] == "firing"}


def wait_firing(prom: str, alert: str, work: Path, seconds: float = 30) -> set[str]:
    """The alerts firing once ``alert`` is (rules are evaluated every second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if alert in (now := firing(prom)):
            return now
        time.sleep(0.5)
    ratios = query(prom, "slo:sli_error:ratio_rate5m")["data"]["result"]
    raise AssertionError(f"{alert} did not fire; 5 m error ratios: {ratios}\n{logs_of(work)}")


@pytest.fixture
def api_prometheus(deployment: Deployment, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A Prometheus of its own, scraping only the API, started now: its windows hold only
    what the test does from here on."""
    work = tmp_path_factory.mktemp("storm")
    port = local_services.free_port()
    api = "127.0.0.1:" + deployment.env["APPLIANCE_API_METRICS_PORT"]
    proc = prometheus(work, {"appliance-api": [api]}, port)
    prom = f"http://127.0.0.1:{port}"
    try:
        wait_for_targets(prom, 1, work, [proc])
        yield prom, work
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work / "tsdb", ignore_errors=True)


def read_job(api: httpx.Client, job_id: str) -> tuple[int, float]:
    """The user's jobs with their tasks (``job_id`` among them): read from the database every
    time, where ``GET /v2/jobs/{id}`` of an unchanged job comes from the status cache."""
    start = time.monotonic()
    listed = api.get("/v2/jobs", params={"include": "tasks"})
    if listed.status_code == 200:
        assert [job["id"] for job in listed.json()["data"]] == [job_id]
    return listed.status_code, time.monotonic() - start


def test_burn_rate_alerts_fire_on_a_latency_storm_and_on_a_5xx_storm(
    deployment: Deployment, api_prometheus: tuple[str, Path]
):
    prom, work = api_prometheus
    key = deployment.key()
    with httpx.Client(
        base_url=deployment.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as api:
        created = api.post("/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}})
        job_id = created.json()["data"]["id"]
        assert read_job(api, job_id)[0] == 200
        scraped(prom, times=2)  # scrapes before the storm: the series exist in Prometheus
        assert not firing(prom) & {"ApplianceLatencyBudgetBurn", "ApplianceAvailabilityBudgetBurn"}

        # Latency: a transaction holds the jobs table for 2.5 s; 16 reads wait behind it.
        with (
            psycopg.connect(deployment.database_url) as conn,
            ThreadPoolExecutor(16) as pool,
        ):
            conn.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            reads = [pool.submit(read_job, api, job_id) for _ in range(16)]
            time.sleep(2.5)
            conn.commit()
            answers = [r.result() for r in reads]
        assert all(status == 200 and seconds > 2 for status, seconds in answers), answers
        now = wait_firing(prom, "ApplianceLatencyBudgetBurn", work)
        assert "ApplianceAvailabilityBudgetBurn" not in now

        # Errors: the view a job is read from is gone for 5 s; every read answers 500.
        deployment.sql("ALTER VIEW job_docs RENAME TO job_docs_gone")
        try:
            statuses = []
            end = time.monotonic() + 5  # over several scrapes: a new series' first count is
            while time.monotonic() < end:  # its start, so the storm must go on past it
                statuses.append(read_job(api, job_id)[0])
                time.sleep(0.05)
        finally:
            deployment.sql("ALTER VIEW job_docs_gone RENAME TO job_docs")
        assert set(statuses) == {500}
        now = wait_firing(prom, "ApplianceAvailabilityBudgetBurn", work)
        assert "ApplianceAvailabilityBudgetSlowBurn" in now  # 3 d and 6 h windows see it too
        assert read_job(api, job_id)[0] == 200  # the appliance is whole again


if __name__ == "__main__":  # list the expressions: python -m tests.e2e.test_monitoring
    for where, expr in expressions():
        print(f"{where}\n    {expr}", file=sys.stdout)
