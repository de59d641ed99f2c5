"""Private PostgreSQL and Redis servers of appliance.local_services, against the real binaries."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

import psycopg  # noqa: E402
import redis  # noqa: E402

from appliance import local_services as ls  # noqa: E402

# --------------------------------------------------------------------------- helpers


def _state(pid: int) -> str | None:
    """State letter of ``pid`` from /proc, None when it does not exist."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


def _running(pid: int) -> bool:
    # A zombie has exited; only its parent (here PID 1 for the postmaster) has to reap it.
    return _state(pid) not in (None, "Z", "X")


def _tree(pid: int) -> list[int]:
    """``pid`` and its direct children (the postmaster's server processes)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = entry.joinpath("stat").read_text().rpartition(")")[2].split()[1]
            except (OSError, IndexError):
                continue
            if ppid == str(pid):
                kids.append(int(entry.name))
    return [pid, *kids]


def _assert_gone(pids: Iterable[int]) -> None:
    left = [p for p in pids if _running(p)]
    assert not left, f"processes left behind: {left}"


def _assert_own_session(pid: int) -> None:
    """A Ctrl-C on the caller's terminal (its process group) must not reach the server."""
    assert os.getsid(pid) != os.getsid(0)
    assert os.getpgid(pid) != os.getpgrp()


@pytest.fixture
def data_root(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tmp_path``, searchable by the ``postgres`` user when running as root.

    pytest makes its base directories 0700, which the postgres user (that the server runs
    as under root) cannot traverse.  Grant search-only permission on the pytest-owned
    directories down to ``tmp_path`` (pytest restores 0700 on the next run): from
    ``pytest-of-<user>`` down, which is two levels above the base directory under
    pytest-xdist (``pytest-N/popen-gwK``), one without it.
    """
    if os.geteuid() == 0:
        chain = [tmp_path, *tmp_path.parents]
        top = next((i for i, p in enumerate(chain) if p.name.startswith("pytest-of-")), None)
        base = tmp_path_factory.getbasetemp()
        dirs = chain[: top + 1] if top is not None else [p for p in chain if p.is_relative_to(base)]
        for d in dirs:
            d.chmod(d.stat().st_mode | 0o001)
    return tmp_path


# --------------------------------------------------------------------------- small API


def test_find_postgres_bindir() -> None:
    bindir = ls.find_postgres_bindir()
    for program in ("initdb", "pg_ctl", "postgres"):
        assert (bindir / program).is_file()


def test_free_port_is_bindable() -> None:
    port = ls.free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_free_port_is_never_one_the_kernel_hands_out_nor_one_given_twice() -> None:
    """Below the ephemeral range (no bind to port 0 takes it), and reserved: neither this
    process nor another one that asks meanwhile gets the same port."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    mine = {ls.free_port() for _ in range(50)}
    assert len(mine) == 50 and max(mine) < low
    asks = "from appliance import local_services as ls; print([ls.free_port() for _ in range(50)])"
    out = subprocess.run([sys.executable, "-c", asks], capture_output=True, text=True, check=True)
    theirs = set(json.loads(out.stdout))
    assert len(theirs) == 50 and not mine & theirs


# --------------------------------------------------------------------------- PostgreSQL


def test_postgres_persists_across_restarts(data_root: Path) -> None:
    data_dir = data_root / "pg"
    pg = ls.start_postgres(data_dir, ls.free_port(), fast=True)
    try:
        assert pg.name == "postgres"
        assert pg.url == f"postgresql://appliance@127.0.0.1:{pg.port}/appliance"
        assert (data_dir / "PG_VERSION").is_file()
        assert (data_dir / f".s.PGSQL.{pg.port}").exists()  # socket inside the data dir
        assert pg.log_path == data_dir / "postgresql.log"
        _assert_own_session(pg.pid)
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("SHOW max_connections").fetchone() == ("200",)
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert row.fetchone() == (True,)
            conn.execute("CREATE TABLE kv (k text PRIMARY KEY, v text)")
            conn.execute("INSERT INTO kv VALUES ('answer', '42')")
        procs = _tree(pg.pid)
        assert len(procs) > 1
    finally:
        pg.stop()
    assert pg.stopped
    pg.stop()  # idempotent
    _assert_gone(procs)
    assert not (data_dir / "postmaster.pid").exists()

    # Second start: same cluster (no initdb), another port, durable settings, and a
    # client still connected while stopping (fast shutdown must not wait for it).
    pg2 = ls.start_postgres(data_dir, ls.free_port())
    try:
        conn = psycopg.connect(pg2.url)
        assert conn.execute("SELECT v FROM kv WHERE k = 'answer'").fetchone() == ("42",)
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
        procs = _tree(pg2.pid)
    finally:
        pg2.stop()
    conn.close()
    _assert_gone(procs)


def test_postgres_starts_again_after_sigkill(data_root: Path) -> None:
    data_dir = data_root / "pg"
    pg = ls.start_postgres(data_dir, ls.free_port())  # durable: committed rows survive
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    idle = psycopg.connect(pg.url)  # a backend that outlives its postmaster for a moment
    orphans = _tree(pg.pid)
    os.kill(pg.pid, signal.SIGKILL)
    try:
        # Immediately: stale postmaster.pid, unreaped postmaster, exiting backends.
        pg2 = ls.start_postgres(data_dir, ls.free_port())
    finally:
        idle.close()
    try:
        # The dead server's handle must not stop the new server on the same directory.
        pg.stop()
        assert pg2.pid != pg.pid
        with psycopg.connect(pg2.url) as conn:
            assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
        procs = _tree(pg2.pid)
    finally:
        pg2.stop()
    _assert_gone(procs + orphans)


def test_postgres_start_failure_reports_log(data_root: Path) -> None:
    data_dir = data_root / "pg"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match=r"postgresql\.log") as err:
            ls.start_postgres(data_dir, port, fast=True, timeout=30)
    assert "could not" in str(err.value)  # the server's own complaint, from the log
    assert not (data_dir / "postmaster.pid").exists()


def test_postgres_unreachable_data_dir_is_explained(tmp_path: Path, as_root: None) -> None:
    # only root hands the data dir to postgres
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(RuntimeError, match="cannot reach"):
        ls.start_postgres(locked / "pg", ls.free_port(), fast=True)


# --------------------------------------------------------------------------- Redis


def test_redis_persists_across_restarts(data_root: Path) -> None:
    data_dir = data_root / "redis"
    r = ls.start_redis(data_dir, ls.free_port())
    try:
        assert r.name == "redis"
        assert r.url == f"redis://127.0.0.1:{r.port}/0"
        _assert_own_session(r.pid)
        with redis.Redis.from_url(r.url) as client:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("bind") == {"bind": "127.0.0.1"}
            client.set("answer", "42")
    finally:
        r.stop()
    r.stop()  # idempotent
    _assert_gone([r.pid])
    assert (data_dir / "appendonlydir").is_dir()

    r2 = ls.start_redis(data_dir, ls.free_port())
    try:
        with redis.Redis.from_url(r2.url) as client:
            assert client.get("answer") == b"42"
    finally:
        r2.stop()
    _assert_gone([r2.pid])


def test_redis_without_persistence_keeps_nothing(data_root: Path) -> None:
    data_dir = data_root / "redis"
    r = ls.start_redis(data_dir, ls.free_port(), persist=False)
    try:
        with redis.Redis.from_url(r.url) as client:
            client.set("answer", "42")
    finally:
        r.stop()
    _assert_gone([r.pid])
    assert not (data_dir / "appendonlydir").exists()
    assert not (data_dir / "dump.rdb").exists()

    r2 = ls.start_redis(data_dir, ls.free_port(), persist=False)
    try:
        with redis.Redis.from_url(r2.url) as client:
            assert client.get("answer") is None
    finally:
        r2.stop()
    _assert_gone([r2.pid])


def test_redis_port_taken_by_another_redis(data_root: Path) -> None:
    """The new server fails to bind; the one already on the port must not be mistaken for
    it (nor shut down when cleaning up)."""
    first = ls.start_redis(data_root / "first", ls.free_port(), persist=False)
    try:
        with pytest.raises(RuntimeError, match=r"redis\.log"):
            ls.start_redis(data_root / "second", first.port, persist=False, timeout=10)
        with redis.Redis.from_url(first.url) as client:
            assert client.ping()
        assert not (data_root / "second" / "redis.pid").exists()
    finally:
        first.stop()
    _assert_gone([first.pid])


# --------------------------------------------------------------------------- with passwords


def _refused(url: str) -> str:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(url, connect_timeout=5).close()
    return str(caught.value)


def test_postgres_with_auth_lets_in_only_the_app_role_with_its_password(data_root: Path) -> None:
    run = data_root / "run"
    auth = ls.Auth("s3cret-pw", run)
    pg = ls.start_postgres(data_root / "pg", ls.free_port(), fast=True, auth=auth)
    try:
        assert run.stat().st_mode & 0o777 == 0o700
        assert (run / f".s.PGSQL.{pg.port}").exists()
        assert not _port_open(pg.port)  # the socket only
        with psycopg.connect(pg.url) as conn:
            row = conn.execute(
                "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb"
                " FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            assert row == (ls.PG_APP_ROLE, False, False, False)
            conn.execute("CREATE TABLE t (x int)")  # it owns the database's schema
        where = f"host={run} port={pg.port} dbname=appliance"
        assert "no password supplied" in _refused(f"{where} user={ls.PG_APP_ROLE}")
        assert "password authentication failed" in _refused(
            f"{where} user={ls.PG_APP_ROLE} password=wrong"
        )
        for superuser in ("postgres", "appliance"):  # no way in, with or without a password
            _refused(f"{where} user={superuser}")
            _refused(f"{where} user={superuser} password=s3cret-pw")
        text = (data_root / "pg" / "postgresql.log").read_text()
        assert "s3cret-pw" not in text
    finally:
        pg.stop()


def test_a_trusting_cluster_is_handed_to_the_app_role_on_its_first_start_with_auth(
    data_root: Path,
) -> None:
    """A data directory from before passwords: its superuser owned what the migrations made."""
    data_dir = data_root / "pg"
    old = ls.start_postgres(data_dir, ls.free_port(), fast=True)
    try:
        with psycopg.connect(old.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kv (k serial PRIMARY KEY, v text)")
            conn.execute("CREATE VIEW kv_v AS SELECT v FROM kv")
            conn.execute(
                "CREATE FUNCTION kv_n() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM kv'"
            )
            conn.execute("INSERT INTO kv (v) VALUES ('kept')")
    finally:
        old.stop()
    pg = ls.start_postgres(
        data_dir, ls.free_port(), fast=True, auth=ls.Auth("pw2", data_root / "run")
    )
    try:
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("INSERT INTO kv (v) VALUES ('new')")
            assert conn.execute("SELECT kv_n()").fetchone() == (2,)
            assert conn.execute("SELECT count(*) FROM kv_v").fetchone() == (2,)
            conn.execute("ALTER TABLE kv ADD COLUMN w int")  # a migration's kind of change
            owners = conn.execute(
                "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
                " WHERE relnamespace = 'public'::regnamespace"
            ).fetchall()
            assert owners == [(ls.PG_APP_ROLE,)]
        _refused(f"postgresql://appliance@127.0.0.1:{pg.port}/appliance")  # trust is gone
    finally:
        pg.stop()


def test_redis_with_auth_answers_only_with_its_password_on_its_socket(data_root: Path) -> None:
    run = data_root / "run"
    port = ls.free_port()
    rd = ls.start_redis(data_root / "redis", port, persist=False, auth=ls.Auth("r-pw", run))
    try:
        sock = run / "redis.sock"
        assert sock.exists() and not _port_open(port)
        assert redis.Redis.from_url(rd.url).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(unix_socket_path=str(sock)).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(unix_socket_path=str(sock), password="wrong").ping()
        conf = data_root / "redis" / "redis.conf"
        assert conf.stat().st_mode & 0o777 == 0o600
        cmdline = Path(f"/proc/{rd.pid}/cmdline").read_bytes()
        assert b"r-pw" not in cmdline  # every local user may read a command line
    finally:
        rd.stop()
    assert not sock.exists()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
