"""Where a conversion's network traffic would arrive, watched from the test.

An engine runs in a helper with a network namespace of its own: its 127.0.0.1 is the
sandbox's loopback, not the host's. A document that makes an engine fetch
``http://127.0.0.1:PORT/`` therefore arrives at a listener *inside that namespace*, if the
engine fetches at all; a sandbox that let the engine out would bring it to the host's
127.0.0.1 instead. ``Watch`` listens on the same port in both places and counts each.

``DialerEngine`` is the control: a test engine that connects where its options say, served
by a helper beside the real engines (``dialer_pool``), so a test proves from inside the very
sandbox a real engine used that the watch sees a connection when one is made.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec

from appliance.engines import Descriptor
from appliance.engines.bwrap import package_root
from appliance.engines.sandbox import HelperPool, Limits

CLONE_NEWNET = 0x40000000
CONTROL = b"CONTROL\n"  # what a control connection sends first


class Dial(msgspec.Struct):
    host: str = "127.0.0.1"
    port: int = 0  # 0: dial nothing (starts the helper)


class DialerEngine:
    descriptor = Descriptor(
        id="dialer",
        conversions=frozenset({("txt", "txt")}),
        options=Dial,
        queue="light",
        version=lambda: "1",
        family="test",
    )

    def convert(
        self, src: Path, dst: Path, src_format: str, dst_format: str, options: Any, progress: Any
    ) -> None:
        if not options.port:
            dst.write_text("idle")
            return
        try:
            with socket.create_connection((options.host, options.port), timeout=3) as conn:
                send_control(conn)
            dst.write_text("connected")
        except OSError as exc:
            dst.write_text(f"refused: {exc}")


def dialer_pool(root: Path, limits: Limits) -> HelperPool:
    """Helpers that serve every enabled engine and the dialer, as workers run them."""
    start = (
        f"import sys; sys.path.insert(0, {str(package_root())!r}); "
        "from appliance.engines import helper; "
        "from appliance.engines.enabled import enabled_engines; "
        "from tests.integration.engines.netwatch import DialerEngine; "
        "helper.run([*enabled_engines(), DialerEngine()])"
    )
    return HelperPool(root, limits, argv=[sys.executable, "-I", "-c", start])


def sandbox_pid(outer: int) -> int:
    """A process of the helper's sandbox (below bwrap ``outer``) in a network namespace other
    than this process's."""
    mine = os.readlink("/proc/self/ns/net")
    todo = [outer]
    while todo:
        pid = todo.pop(0)
        try:
            if os.readlink(f"/proc/{pid}/ns/net") != mine:
                return pid
            todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except FileNotFoundError:
            continue
    raise LookupError(f"no process below {outer} has a network namespace of its own")


def _listen_in(netns: str | None) -> socket.socket:
    """A socket on 127.0.0.1 of ``netns`` (a /proc/PID/ns/net path; None: this one)."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:  # setns moves only this thread; the socket stays in that namespace
        try:
            if netns is not None:
                fd = os.open(netns, os.O_RDONLY)
                try:
                    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
            made.append(socket.socket())
        except BaseException as exc:
            made.append(exc)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


class _Counter:
    """Accepts connections in order and sorts them: the control's (their first bytes are
    ``CONTROL``) and the others (``strangers``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.controls = 0
        self.strangers = 0
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._seen = threading.Condition()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(3)
                try:
                    first = conn.recv(len(CONTROL))
                except OSError:
                    first = b""
            with self._seen:
                if first == CONTROL:
                    self.controls += 1
                else:
                    self.strangers += 1
                self._seen.notify_all()

    def strangers_before_control(self, seconds: float) -> int:
        """Connections accepted before the control's (which must arrive within ``seconds``)."""
        with self._seen:
            if not self._seen.wait_for(lambda: self.controls >= 1, seconds):
                raise AssertionError("the watch did not see the control's connection")
            return self.strangers

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


def send_control(sock: socket.socket) -> None:
    sock.sendall(CONTROL)


class Watch:
    """Listeners on 127.0.0.1:``port`` inside the helper's network namespace (``inside``)
    and on the host (``host``), counting connections."""

    def __init__(self, helper_pid: int) -> None:
        netns = f"/proc/{sandbox_pid(helper_pid)}/ns/net"
        for _ in range(20):  # a port free in both namespaces
            inner = _listen_in(netns)
            inner.bind(("127.0.0.1", 0))
            self.port = inner.getsockname()[1]
            outer = _listen_in(None)
            try:
                outer.bind(("127.0.0.1", self.port))
                break
            except OSError:
                inner.close()
                outer.close()
        else:
            raise RuntimeError("no port free both inside the sandbox and on the host")
        inner.listen(8)
        outer.listen(8)
        self.inside = _Counter(inner)
        self.host = _Counter(outer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/picture.png"

    def close(self) -> None:
        self.inside.close()
        self.host.close()
