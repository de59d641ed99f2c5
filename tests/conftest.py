"""Test harness: starts the real services the integration and e2e tiers need.

PostgreSQL and Redis are private servers from the system binaries (appliance.local_services),
the S3 server is OpenStack Swift with s3api (tests/harness/s3server.py), clamd is Debian's
with a signature database built by the test (tests/harness/clamd.py). Each starts once per
session, on free ports under a temp directory, and only when a test asks for it. If a service
cannot start, the tests that need it fail: they are never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from appliance import local_services
from appliance.db.migrate import migrate
from appliance.security.keys import create_key
from appliance.settings import Settings
from tests.harness.clamd import ClamdServer, start_clamd
from tests.harness.s3server import S3Server, start_s3_server

ROOT = Path(__file__).resolve().parents[1]  # the checkout
PY = "/usr/bin/python3"  # Debian's, which a service user can run


@pytest.fixture(scope="session")
def as_root() -> None:
    """For behaviour that exists only when the appliance runs as root (helpers' own uids,
    ownership hand-over): the suite runs as root, as scripts/test does, so this fails, never
    skips, elsewhere."""
    assert os.geteuid() == 0, "this test needs root: run the suite as scripts/test does"


@pytest.fixture(scope="session")
def work_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="appliance-tests-"))
    root.chmod(0o755)  # the private Postgres runs as the postgres user and must reach it
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def system_python(work_root: Path) -> Path:
    """This checkout's locked environment on Debian's Python, as scripts/install.sh makes it
    on a Debian host: the service user must be able to run the interpreter, and the test
    runner's own may live under /root (pyenv), which is closed to it."""
    venv = work_root / "venv"
    subprocess.run(
        [*(ROOT / ".tools/bin/uv", "sync", "--frozen", "--no-dev", "-q"), "--python", PY],
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
        check=True,
    )
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def postgres_server(work_root: Path) -> Iterator[str]:
    """URL of a private server whose `appliance_template` database is migrated."""
    pg = local_services.start_postgres(
        work_root / "postgres", local_services.free_port(), fast=True
    )
    try:
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE appliance_template")
        migrate(_with_db(pg.url, "appliance_template"))
        yield pg.url
    finally:
        pg.stop()


def _with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


def new_database(server_url: str) -> str:
    """A fresh, migrated database (a copy of the template): tests never see each other."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE appliance_template")
    return _with_db(server_url, name)


def drop_database(url: str) -> None:
    """Drop a test's database, closing whatever still holds it: a whole run makes a thousand,
    and every one kept makes the server's per-database work (an exporter's scrape, autovacuum)
    slower for the tests after it."""
    server, name = url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    url = new_database(postgres_server)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def redis_server(work_root: Path) -> Iterator[str]:
    rd = local_services.start_redis(work_root / "redis", local_services.free_port(), persist=False)
    try:
        yield rd.url
    finally:
        rd.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The private Redis, emptied: queues start clean for every test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture
def clamd(work_root: Path) -> Iterator[ClamdServer]:
    """A real clamd with the test signatures (tests/harness/clamd.py), one per test (it
    starts in about 0.1 s): a test may stop and start it."""
    server = start_clamd(work_root / f"clamd-{uuid.uuid4().hex[:8]}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(work_root: Path) -> Iterator[S3Server]:
    server = start_s3_server(work_root / "s3")
    try:
        yield server
    finally:
        server.stop()


def make_settings(base: dict[str, str]) -> Settings:
    """Settings from ``base`` (field: value); virus scanning is off unless ``base`` turns it
    on (with the ``clamd`` fixture's socket)."""
    env = {f"APPLIANCE_{k.upper()}": v for k, v in {"virus_scan": "off", **base}.items()}
    return Settings.from_env(env)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture(params=["local", "s3"])
def settings(
    request: pytest.FixtureRequest, postgres_url: str, redis_url: str, data_dir: Path
) -> Settings:
    """Settings on the real services, once per storage backend."""
    values = {
        "database_url": postgres_url,
        "redis_url": redis_url,
        "data_dir": str(data_dir),
        "reconcile_interval_seconds": "1",
        "retry_backoff_seconds": "0.1",
    }
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_server")
        values |= {
            "storage": "s3",
            "s3_endpoint": s3.endpoint,
            "s3_access_key": s3.access_key,
            "s3_secret_key": s3.secret_key,
            "s3_region": s3.region,
            "s3_bucket": f"t{uuid.uuid4().hex[:12]}",
        }
    return make_settings(values)


@pytest.fixture
def api_key(postgres_url: str) -> str:
    with psycopg.connect(postgres_url, autocommit=True, row_factory=dict_row) as conn:
        return create_key(conn, f"user-{uuid.uuid4().hex[:8]}@example.test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in ("integration", "e2e"):
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With pytest-xdist (scripts/test runs the suite in workers): every test of the lab
    modules on one worker, since they share one fleet of lab hosts, and otherwise a module
    at a time, so module- and package-scoped deployments start once per worker rather than
    once per test. (xdist's own `--dist loadgroup` cannot say so under pytest 9: the group it
    appends to a test's id is lost.)"""
    from xdist.scheduler import LoadScopeScheduling

    class LabTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "lab" if module.rsplit("/", 1)[0] == LAB_DIR else module

    return LabTogether(config, log)


# Where the tests that boot lab hosts live (tests/deploy/conftest.py marks them `lab`): the
# deploy tier's own modules; its unit tests are in tests/deploy/unit/.
LAB_DIR = "tests/deploy"


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
