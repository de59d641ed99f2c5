"""A real S3 server for tests: OpenStack Swift with its s3api middleware.

Production uses MinIO, whose server cannot be installed here; Swift (Debian packages ``swift
swift-proxy swift-object swift-container swift-account``) is a real object store that speaks
S3 through ``s3api``.  This module runs a private, single-replica Swift cluster as child
processes of the test run:

* everything (swift.conf, rings, daemon configs, the storage device directory, logs, pid files)
  lives under the ``workdir`` the caller gives; nothing is written outside it.  The daemons are
  started through a tiny launcher that points swift at ``workdir/etc`` before it loads any
  configuration (importing swift.common.utils still peeks at /etc/swift/swift.conf if there is
  one, tolerating its absence; those values are replaced at once);
* every port is a free TCP port on 127.0.0.1 chosen by binding to port 0;
* every daemon is a ``subprocess.Popen`` in its own process group, stdout/stderr to
  ``workdir/log/<name>.log``; ``S3Server.stop()`` terminates the groups (SIGTERM, then
  SIGKILL) and is idempotent.

Usage::

    server = start_s3_server(tmp_path)
    client = Minio(server.endpoint, server.access_key, server.secret_key,
                   secure=False, region=server.region)
    ...
    server.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# Swift is a Debian package: it lives in the system interpreter's dist-packages, not in the
# project's venv.
SWIFT_PYTHON = "/usr/bin/python3"
SWIFT_PROXY_SCRIPT = "/usr/bin/swift-proxy-server"  # only checked for: is swift installed?
MEMCACHED = "/usr/bin/memcached"

REGION = "us-east-1"
ACCOUNT = "s3test"  # tempauth account (no underscores allowed)
USER = "tester"  # tempauth user; the S3 access key is "<account>:<user>"

RING_PART_POWER = 6  # 64 partitions: plenty for one device, fast to build
STOP_GRACE_SECONDS = 5.0
BIND_TIMEOUT_SECONDS = 1  # swift retries a busy port this long before giving up
START_ATTEMPTS = 3  # a port grabbed by someone else between pick and bind -> new ports

# Runs one swift WSGI daemon with swift_dir pointed at our private etc/ *before* swift reads
# swift.conf (hash path prefix/suffix, storage policies): the stock swift-*-server scripts
# always read /etc/swift/swift.conf.  Given a ring spec (the proxy's launch), it first builds the
# one-replica object/container/account rings with swift's RingBuilder (what
# `swift-ring-builder X.builder create P 1 1; add r1z1-127.0.0.1:PORT/d1 100; rebalance` does)
# in the same interpreter: the backend servers never read the rings, only the proxy does, and
# nine swift-ring-builder runs would cost seconds.
_LAUNCHER = textwrap.dedent(
    """
    import json, os, sys
    conf_path, section, swift_dir = sys.argv[1:4]
    if len(sys.argv) > 4:
        from swift.common.ring import RingBuilder
        spec = json.loads(sys.argv[4])
        for name, port in spec["ports"].items():
            builder = RingBuilder(spec["part_power"], 1, 1)
            builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1",
                             "port": port, "device": spec["device"], "weight": 100.0,
                             "meta": ""})
            builder.rebalance()
            builder.save(os.path.join(swift_dir, name + ".builder"))
            builder.get_ring().save(os.path.join(swift_dir, name + ".ring.gz"))
    from swift.common import utils  # does not import storage_policy yet
    utils.set_swift_dir(swift_dir)
    from swift.common.storage_policy import reload_storage_policies
    reload_storage_policies()  # no-op unless storage_policy was imported before
    from swift.common.wsgi import run_wsgi
    sys.exit(run_wsgi(conf_path, section, verbose=True))
    """
)


@dataclass
class _Daemon:
    name: str
    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None


@dataclass
class S3Server:
    endpoint: str  # "127.0.0.1:PORT": host:port, no scheme, as the minio client wants
    access_key: str
    secret_key: str
    region: str
    workdir: Path = field(repr=False)
    _daemons: list[_Daemon] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def source_and_destination(self) -> tuple[Any, str, str]:
        """A minio client and two fresh buckets: a user's own S3 service, in tests of
        import/s3 and export/s3."""
        from minio import Minio  # as below: importing this module needs no minio

        client = Minio(
            self.endpoint, self.access_key, self.secret_key, secure=False, region=self.region
        )
        src, dst = f"src{secrets.token_hex(6)}", f"dst{secrets.token_hex(6)}"
        client.make_bucket(src)
        client.make_bucket(dst)
        return client, src, dst

    def task_fields(self, bucket: str, **fields: Any) -> dict[str, Any]:
        """The fields of an import/s3 or export/s3 task for ``bucket`` on this server."""
        return {
            "bucket": bucket,
            "region": self.region,
            "endpoint": self.url,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            **fields,
        }

    def log_tail(self, name: str, lines: int = 40) -> str:
        for daemon in self._daemons:
            if daemon.name == name:
                return _tail(daemon.log_path, lines)
        raise KeyError(name)

    def stop(self) -> None:
        """Terminate every daemon's process group: SIGTERM, then SIGKILL. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        _stop_daemons(self._daemons)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)


def start_s3_server(workdir: Path, timeout: float = 60.0) -> S3Server:
    """Start Swift+s3api under ``workdir`` and wait until an S3 request succeeds.

    Raises RuntimeError naming the daemon that failed, with the tail of its log.
    """
    workdir = Path(workdir).resolve()
    deadline = time.monotonic() + timeout
    missing = [f for f in (SWIFT_PYTHON, SWIFT_PROXY_SCRIPT, MEMCACHED) if not os.path.exists(f)]
    if missing:
        raise RuntimeError(
            f"S3 server: {', '.join(missing)} missing; install the Debian packages: apt-get "
            "install swift swift-proxy swift-object swift-container swift-account memcached"
        )
    last_error: _StartError | None = None
    for attempt in range(START_ATTEMPTS):
        run_dir = workdir if attempt == 0 else workdir / f"retry{attempt}"
        try:
            return _start_once(run_dir, deadline)
        except _StartError as exc:
            last_error = exc
            if not exc.port_conflict or time.monotonic() >= deadline:
                break
    assert last_error is not None
    raise RuntimeError(str(last_error)) from None


class _StartError(Exception):
    def __init__(self, message: str, port_conflict: bool = False) -> None:
        super().__init__(message)
        self.port_conflict = port_conflict


def _start_once(workdir: Path, deadline: float) -> S3Server:
    etc = workdir / "etc"
    devices = workdir / "srv"
    logs = workdir / "log"
    run = workdir / "run"
    cache = workdir / "cache"
    for d in (etc, devices / "d1", logs, run, cache):
        d.mkdir(parents=True, exist_ok=True)
    _check_xattrs(devices / "d1")

    proxy_port, object_port, container_port, account_port, memcached_port = _free_ports(5)
    secret_key = secrets.token_hex(20)
    user = pwd.getpwuid(os.getuid()).pw_name
    env = _daemon_env()

    _write_configs(
        etc,
        devices=devices,
        cache=cache,
        user=user,
        secret_key=secret_key,
        ports={
            "proxy": proxy_port,
            "object": object_port,
            "container": container_port,
            "account": account_port,
            "memcached": memcached_port,
        },
    )
    ring_spec = json.dumps(
        {
            "part_power": RING_PART_POWER,
            "device": "d1",
            "ports": {"object": object_port, "container": container_port, "account": account_port},
        }
    )

    def swift(name: str, port: int, *extra: str) -> _Daemon:
        argv = [
            SWIFT_PYTHON,
            "-I",  # isolated: no cwd/PYTHON* env/user site on sys.path (system swift only)
            "-B",  # never write .pyc files into the system's dist-packages
            "-u",
            "-c",
            _LAUNCHER,
            str(etc / f"{name}-server.conf"),
            f"{name}-server",
            str(etc),
            *extra,
        ]
        return _Daemon(name, argv, port, logs / f"{name}.log")

    daemons = [
        # tempauth refuses S3 requests without a cache ("Memcache required"), so memcached
        # is not optional.
        _Daemon(
            "memcached",
            [
                MEMCACHED,
                "-l",
                "127.0.0.1",
                "-p",
                str(memcached_port),
                "-U",
                "0",
                "-m",
                "64",
                "-c",
                "256",
                "-u",
                user,
            ],
            memcached_port,
            logs / "memcached.log",
        ),
        swift("account", account_port),
        swift("container", container_port),
        swift("object", object_port),
        swift("proxy", proxy_port, ring_spec),
    ]
    server = S3Server(
        endpoint=f"127.0.0.1:{proxy_port}",
        access_key=f"{ACCOUNT}:{USER}",
        secret_key=secret_key,
        region=REGION,
        workdir=workdir,
        _daemons=daemons,
    )
    atexit.register(server.stop)
    try:
        for daemon in daemons:
            _spawn(daemon, env, run)
        for daemon in daemons:
            _wait_listening(daemon, deadline)
        _wait_s3(server, deadline)
    except BaseException:
        server.stop()
        raise
    return server


def _spawn(daemon: _Daemon, env: dict[str, str], run_dir: Path) -> None:
    daemon.log_file = open(daemon.log_path, "ab")  # noqa: SIM115 - closed in _stop_daemons
    daemon.proc = subprocess.Popen(
        daemon.argv,
        stdin=subprocess.DEVNULL,
        stdout=daemon.log_file,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(run_dir),
        start_new_session=True,  # own session => own process group, killed as a group
        close_fds=True,
    )
    (run_dir / f"{daemon.name}.pid").write_text(f"{daemon.proc.pid}\n")


def _wait_listening(daemon: _Daemon, deadline: float) -> None:
    """Wait until the daemon itself holds the listening socket on its port.

    A plain connect() is not enough: if someone else took the port between _free_ports and
    the daemon's bind, the connect succeeds while the daemon is still retrying its bind.
    """
    assert daemon.proc is not None
    while True:
        _check_alive(daemon)
        owned = _listener_state(daemon.proc.pid, daemon.port)
        if owned == "ours":
            return
        if owned == "shared":
            raise _StartError(
                f"S3 server: {daemon.name} listens on 127.0.0.1:{daemon.port} but so does "
                "another process",
                port_conflict=True,
            )
        if owned == "unknown":  # no /proc: fall back to a connect
            try:
                with socket.create_connection(("127.0.0.1", daemon.port), timeout=0.5):
                    return
            except OSError:
                pass
        if time.monotonic() >= deadline:
            raise _StartError(
                f"S3 server: {daemon.name} (pid {daemon.proc.pid}) is not listening on "
                f"127.0.0.1:{daemon.port} before the deadline; log {daemon.log_path}:\n"
                + _tail(daemon.log_path)
            )
        time.sleep(0.05)


def _listener_state(pid: int, port: int) -> str:
    """ "ours", "shared" (ours and someone else's), "none" (not ours yet) or "unknown"."""
    inodes = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    # fields: sl local_address rem_address st ... inode; st 0A = LISTEN
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        fds = os.listdir(f"/proc/{pid}/fd")
    except (OSError, IndexError, ValueError):
        return "unknown"
    ours = set()
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            ours.add(link[8:-1])
    if not ours:
        return "none"
    return "ours" if ours == inodes else "shared"


def _check_alive(daemon: _Daemon) -> None:
    assert daemon.proc is not None
    code = daemon.proc.poll()
    if code is None:
        return
    tail = _tail(daemon.log_path)
    conflict = any(
        s in tail for s in ("Could not bind", "Address already in use", "failed to listen")
    )
    raise _StartError(
        f"S3 server: {daemon.name} exited with code {code} during start; "
        f"log {daemon.log_path}:\n{tail}",
        port_conflict=conflict,
    )


def _wait_s3(server: S3Server, deadline: float) -> None:
    # Imported here so that importing this module does not need the minio package.
    import urllib3
    from minio import Minio
    from minio.error import InvalidResponseError, S3Error, ServerError

    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=2.0, read=10.0), retries=False, maxsize=2
    )
    client = Minio(
        server.endpoint,
        access_key=server.access_key,
        secret_key=server.secret_key,
        secure=False,
        region=server.region,
        http_client=http,
    )
    last: Exception | None = None
    answered_errors = 0  # consecutive real error answers (not 503): the set-up is broken
    try:
        while True:
            for daemon in server._daemons:
                _check_alive(daemon)
            try:
                client.list_buckets()
                return
            except (S3Error, ServerError, InvalidResponseError) as exc:
                last = exc
                status = getattr(getattr(exc, "response", None), "status", None)
                status = getattr(exc, "status_code", status)
                answered_errors = 0 if status == 503 else answered_errors + 1
            except Exception as exc:  # connection refused/reset: not ready yet
                last = exc
                answered_errors = 0
            if time.monotonic() >= deadline or answered_errors >= 20:
                break
            time.sleep(0.1)
    finally:
        http.clear()
    raise _StartError(
        f"S3 server: proxy on {server.endpoint} does not answer list_buckets "
        f"({type(last).__name__}: {last}); proxy log:\n"
        + server.log_tail("proxy", 15)
        + "\n--- account log:\n"
        + server.log_tail("account", 5)
        + "\n--- container log:\n"
        + server.log_tail("container", 5)
        + "\n--- object log:\n"
        + server.log_tail("object", 5)
    )


def _stop_daemons(daemons: list[_Daemon]) -> None:
    running = [d for d in daemons if d.proc is not None]
    for d in running:
        _signal_group(d, signal.SIGTERM)
    give_up = time.monotonic() + STOP_GRACE_SECONDS
    for d in running:
        assert d.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            d.proc.wait(timeout=max(0.0, give_up - time.monotonic()))
    for d in running:
        # SIGKILL the whole group even if the leader is gone: forked workers may linger.
        _signal_group(d, signal.SIGKILL)
        assert d.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            d.proc.wait(timeout=5)
    for d in daemons:
        if d.log_file is not None:
            d.log_file.close()
            d.log_file = None


def _signal_group(daemon: _Daemon, sig: signal.Signals) -> None:
    assert daemon.proc is not None
    try:
        os.killpg(daemon.proc.pid, sig)  # the pgid is the leader's pid (start_new_session)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            daemon.proc.send_signal(sig)


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _check_xattrs(directory: Path) -> None:
    probe = directory / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        # swift stores object metadata in user.swift.metadata* xattrs, in 254-byte chunks
        os.setxattr(probe, "user.swift.metadata", b"x" * 254)
        os.setxattr(probe, "user.swift.metadata1", b"x" * 254)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            raise RuntimeError(
                f"S3 server: the filesystem of {directory} does not support user xattrs, "
                "which swift's object server needs; pass a workdir on ext4/xfs/tmpfs"
            ) from exc
        raise
    finally:
        probe.unlink(missing_ok=True)


def _daemon_env() -> dict[str, str]:
    # The swift launcher runs with -I (ignores PYTHON* variables); drop the venv's anyway so
    # that nothing of the test run's interpreter leaks into the daemons.
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "__PYVENV_LAUNCHER__")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _write_configs(
    etc: Path, *, devices: Path, cache: Path, user: str, secret_key: str, ports: dict[str, int]
) -> None:
    (etc / "swift.conf").write_text(
        textwrap.dedent(f"""\
        [swift-hash]
        swift_hash_path_suffix = {secrets.token_hex(8)}
        swift_hash_path_prefix = {secrets.token_hex(8)}

        [storage-policy:0]
        name = Policy-0
        default = yes

        [swift-constraints]
        """)
    )

    common = textwrap.dedent(f"""\
        [DEFAULT]
        bind_ip = 127.0.0.1
        workers = 0
        user = {user}
        swift_dir = {etc}
        bind_timeout = {BIND_TIMEOUT_SECONDS}
        log_level = INFO
        log_address = {etc / "no-syslog"}
        """)

    def backend(kind: str, extra: str = "") -> str:
        return (
            common
            + textwrap.dedent(f"""\
            bind_port = {ports[kind]}
            devices = {devices}
            mount_check = false
            disable_fallocate = true
            recon_cache_path = {cache}

            [pipeline:main]
            pipeline = {kind}-server

            [app:{kind}-server]
            use = egg:swift#{kind}
            """)
            + extra
        )

    (etc / "account-server.conf").write_text(backend("account"))
    (etc / "container-server.conf").write_text(backend("container"))
    (etc / "object-server.conf").write_text(backend("object"))

    # s3api just before tempauth; slo after s3api (multipart uploads); copy for server-side
    # copy; cache (memcache) is required by tempauth.
    pipeline = [
        "catch_errors",
        "gatekeeper",
        "healthcheck",
        "proxy-logging",
        "cache",
        "listing_formats",
        "bulk",
        "tempurl",
        "s3api",
        "tempauth",
        "copy",
        "slo",
        "dlo",
        "versioned_writes",
        "symlink",
    ]
    settings = {
        # S3 bucket versioning (s3api) rides on object_versioning, which this enables; it
        # needs symlink after it. Buckets keep versions only when asked (PutBucketVersioning).
        "versioned_writes": "allow_object_versioning = true\n",
        "cache": f"memcache_servers = 127.0.0.1:{ports['memcached']}\n",
        "s3api": f"location = {REGION}\ns3_acl = false\n",
        "tempauth": f"user_{ACCOUNT}_{USER} = {secret_key} .admin\n",
    }
    entry_point = {"proxy-logging": "proxy_logging", "cache": "memcache"}
    sections = "".join(
        f"\n[filter:{name}]\nuse = egg:swift#{entry_point.get(name, name)}\n"
        + settings.get(name, "")
        for name in pipeline
    )
    (etc / "proxy-server.conf").write_text(
        common
        + f"bind_port = {ports['proxy']}\n"
        + "\n[pipeline:main]\n"
        + f"pipeline = {' '.join(pipeline)} proxy-logging proxy-server\n"
        + "\n[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n"
        + sections
    )


def _tail(path: Path, lines: int = 40, max_chars: int = 6000) -> str:
    try:
        data = path.read_bytes()[-max(max_chars * 4, 20000) :]
    except OSError as exc:
        return f"(no log: {exc})"
    # swift logs a traceback as one line with "#012" for each newline
    text = "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
    text = text.replace("#012", "\n")
    return text[-max_chars:]


if __name__ == "__main__":  # manual use: python s3server.py WORKDIR -> runs until Ctrl-C
    import tempfile

    wd = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="s3srv-"))
    t0 = time.monotonic()
    srv = start_s3_server(wd)
    print(f"up in {time.monotonic() - t0:.2f}s: {srv} workdir={wd}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
