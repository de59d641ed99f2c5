"""Private PostgreSQL and Redis servers run from the system binaries.

Two callers use this module:

* ``appliance up`` on a single host where the operator configured no database or
  Redis: the servers keep their data under a persistent data directory, and a
  later start (after a clean stop, a crash or a reboot) reuses it.
* the test harness: throwaway servers in a temporary directory on free ports.

Without ``auth`` (the test harness) both servers listen on 127.0.0.1 and let
everyone in: PostgreSQL trusts every connection that reaches it (TCP on 127.0.0.1
and the Unix socket, which lives inside the data directory); the superuser role and
the database are both called ``appliance``.  With :class:`Auth` (``appliance up``)
they listen on a Unix socket in a private directory (TCP on 127.0.0.1 only when its
path is too long for a socket) and ask for a password: Redis its ``requirepass``,
PostgreSQL scram-sha-256 for the one role it lets in, ``appliance_app``, which owns
the ``appliance`` database and is not a superuser.  The superuser (``postgres`` in a
new cluster) has no password and cannot log in at all: roles are set up in
single-user mode, run as the cluster's owner before the server starts.

The servers run in their own sessions (``start_new_session``), so a Ctrl-C sent
to the caller's terminal process group does not reach them: the caller stops
them, in the order it wants, with :meth:`LocalService.stop`.

PostgreSQL refuses to run as root.  When this module runs as root, ``initdb``,
``pg_ctl`` and the server run as the ``postgres`` system user, the data
directory is handed to that user, and every parent directory of it must be
searchable by that user (a ``0700`` directory owned by root on the way, such as
pytest's ``/tmp/pytest-of-root``, is not).  Redis runs as the calling user.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from appliance.db.queries import setup
from appliance.db.queries.setup import scram_verifier

__all__ = [
    "PG_APP_ROLE",
    "PG_DATABASE",
    "PG_USER",
    "Auth",
    "LocalService",
    "find_postgres_bindir",
    "find_redis_server",
    "free_port",
    "start_postgres",
    "start_redis",
]

log = logging.getLogger(__name__)

PG_USER = "appliance"
"""Superuser role created by ``initdb``."""
PG_DATABASE = "appliance"
"""Database created on first start."""
PG_APP_ROLE = "appliance_app"
"""With :class:`Auth`: the login role, owner of the database, not a superuser."""
PG_SUPERUSER = "postgres"
"""With :class:`Auth`: the superuser ``initdb`` creates in a new cluster (no password)."""

_PG_SYSTEM_USER = "postgres"
_PG_LOG = "postgresql.log"
_PG_CONF = "appliance.conf"
_PG_INCLUDE = f"include '{_PG_CONF}'"
_REDIS_LOG = "redis.log"
_REDIS_PID = "redis.pid"
_REDIS_CONF = "redis.conf"
_REDIS_SOCKET = "redis.sock"
_LOG_ROTATE_BYTES = 16 * 1024 * 1024
# sizeof(sockaddr_un.sun_path) is 108 on Linux, and the path needs a NUL byte.
_SUN_PATH_MAX = 107
# Messages after which a new start attempt may succeed once leftovers of a
# killed postmaster (still exiting backends, a zombie PID) are gone.
_PG_TRANSIENT = ("pre-existing shared memory block", 'lock file "postmaster.pid" already exists')


# --------------------------------------------------------------------------- service handle


@dataclass(frozen=True)
class Auth:
    """Password authentication: clients log in with ``password`` through a Unix socket in
    ``socket_dir`` (created 0700), or on 127.0.0.1 when ``socket_dir`` is None."""

    password: str
    socket_dir: Path | None = None


@dataclass
class LocalService:
    """A running private server and the means to stop it.

    ``url`` is what clients connect to.  ``stop()`` is idempotent and waits until
    the server and all of its processes have exited.  The object is also a
    context manager that stops the server on exit.
    """

    name: str
    """``"postgres"`` or ``"redis"``."""
    url: str
    """``postgresql://appliance@127.0.0.1:PORT/appliance`` or ``redis://127.0.0.1:PORT/0``."""
    port: int = 0
    data_dir: Path = field(default_factory=Path)
    pid: int = 0
    """PID of the postmaster / redis-server."""
    log_path: Path | None = None
    _stopper: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    _stopped: bool = field(default=False, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` has completed."""
        return self._stopped

    def stop(self) -> None:
        """Shut the server down cleanly and wait for it to exit; a no-op when already stopped."""
        with self._lock:
            if self._stopped:
                return
            if self._stopper is not None:
                self._stopper()
            self._stopped = True

    def __enter__(self) -> LocalService:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- small helpers


# Where free_port's reservations live: one lock file per port, held while its process runs.
PORT_LOCKS = Path(tempfile.gettempdir()) / "appliance-ports"
_RESERVED: dict[int, int] = {}  # port -> descriptor of its held lock file


def _ports_below_ephemeral() -> range:
    """Ports the kernel never hands out itself (bind to port 0, outgoing connections): those
    below its ephemeral range (32768 on Linux by default)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(max(1024, low - 12000), low)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free and stays this process's to bind: it lies below
    the kernel's ephemeral range, so no bind to port 0 and no outgoing connection takes it
    meanwhile, and it is reserved (a lock file per port, ``PORT_LOCKS``) for as long as this
    process lives, so no other caller of free_port, in this process or another, gets it.
    (A program that binds fixed ports in that range of its own accord still could.)"""
    PORT_LOCKS.mkdir(mode=0o1777, exist_ok=True)
    ports = _ports_below_ephemeral()
    for _ in range(500):
        port = random.choice(ports)  # noqa: S311  (spreading, not secrecy)
        if port in _RESERVED:
            continue
        fd = os.open(PORT_LOCKS / str(port), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port))
        except OSError:  # reserved by another process, or in use
            os.close(fd)
            continue
        _RESERVED[port] = fd
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _remaining(deadline: float, minimum: float = 1.0) -> float:
    return max(minimum, deadline - time.monotonic())


def _tail(path: Path, offset: int = 0, lines: int = 40) -> str:
    """Last ``lines`` lines of ``path`` from byte ``offset`` on ("" when unreadable)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _rotate_log(path: Path) -> None:
    """Keep one previous generation of a log file once it grows large."""
    if _file_size(path) > _LOG_ROTATE_BYTES:
        with contextlib.suppress(OSError):
            path.replace(path.with_name(path.name + ".1"))


_HAVE_PROCFS = Path("/proc/self/stat").exists()


def _proc_state(pid: int) -> str | None:
    """State letter of process ``pid`` (``"Z"`` for a zombie), or None when it does not exist."""
    if pid <= 0:
        return None
    if not _HAVE_PROCFS:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else None


def _running(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie (a zombie has exited, only unreaped)."""
    return _proc_state(pid) not in (None, "Z", "X")


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (empty without procfs)."""
    if not _HAVE_PROCFS:
        return []
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(entry.name))
    return kids


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _wait_gone(pids: Sequence[int], deadline: float) -> bool:
    """Wait until none of ``pids`` runs any more; False if some still run at ``deadline``."""
    while True:
        if not any(_running(p) for p in pids):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _kill(pids: Sequence[int], sig: signal.Signals) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


def _read_pid(pidfile: Path) -> int:
    """First line of a PID file as an int, 0 when missing or garbled."""
    try:
        first = pidfile.read_text().split("\n", 1)[0].strip()
        return abs(int(first))
    except (OSError, ValueError):
        return 0


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without libpq ``PG*`` variables, in the C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    if extra:
        env.update(extra)
    return env


# --------------------------------------------------------------------------- PostgreSQL


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def _postgres_bindirs() -> list[Path]:
    """Bin directories holding initdb, pg_ctl and postgres, newest first."""
    dirs = [
        p.parent
        for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")
        if (p.parent / "pg_ctl").is_file() and (p.parent / "postgres").is_file()
    ]
    dirs.sort(key=lambda d: _version_key(d.parent.name), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        d = Path(on_path).resolve().parent
        if d not in dirs and (d / "pg_ctl").is_file() and (d / "postgres").is_file():
            dirs.append(d)
    return dirs


def find_postgres_bindir() -> Path:
    """Newest ``/usr/lib/postgresql/*/bin`` with ``initdb`` (else ``initdb`` on PATH).

    Raises RuntimeError when no PostgreSQL server binaries are installed.
    """
    dirs = _postgres_bindirs()
    if not dirs:
        raise RuntimeError(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb and "
            "no initdb on PATH): install postgresql (apt-get install postgresql)"
        )
    return dirs[0]


def _postgres_major(bindir: Path) -> str:
    """Major version of the server in ``bindir``, as written to PG_VERSION ("15")."""
    if bindir.parent.parent == Path("/usr/lib/postgresql"):
        return bindir.parent.name
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=30,
    ).stdout
    m = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not m:
        return ""
    # Before 10 the major version had two parts (9.6).
    return m.group(1) if int(m.group(1)) >= 10 else f"{m.group(1)}.{m.group(2)}"


def _bindir_for(data_dir: Path) -> Path:
    """The server binaries to run ``data_dir`` with: the newest for a new cluster, else the
    installed version matching its PG_VERSION."""
    version_file = data_dir / "PG_VERSION"
    if not version_file.exists():
        return find_postgres_bindir()
    wanted = version_file.read_text().strip()
    dirs = _postgres_bindirs()
    for d in dirs:
        if _postgres_major(d) == wanted:
            return d
    have = ", ".join(_postgres_major(d) for d in dirs) or "none"
    raise RuntimeError(
        f"{data_dir} holds a PostgreSQL {wanted} cluster but the installed server versions "
        f"are: {have}; install postgresql-{wanted} or upgrade the cluster with pg_upgrade"
    )


def _pg_owner() -> pwd.struct_passwd | None:
    """The account the server must run as when we are root, None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(_PG_SYSTEM_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root, PostgreSQL must run as the {_PG_SYSTEM_USER!r} system user, "
            "which does not exist: install postgresql"
        ) from None


class _PgRunner:
    """Runs PostgreSQL programs as the right account with a clean environment."""

    def __init__(self, bindir: Path, owner: pwd.struct_passwd | None) -> None:
        self.bindir = bindir
        self.owner = owner
        extra = {}
        if owner is not None:
            extra = {"HOME": owner.pw_dir, "USER": owner.pw_name, "LOGNAME": owner.pw_name}
        self.env = _clean_env(extra)

    def run(
        self,
        program: str,
        *args: str,
        timeout: float,
        as_owner: bool = True,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``bindir/program args``; as the ``postgres`` user when root and ``as_owner``;
        ``stdin``: text fed to the program."""
        owner = self.owner if as_owner else None
        return subprocess.run(
            [str(self.bindir / program), *args],
            env=self.env,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
            check=False,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
            extra_groups=os.getgrouplist(owner.pw_name, owner.pw_gid) if owner else None,
            cwd="/" if owner else None,
        )

    def chown(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _write_pg_conf(
    runner: _PgRunner, data_dir: Path, port: int, fast: bool, auth: Auth | None
) -> None:
    """(Re)write appliance.conf, included at the end of postgresql.conf, for this start."""
    socket_dir = str(auth.socket_dir if auth and auth.socket_dir else data_dir)
    if auth and not auth.socket_dir:
        socket_dir = ""
    elif len(os.fsencode(f"{socket_dir}/.s.PGSQL.{port}")) > _SUN_PATH_MAX:
        log.warning("data dir path too long for a Unix socket; postgres listens on TCP only")
        socket_dir = ""
    durability = "off" if fast else "on"
    settings = {
        # With a password and a socket: the socket only.
        "listen_addresses": "" if auth and socket_dir else "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": socket_dir,
        "unix_socket_permissions": "0700",
        "max_connections": "200",
        "shared_buffers": "128MB",
        "fsync": durability,
        "synchronous_commit": durability,
        "full_page_writes": durability,
        "logging_collector": "off",
        "log_line_prefix": "%m [%p] ",
        "password_encryption": "scram-sha-256",
    }
    conf = data_dir / _PG_CONF
    body = "".join(f"{k} = {_conf_quote(v)}\n" for k, v in settings.items())
    conf.write_text(
        "# Written by appliance.local_services on every start; edits are overwritten.\n" + body
    )
    runner.chown(conf)
    main_conf = data_dir / "postgresql.conf"
    if _PG_INCLUDE not in main_conf.read_text().splitlines():
        with main_conf.open("a") as f:
            f.write(f"\n# Settings managed by appliance.local_services\n{_PG_INCLUDE}\n")


def _write_pg_hba(runner: _PgRunner, data_dir: Path, auth: Auth) -> None:
    """Let in only the application role, to its database, with its password; nobody else
    (no match is a refusal)."""
    lines = [f"local {PG_DATABASE} {PG_APP_ROLE} scram-sha-256"]
    if auth.socket_dir is None:
        lines.append(f"host {PG_DATABASE} {PG_APP_ROLE} 127.0.0.1/32 scram-sha-256")
    hba = data_dir / "pg_hba.conf"
    hba.write_text(
        "# Written by appliance.local_services on every start; edits are overwritten.\n"
        + "\n".join(lines)
        + "\n"
    )
    runner.chown(hba)


def _single_user(
    runner: _PgRunner, data_dir: Path, database: str, statements: list[str], deadline: float
) -> str:
    """Run ``statements`` in single-user mode (the server must not be running): the
    superuser, with no password and no connection, as the cluster's owner. Its output."""
    script = "".join(f"{statement};\n\n" for statement in statements)
    args = ["--single", "-j", "-D", str(data_dir), "-c", "exit_on_error=on", database]
    try:
        res = runner.run("postgres", *args, timeout=_remaining(deadline), stdin=script)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"PostgreSQL setup of {data_dir} timed out") from exc
    if res.returncode != 0:
        # The server's messages, not the statements (a role's password verifier is in one).
        errors = [ln for ln in res.stderr.splitlines() if "ERROR" in ln or "FATAL" in ln]
        raise RuntimeError(f"PostgreSQL setup of {data_dir} failed: {' '.join(errors)[-500:]}")
    return res.stdout


def _setup_roles(runner: _PgRunner, data_dir: Path, auth: Auth, deadline: float) -> None:
    """The application role with the current password, owning the database and everything
    in it (a cluster made before passwords had its superuser own them)."""
    out = _single_user(runner, data_dir, "postgres", [setup.count_databases(PG_DATABASE)], deadline)
    exists = re.search(r'n = "1"', out) is not None
    statements = [setup.ensure_login_role(PG_APP_ROLE, scram_verifier(auth.password))]
    if not exists:
        statements.append(setup.create_database(PG_DATABASE))
    statements.append(setup.database_owner(PG_DATABASE, PG_APP_ROLE))
    _single_user(runner, data_dir, "postgres", statements, deadline)
    _single_user(runner, data_dir, PG_DATABASE, [setup.hand_over_objects(PG_APP_ROLE)], deadline)


def _prepare_socket_dir(runner: _PgRunner, auth: Auth | None) -> None:
    if auth and auth.socket_dir:
        auth.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        auth.socket_dir.chmod(0o700)
        runner.chown(auth.socket_dir)


def _prepare_data_dir(runner: _PgRunner, data_dir: Path) -> None:
    """Create ``data_dir`` (0700) and, when root, hand it to the postgres user."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    owner = runner.owner
    if owner is None:
        return
    if data_dir.stat().st_uid != owner.pw_uid:
        for root, dirs, files in os.walk(data_dir):
            os.chown(root, owner.pw_uid, owner.pw_gid)
            for name in dirs + files:
                path = os.path.join(root, name)
                os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
    data_dir.chmod(0o700)
    probe = subprocess.run(
        ["test", "-w", str(data_dir), "-a", "-x", str(data_dir)],
        user=owner.pw_uid,
        group=owner.pw_gid,
        extra_groups=os.getgrouplist(owner.pw_name, owner.pw_gid),
        cwd="/",
        stdin=subprocess.DEVNULL,
        check=False,
        timeout=30,
    )
    if probe.returncode != 0:
        raise RuntimeError(
            f"the {owner.pw_name!r} user cannot reach {data_dir}: a parent directory is not "
            f"searchable by it (e.g. mode 0700 owned by root); grant it search permission "
            f"(chmod o+x) on the parents or choose another location"
        )


def _initdb(runner: _PgRunner, data_dir: Path, fast: bool, auth: bool, deadline: float) -> None:
    if any(data_dir.iterdir()):
        raise RuntimeError(
            f"{data_dir} is not empty and holds no PostgreSQL cluster (no PG_VERSION); "
            "refusing to initdb over it"
        )
    args = ["-D", str(data_dir), "--encoding=UTF8", "--locale=C"]
    if auth:  # pg_hba.conf is written before each start
        args += ["-U", PG_SUPERUSER, "--auth=reject"]
    else:
        args += ["-U", PG_USER, "--auth-local=trust", "--auth-host=trust"]
    if fast:
        args.append("--no-sync")
    t0 = time.monotonic()
    try:
        res = runner.run("initdb", *args, timeout=_remaining(deadline))
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"initdb of {data_dir} timed out") from exc
    if res.returncode != 0:
        raise RuntimeError(
            f"initdb of {data_dir} failed (exit {res.returncode}):\n"
            + "\n".join((res.stdout + res.stderr).splitlines()[-40:])
        )
    log.info("initialised PostgreSQL cluster in %s (%.2fs)", data_dir, time.monotonic() - t0)


def _settle_previous_postmaster(runner: _PgRunner, data_dir: Path, deadline: float) -> None:
    """Deal with a postmaster.pid left by an earlier run before starting.

    * a postmaster of this data dir still running (its owner died without stopping it):
      stop it so this start applies the current settings;
    * the PID exited but is not reaped yet (zombie): postgres would take it for a live
      server, so remove the stale lock file;
    * the PID now belongs to an unrelated process (reboot, PID reuse): remove it too;
    * the PID is gone: postgres removes the stale file itself.
    """
    pidfile = data_dir / "postmaster.pid"
    pid = _read_pid(pidfile)
    if not pid or _proc_state(pid) is None:
        return
    state = _proc_state(pid)
    if state is None:
        return
    if state in ("Z", "X"):
        log.info("removing %s of exited, unreaped postmaster %d", pidfile, pid)
        pidfile.unlink(missing_ok=True)
        return
    argv = _cmdline(pid)
    ours = (
        bool(argv)
        and os.path.basename(argv[0]) in ("postgres", "postmaster")
        and (str(data_dir) in argv)
    )
    if not ours and _HAVE_PROCFS:
        log.info("removing stale %s (PID %d is now another program)", pidfile, pid)
        pidfile.unlink(missing_ok=True)
        return
    log.warning("PostgreSQL %d still runs on %s; stopping it to start afresh", pid, data_dir)
    _stop_postmaster(runner, data_dir, pid, deadline)


def _is_postgres(pid: int) -> bool:
    argv = _cmdline(pid)
    return bool(argv) and "postgres" in argv[0]


def _stop_postmaster(runner: _PgRunner, data_dir: Path, pid: int, deadline: float) -> None:
    """Stop postmaster ``pid`` of ``data_dir`` and wait until none of its processes is left.

    pg_ctl stop -m fast, then -m immediate, then SIGKILL.  pg_ctl is used only while
    postmaster.pid still names ``pid``: the handle of a server that died never stops a
    newer server started on the same directory since.
    """
    pids = [p for p in (pid, *_children(pid)) if _running(p) and _is_postgres(p)]
    if not pids:
        return
    pidfile = data_dir / "postmaster.pid"
    if _read_pid(pidfile) == pid:
        wait_s = str(math.ceil(_remaining(deadline)))
        with contextlib.suppress(subprocess.TimeoutExpired):
            runner.run(
                "pg_ctl", "stop", "-D", str(data_dir), "-m", "fast", "-w", "-t", wait_s, "-s",
                timeout=_remaining(deadline) + 5,
            )  # fmt: skip
        if _wait_gone(pids, time.monotonic() + 10):
            return
        log.warning("PostgreSQL %d did not stop in fast mode; trying immediate mode", pid)
        if _read_pid(pidfile) == pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                runner.run(
                    "pg_ctl", "stop", "-D", str(data_dir), "-m", "immediate", "-w", "-t", "10",
                    "-s", timeout=15,
                )  # fmt: skip
    pids = [p for p in {*pids, *_children(pid)} if _running(p) and _is_postgres(p)]
    if not _wait_gone(pids, time.monotonic() + 5):
        log.warning("killing leftover PostgreSQL processes %s", pids)
        _kill(pids, signal.SIGKILL)
        _wait_gone(pids, time.monotonic() + 5)


def _ensure_database(runner: _PgRunner, port: int, deadline: float) -> None:
    """Create the ``appliance`` database unless it exists (psql over TCP, trust auth)."""
    base = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port)]
    base += ["-U", PG_USER, "-d", "postgres", "-tA", "-c"]
    check = setup.database_exists(PG_DATABASE)
    res = runner.run("psql", *base, check, timeout=_remaining(deadline), as_owner=False)
    if res.returncode == 0 and res.stdout.strip() == "1":
        return
    if res.returncode == 0:
        res = runner.run(
            "psql",
            *base,
            setup.create_database(PG_DATABASE),
            timeout=_remaining(deadline),
            as_owner=False,
        )
        if res.returncode == 0:
            log.info("created database %s", PG_DATABASE)
            return
    raise RuntimeError(
        f"could not create database {PG_DATABASE!r}: {(res.stderr or res.stdout).strip()}"
    )


def _prepare_cluster(
    runner: _PgRunner, data_dir: Path, port: int, fast: bool, auth: Auth | None, deadline: float
) -> None:
    """Everything before the server starts: directories, initdb the first time, settings,
    an earlier server's leftovers, and with ``auth`` who may log in."""
    _prepare_data_dir(runner, data_dir)
    _prepare_socket_dir(runner, auth)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(runner, data_dir, fast, auth is not None, deadline)
    _write_pg_conf(runner, data_dir, port, fast, auth)
    _settle_previous_postmaster(runner, data_dir, deadline)
    if auth:
        _write_pg_hba(runner, data_dir, auth)
        _setup_roles(runner, data_dir, auth, deadline)


def start_postgres(
    data_dir: Path,
    port: int,
    *,
    timeout: float = 60.0,
    fast: bool = False,
    bindir: Path | None = None,
    auth: Auth | None = None,
) -> LocalService:
    """Start a private PostgreSQL server on 127.0.0.1:``port`` with its cluster in ``data_dir``.

    The cluster is created with ``initdb`` unless ``data_dir`` holds one (PG_VERSION);
    an existing cluster is reused, whatever stopped it last (a stale ``postmaster.pid``
    of a killed server is handled).  The role and database ``appliance`` exist afterwards.
    Settings are (re)written to ``data_dir/appliance.conf`` on every start; the server
    log is ``data_dir/postgresql.log``.

    ``fast=True`` turns off fsync, synchronous_commit and full_page_writes (and syncing
    after initdb): for throwaway test servers only, as a crash may corrupt the cluster.
    ``bindir`` overrides the server binaries (default: newest installed, or the version
    matching an existing cluster).  ``timeout`` bounds the whole start.  ``auth``: the
    password of ``PG_APP_ROLE`` and where the socket goes (see the module's docstring);
    ``url`` then carries the password.

    Raises RuntimeError (with the tail of the server log) when the server does not start.
    """
    deadline = time.monotonic() + timeout
    data_dir = Path(data_dir).resolve()
    runner = _PgRunner(bindir or _bindir_for(data_dir), _pg_owner())
    _prepare_cluster(runner, data_dir, port, fast, auth, deadline)

    log_path = data_dir / _PG_LOG
    _rotate_log(log_path)
    while True:
        offset = _file_size(log_path)
        wait_s = str(math.ceil(_remaining(deadline)))
        args = ["start", "-D", str(data_dir), "-l", str(log_path), "-w", "-t", wait_s, "-s"]
        try:
            res = runner.run("pg_ctl", *args, timeout=_remaining(deadline) + 10)
            output = res.stdout + res.stderr
            ok = res.returncode == 0
        except subprocess.TimeoutExpired:
            output, ok = "pg_ctl start did not return in time", False
        if ok:
            break
        new_log = _tail(log_path, offset)
        if any(m in new_log for m in _PG_TRANSIENT) and time.monotonic() < deadline:
            # Backends of a killed postmaster still exiting, or its PID not reaped yet.
            time.sleep(0.25)
            _settle_previous_postmaster(runner, data_dir, deadline)
            continue
        pid = _read_pid(data_dir / "postmaster.pid")
        if pid and _running(pid):
            _stop_postmaster(runner, data_dir, pid, time.monotonic() + 30)
        raise RuntimeError(
            f"PostgreSQL did not start on 127.0.0.1:{port} from {data_dir}:\n"
            f"{output.strip()}\n--- {log_path} (tail) ---\n{new_log or _tail(log_path)}"
        )

    pid = _read_pid(data_dir / "postmaster.pid")
    try:
        try:
            if auth is None:
                _ensure_database(runner, port, deadline)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"psql did not finish creating {PG_DATABASE!r} in time") from exc
    except BaseException:
        _stop_postmaster(runner, data_dir, pid, time.monotonic() + 30)
        raise

    def stop() -> None:
        _stop_postmaster(runner, data_dir, pid, time.monotonic() + 60)

    return LocalService(
        name="postgres",
        url=_postgres_url(port, auth),
        port=port,
        data_dir=data_dir,
        pid=pid,
        log_path=log_path,
        _stopper=stop,
    )


def _postgres_url(port: int, auth: Auth | None) -> str:
    if auth is None:
        return f"postgresql://{PG_USER}@127.0.0.1:{port}/{PG_DATABASE}"
    login = f"{PG_APP_ROLE}:{quote(auth.password, safe='')}"
    if auth.socket_dir is None:
        return f"postgresql://{login}@127.0.0.1:{port}/{PG_DATABASE}"
    return f"postgresql://{login}@/{PG_DATABASE}?host={quote(str(auth.socket_dir))}&port={port}"


# --------------------------------------------------------------------------- Redis


def find_redis_server() -> Path:
    """Path of ``redis-server``; RuntimeError when it is not installed."""
    candidates = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
    found = shutil.which("redis-server") or next(
        (p for p in candidates if os.access(p, os.X_OK)), None
    )
    if not found:
        raise RuntimeError(
            "redis-server not found: install redis-server (apt-get install redis-server)"
        )
    return Path(found)


@dataclass(frozen=True)
class _RedisAddress:
    """Where a private Redis answers: its Unix socket, else 127.0.0.1:``port``."""

    port: int
    unix_path: Path | None = None
    password: str | None = None

    def connect(self, timeout: float) -> socket.socket:
        if self.unix_path is None:
            return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(self.unix_path))
        except OSError:
            s.close()
            raise
        return s

    def url(self) -> str:
        secret = quote(self.password or "", safe="")
        if self.unix_path is None:
            return f"redis://{':' + secret + '@' if secret else ''}127.0.0.1:{self.port}/0"
        return f"unix://{self.unix_path}?db=0" + (f"&password={secret}" if secret else "")

    def where(self) -> str:
        return str(self.unix_path) if self.unix_path else f"127.0.0.1:{self.port}"


def _redis_send(s: socket.socket, args: Sequence[str]) -> str:
    """Send one command and return the reply line or bulk string (errors start with "-")."""
    s.sendall(
        f"*{len(args)}\r\n".encode()
        + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    )
    buf = b""
    while b"\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    line, _, rest = buf.partition(b"\r\n")
    if not line.startswith(b"$"):
        return line.decode("utf-8", "replace")
    size = int(line[1:])
    if size < 0:
        return ""
    while len(rest) < size + 2:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        rest += chunk
    return rest[:size].decode("utf-8", "replace")


def _redis_call(address: _RedisAddress, *args: str, timeout: float = 1.0) -> str:
    """One command on a new connection, after AUTH when the server has a password."""
    with address.connect(timeout) as s:
        if address.password is not None:
            reply = _redis_send(s, ("AUTH", address.password))
            if reply != "+OK":
                return reply
        return _redis_send(s, args)


def _redis_ready(proc: subprocess.Popen[bytes], address: _RedisAddress) -> bool:
    """True when the server at ``address`` answers PING and is ``proc`` (not another server)."""
    try:
        if _redis_call(address, "PING") != "+PONG":
            return False  # e.g. -LOADING while the AOF is read
        info = _redis_call(address, "INFO", "server")
    except (OSError, ValueError):
        return False
    return f"process_id:{proc.pid}" in info.split()


def _terminate_redis(
    proc: subprocess.Popen[bytes], address: _RedisAddress | None, timeout: float
) -> None:
    """Clean shutdown, then SIGKILL to the whole process group if it does not exit in time.

    ``SHUTDOWN NOSAVE`` acts at once (SIGTERM waits for the next server tick, up to 100 ms);
    either way the append-only file is flushed and no RDB snapshot is written.  SIGTERM
    is the fallback when the command cannot be sent.  Pass ``address=None`` unless the
    server there is known to be ``proc``: then only signals are used.  Reaps the
    process.
    """
    if proc.poll() is not None:
        return
    if address is not None:
        # The server closes the connection without a reply when it shuts down.
        with contextlib.suppress(OSError, ValueError):
            _redis_call(address, "SHUTDOWN", "NOSAVE", timeout=2.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2.0)
            return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("redis-server %d ignored SIGTERM for %.0fs; killing it", proc.pid, timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _settle_previous_redis(data_dir: Path) -> None:
    """Stop a redis-server left running on ``data_dir`` (its owner died) or drop its stale pidfile.

    Two servers writing one append-only file would corrupt it, and Redis does not lock
    its directory.
    """
    pidfile = data_dir / _REDIS_PID
    pid = _read_pid(pidfile)
    if not pid:
        return
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        cwd = None
    argv = _cmdline(pid)
    if _running(pid) and cwd == data_dir and argv and "redis-server" in argv[0]:
        log.warning("redis-server %d still runs on %s; stopping it", pid, data_dir)
        _kill([pid], signal.SIGTERM)
        if not _wait_gone([pid], time.monotonic() + 30):
            _kill([pid], signal.SIGKILL)
            _wait_gone([pid], time.monotonic() + 5)
    pidfile.unlink(missing_ok=True)


def _redis_conf(data_dir: Path, auth: Auth) -> tuple[Path, _RedisAddress]:
    """The settings a command line would show to every local user (the password, the
    socket) go into ``data_dir/redis.conf`` (0600), rewritten on every start."""
    sock = auth.socket_dir / _REDIS_SOCKET if auth.socket_dir else None
    lines = [f"requirepass {auth.password}"]
    if sock is not None:
        lines += [f"unixsocket {sock}", "unixsocketperm 700"]
    conf = data_dir / _REDIS_CONF
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write("# Written by appliance.local_services on every start.\n")
        fh.write("\n".join(lines) + "\n")
    return conf, _RedisAddress(0, sock, auth.password)


def start_redis(
    data_dir: Path,
    port: int,
    *,
    persist: bool = True,
    timeout: float = 30.0,
    auth: Auth | None = None,
) -> LocalService:
    """Start a private redis-server on 127.0.0.1:``port`` working in ``data_dir``.

    With ``persist`` the data lives in an append-only file under ``data_dir`` and a later
    start on the same directory finds it; without, nothing is written to disk.  RDB
    snapshots are off in both modes.  The server is a child process in its own session
    (not daemonized); its output goes to ``data_dir/redis.log``.  ``auth``: the password
    clients need, and the socket they use instead of the TCP port when it has a
    ``socket_dir``; ``url`` then carries the password.

    Raises RuntimeError (with the tail of the log) when it does not answer PING in time.
    """
    deadline = time.monotonic() + timeout
    exe = find_redis_server()
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _settle_previous_redis(data_dir)
    log_path = data_dir / _REDIS_LOG
    _rotate_log(log_path)
    offset = _file_size(log_path)
    cmd, address = [str(exe)], _RedisAddress(port)
    if auth is not None:
        if auth.socket_dir:
            auth.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        conf, address = _redis_conf(data_dir, auth)
        cmd.append(str(conf))
        address = _RedisAddress(0 if address.unix_path else port, address.unix_path, auth.password)
    cmd += [
        "--port", str(address.port),
        "--bind", "127.0.0.1",
        "--protected-mode", "yes",
        "--dir", str(data_dir),
        "--daemonize", "no",
        "--pidfile", str(data_dir / _REDIS_PID),
        "--logfile", "",
        "--save", "",
        "--appendonly", "yes" if persist else "no",
    ]  # fmt: skip
    proc = _spawn_redis(cmd, data_dir, log_path)
    try:
        while not _redis_ready(proc, address):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with status {proc.returncode} on {address.where()}:\n"
                    f"--- {log_path} (tail) ---\n{_tail(log_path, offset)}"
                )
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"redis-server did not answer PING on {address.where()} within "
                    f"{timeout:.0f}s:\n--- {log_path} (tail) ---\n{_tail(log_path, offset)}"
                )
            time.sleep(0.02)
    except BaseException:
        _terminate_redis(proc, None, 10)
        raise

    def stop() -> None:
        _terminate_redis(proc, address, 30)

    return LocalService(
        name="redis",
        url=address.url(),
        port=address.port,
        data_dir=data_dir,
        pid=proc.pid,
        log_path=log_path,
        _stopper=stop,
    )


def _spawn_redis(cmd: list[str], data_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as logf:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            env=_clean_env(),
            start_new_session=True,
        )
