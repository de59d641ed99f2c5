"""Black-box deployments: the API under granian and Dramatiq worker processes, started with
the `appliance` command on the harness's Postgres, Redis and storage, driven over HTTP.

Each runs two API processes (granian workers) and two worker processes, as production hosts
do. Two deployments: `s3` (Swift+s3api storage, private URLs refused, 2 MB upload limit) and
`local` (local-disk storage with API-served downloads, private URLs allowed for import/url).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
import pyvips
from psycopg.rows import dict_row

from appliance import local_services
from appliance.security.keys import create_key
from appliance.supervisor import stop_process_groups
from tests.conftest import new_database

UPLOAD_LIMIT = 2 * 1024 * 1024


@dataclass
class Deployment:
    name: str
    url: str
    env: dict[str, str]
    database_url: str
    data_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: Path | None = None  # the API's and the worker's output

    def key(self, email: str | None = None) -> str:
        with psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row) as c:
            return create_key(c, email or f"u{uuid.uuid4().hex[:8]}@example.test")

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def cli(self, *argv: str) -> str:
        """What the `appliance` command prints on this deployment (it must succeed)."""
        done = subprocess.run(
            [sys.executable, "-m", "appliance.cli", *argv],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    def sql(self, query: str, *args: object) -> list[dict]:
        with psycopg.connect(self.database_url, autocommit=True, row_factory=dict_row) as c:
            cur = c.execute(query, args)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []


API_CMD = [sys.executable, "-m", "appliance.cli", "api"]
WORKER_CMD = [
    sys.executable,
    "-m",
    "appliance.cli",
    "worker",
    "-Q",
    "light",
    "office",
    "media",
    "-p",
    "2",  # two worker processes and two API processes (below), as a host runs them:
    "-t",  # metrics, caches and locks are shared by processes, not threads of one
    "2",
]


def spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115  (the child keeps writing to it)
    return subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _start(name: str, env: dict[str, str], logs: Path) -> list[subprocess.Popen]:
    return [
        spawn(cmd, env, logs / f"{name}-{i}.log") for i, cmd in enumerate((API_CMD, WORKER_CMD))
    ]


def _wait_ready(dep: Deployment, logs: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in dep.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args} exited: " + _logs(logs, dep.name))
        try:
            if httpx.get(dep.url + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"deployment {dep.name} not ready in {timeout}s: " + _logs(logs, dep.name))


def errors_logged(logs: Path, name: str, limit: int = 6000) -> str:
    """The deployment's logged errors, each with the lines after it (its traceback): the
    last ``limit`` characters of them."""
    found: list[str] = []
    for path in sorted(logs.glob(f"{name}-*.log")):
        lines = path.read_text(errors="replace").splitlines()
        follow = 0
        for line in lines:
            if line.startswith(("ERROR", "CRITICAL")) or '"level": "ERROR"' in line:
                follow = 40
                found.append(f"{path.name}: {line}")
            elif follow:
                follow -= 1
                found.append(line)
    return "\n".join(found)[-limit:]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed test that ran against a deployment shows what the appliance logged as errors
    (a 500's traceback is only in its log)."""
    report = yield
    dep = getattr(item, "funcargs", {}).get("deployment")
    if report.failed and isinstance(dep, Deployment) and dep.logs is not None:
        logged = errors_logged(dep.logs, dep.name)
        if logged:
            report.sections.append(("errors the deployment logged", logged))
    return report


def _logs(logs: Path, name: str) -> str:
    return "\n".join(p.read_text()[-3000:] for p in sorted(logs.glob(f"{name}-*.log")))


@pytest.fixture(scope="module", params=["local", "s3"])
def deployment(request) -> Iterator[Deployment]:
    """The module's deployment: its own where the module sets DEPLOYMENT_ENV or OWN_DEPLOYMENT
    (it changes settings, or the database or processes under it), else the e2e tier's one of
    that kind, shared by every such module (starting one costs some 10 s of two cores)."""
    name = request.param
    module = request.module
    if getattr(module, "DEPLOYMENT_ENV", None) or getattr(module, "OWN_DEPLOYMENT", False):
        env = getattr(module, "DEPLOYMENT_ENV", {})
        yield from _deployment(request, name, env, redis_db=1 if name == "s3" else 2)
    else:
        yield request.getfixturevalue("shared_deployments")(name)


@pytest.fixture(scope="package")
def shared_deployments(request) -> Iterator[Callable[[str], Deployment]]:
    """get(name) -> the e2e tier's deployment of that kind, started at its first use and
    stopped after the tier's last test (its Redis database is not the modules' own ones')."""
    started: dict[str, Iterator[Deployment]] = {}
    made: dict[str, Deployment] = {}

    def get(name: str) -> Deployment:
        if name not in made:
            started[name] = _deployment(request, name, {}, redis_db=4 if name == "s3" else 5)
            made[name] = next(started[name])
        return made[name]

    yield get
    for running in started.values():
        next(running, None)  # its teardown


def _deployment(
    request, name: str, extra_env: dict[str, str], redis_db: int
) -> Iterator[Deployment]:
    postgres_server = request.getfixturevalue("postgres_server")
    redis_server = request.getfixturevalue("redis_server")
    tmp_path_factory = request.getfixturevalue("tmp_path_factory")
    data_dir = tmp_path_factory.mktemp(f"deploy-{name}")
    port = local_services.free_port()
    db = new_database(postgres_server)
    env = {
        **os.environ,
        "APPLIANCE_DATABASE_URL": db,
        "APPLIANCE_REDIS_URL": redis_server.rsplit("/", 1)[0] + f"/{redis_db}",
        "APPLIANCE_DATA_DIR": str(data_dir),
        "APPLIANCE_PORT": str(port),
        "APPLIANCE_SYNC_TIMEOUT_SECONDS": "30",
        "APPLIANCE_RECONCILE_INTERVAL_SECONDS": "1",
        "APPLIANCE_WORKER_THREADS": "2",
        "APPLIANCE_API_WORKERS": "2",
        "APPLIANCE_WORKER_METRICS_PORT": str(local_services.free_port()),
        "APPLIANCE_API_METRICS_PORT": str(local_services.free_port()),
        "APPLIANCE_DRAIN_FILE": str(data_dir / "drain"),
        # Every test drives the API from this one address: the request and conversion limits
        # are off, but in a module that asks for them (test_limits.py).
        "APPLIANCE_REQUESTS_PER_MINUTE_PER_ADDRESS": "0",
        "APPLIANCE_REQUESTS_PER_MINUTE_PER_KEY": "0",
        "APPLIANCE_CONVERSIONS_PER_MINUTE_PER_ADDRESS": "0",
        # Virus scanning is off but in a module that asks for it (with a clamd of its own).
        "APPLIANCE_VIRUS_SCAN": "off",
        **extra_env,
    }
    if name == "s3":
        s3 = request.getfixturevalue("s3_server")
        env |= {
            "APPLIANCE_STORAGE": "s3",
            "APPLIANCE_S3_ENDPOINT": s3.endpoint,
            "APPLIANCE_S3_ACCESS_KEY": s3.access_key,
            "APPLIANCE_S3_SECRET_KEY": s3.secret_key,
            "APPLIANCE_S3_REGION": s3.region,
            "APPLIANCE_S3_BUCKET": f"e2e{uuid.uuid4().hex[:10]}",
            "APPLIANCE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        }
    else:
        env["APPLIANCE_ALLOW_PRIVATE_URLS"] = "true"
    logs = tmp_path_factory.mktemp(f"logs-{name}")
    dep = Deployment(name, f"http://127.0.0.1:{port}", env, db, data_dir, logs=logs)
    dep.procs = _start(name, env, logs)
    try:
        # a loaded machine (shared cores) may take longer to start two API and worker processes
        _wait_ready(dep, logs, float(os.environ.get("APPLIANCE_E2E_READY_SECONDS", "180")))
        yield dep
    finally:
        stop_process_groups(dep.procs, 20)


@pytest.fixture(scope="session")
def png_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("e2e-in") / "photo.png"
    base = pyvips.Image.xyz(400, 300).extract_band(0).cast("uchar")
    base.bandjoin([base.flip("horizontal"), base]).write_to_file(str(path))
    return path


def upload(form: dict, path: Path, filename: str | None = None) -> httpx.Response:
    with open(path, "rb") as fh:
        return httpx.post(
            form["url"],
            data=form["parameters"],
            files={"file": (filename or path.name, fh)},
            timeout=60,
        )


def task(job: dict, name: str) -> dict:
    return next(t for t in job["tasks"] if t["name"] == name)


def base64_import(filename: str, data: bytes) -> dict:
    """An import/base64 task for ``data`` named ``filename``."""
    return {
        "operation": "import/base64",
        "filename": filename,
        "file": base64.b64encode(data).decode(),
    }


def run_job(api: httpx.Client, tasks: dict) -> dict:
    """Create the job (it must be accepted) and wait for its end."""
    r = api.post("/v2/jobs", json={"tasks": tasks})
    assert r.status_code == 201, r.text
    return api.get(f"/sync/v2/jobs/{r.json()['data']['id']}").json()["data"]


def downloads(job: dict, name: str = "e", timeout: float = 60) -> list[tuple[str, bytes]]:
    """Each file task ``name`` exported: its name and its bytes."""
    files = task(job, name)["result"]["files"]
    return [(f["filename"], httpx.get(f["url"], timeout=timeout).content) for f in files]
