"""TCP relays between the root namespace and the lab, and the APT proxy behind one.

A relay is two socat processes joined by a unix socket, which both namespaces see on disk:
one listens in the namespace where the client is, the other connects in the namespace where
the server is. No address of the lab ever appears in the root namespace's routing, so several
labs (parallel test sessions) can use the same subnet.
"""

from __future__ import annotations

import fcntl
import secrets
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.deploy.lab.system import LabError, in_cgroup, sh

PERSISTENT_APT_CACHE = Path("/var/cache/appliance-lab/apt-cacher-ng")


@dataclass
class Relays:
    """Starts socat pairs inside the lab's cgroup (so a crashed run's cleanup finds them)."""

    netns: str
    run_dir: Path
    cgroup: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def expose(self, local_port: int, bind_ip: str, lab_port: int) -> None:
        """127.0.0.1:local_port (root namespace) reachable in the lab at bind_ip:lab_port."""
        sock = self._socket(f"expose-{lab_port}")
        self._spawn(
            ["socat", f"UNIX-LISTEN:{sock},fork,unlink-early", f"TCP:127.0.0.1:{local_port}"]
        )
        self._wait_path(sock)
        listen = f"TCP-LISTEN:{lab_port},bind={bind_ip},fork,reuseaddr"
        self._spawn(["ip", "netns", "exec", self.netns, "socat", listen, f"UNIX-CONNECT:{sock}"])
        self._wait_listening(self.netns, lab_port)

    def forward(self, ip: str, port: int, local_port: int) -> None:
        """The lab's ip:port reachable from the root namespace at 127.0.0.1:local_port."""
        sock = self._socket(f"forward-{ip}-{port}-{local_port}")
        unix = f"UNIX-LISTEN:{sock},fork,unlink-early"
        # connect-timeout: a dead or cut host fails the client in 5 s instead of TCP's minutes.
        target = f"TCP:{ip}:{port},connect-timeout=5"
        self._spawn(["ip", "netns", "exec", self.netns, "socat", unix, target])
        self._wait_path(sock)
        listen = f"TCP-LISTEN:{local_port},bind=127.0.0.1,fork,reuseaddr"
        self._spawn(["socat", listen, f"UNIX-CONNECT:{sock}"])
        self._wait_listening(None, local_port)

    def _socket(self, name: str) -> Path:
        d = self.run_dir / "relay"
        d.mkdir(exist_ok=True)
        return d / f"{name}.sock"

    def _spawn(self, argv: list[str]) -> None:
        log = (self.run_dir / "relay" / "socat.log").open("ab")
        proc = subprocess.Popen(
            in_cgroup(self.cgroup, argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        self.procs.append(proc)

    def _wait_path(self, path: Path, timeout: float = 10) -> None:
        _wait(lambda: path.exists(), timeout, f"relay socket {path} never appeared")

    def _wait_listening(self, netns: str | None, port: int, timeout: float = 10) -> None:
        prefix = ["ip", "netns", "exec", netns] if netns else []
        argv = [*prefix, "ss", "-Hltn", f"sport = :{port}"]
        _wait(lambda: bool(sh(argv).stdout.strip()), timeout, f"relay never listened on {port}")


def _wait(ready: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise LabError(message)
        time.sleep(0.05)


@dataclass
class AptProxy:
    """apt-cacher-ng on 127.0.0.1, from the Debian package but not as its system service.

    Its cache persists across runs under PERSISTENT_APT_CACHE; a parallel session that finds
    that cache taken (file lock) uses a private one for its run instead of sharing it."""

    port: int
    proc: subprocess.Popen[bytes]
    cache_dir: Path
    lock: IO[str] | None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.lock:
            self.lock.close()


def start_apt_proxy(run_dir: Path, cgroup: str) -> AptProxy:
    cache_dir, lock = _claim_cache(run_dir)
    state = run_dir / "apt-cacher-ng"
    (state / "log").mkdir(parents=True, exist_ok=True)
    port = _low_free_port()
    # Our own config, not /etc/apt-cacher-ng: the package's Remap rules send deb.debian.org to
    # other mirrors, which need not be reachable; here every URL is fetched as asked.
    (state / "acng.conf").write_text(
        f"CacheDir: {cache_dir}\nLogDir: {state / 'log'}\nSupportDir: /usr/lib/apt-cacher-ng\n"
        f"Port: {port}\nBindAddress: 127.0.0.1\nPidFile: {state / 'pid'}\nForeGround: 1\n"
        "ExThreshold: 30\n"  # days an unreferenced file stays in the cache between runs
        # No PassThroughPattern: the proxy tunnels no HTTPS at all. Hosts install Python
        # packages from the operator's wheelhouse, so nothing in the lab needs a public index.
    )
    out = (state / "stdout.log").open("ab")
    argv = ["apt-cacher-ng", "-c", str(state)]
    proc = subprocess.Popen(
        in_cgroup(cgroup, argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out
    )
    deadline = time.monotonic() + 15
    while not sh(["ss", "-Hltn", f"sport = :{port}"]).stdout.strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            log = (state / "stdout.log").read_text(errors="replace")[-2000:]
            raise LabError(f"apt-cacher-ng did not start on 127.0.0.1:{port}:\n{log}")
        time.sleep(0.1)
    return AptProxy(port, proc, cache_dir, lock)


def _low_free_port() -> int:
    """A free port below 32768: apt-cacher-ng 3.7 fails to bind higher ones ("Error resolving
    address for binding"), which is where the kernel's ephemeral ports are."""
    for _ in range(200):
        port = secrets.randbelow(12000) + 20000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise LabError("no free port in 20000-32000 for apt-cacher-ng")


def _claim_cache(run_dir: Path) -> tuple[Path, IO[str] | None]:
    PERSISTENT_APT_CACHE.mkdir(parents=True, exist_ok=True)
    lock = (PERSISTENT_APT_CACHE.parent / "apt-cacher-ng.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        private = run_dir / "apt-cache"
        private.mkdir(exist_ok=True)
        return private, None
    return PERSISTENT_APT_CACHE, lock
