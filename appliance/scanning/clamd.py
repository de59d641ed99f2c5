"""A small clamd client: PING, VERSION and INSTREAM, over a Unix socket or TCP.

The protocol (clamd(8)): a command is sent as ``z<COMMAND>\\0`` (the ``z`` form: NUL-ended);
INSTREAM then takes the file as chunks, each a 4-byte big-endian length and the bytes,
ended by a zero length. The answer is one NUL-ended line: ``stream: OK``, ``stream: <name>
FOUND``, or ``<reason> ERROR`` (``INSTREAM size limit exceeded`` when the file is larger
than clamd's StreamMaxLength). A daemon that is down, starting or reloading refuses or drops
the connection: that is ``Unavailable``, never a verdict.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from pathlib import Path

import msgspec

CHUNK = 1 << 18  # bytes sent in one INSTREAM chunk (256 KiB; clamd's default StreamMaxLength
# is 25 MB in total, so the appliance's own config raises that)
REPLY_MAX = 4096  # bytes: a reply longer than this is not clamd's


class Unavailable(Exception):
    """clamd could not be reached or gave no usable answer (down, loading, overloaded)."""


class Verdict(msgspec.Struct, frozen=True):
    clean: bool
    signature: str | None = None  # the matched signature's name when not clean


class Clamd:
    """One clamd at ``address``: a Unix socket path, or ``tcp://host:port``; ``timeout`` in
    seconds bounds every connect, send and read (a scan of a large file included)."""

    def __init__(self, address: str, timeout: float = 120.0) -> None:
        self.address = address
        self.timeout = timeout

    def ping(self) -> bool:
        """Whether clamd answers PONG (it does only once its signatures are loaded)."""
        try:
            return self._call(b"zPING\0") == "PONG"
        except Unavailable:
            return False

    def version(self) -> str:
        """clamd's version line: engine version / signature database version / its date."""
        return self._call(b"zVERSION\0")

    def scan_file(self, path: Path) -> Verdict:
        with path.open("rb") as f:
            return self.scan_chunks(iter(lambda: f.read(CHUNK), b""))

    def scan_bytes(self, data: bytes) -> Verdict:
        return self.scan_chunks(data[i : i + CHUNK] for i in range(0, len(data), CHUNK))

    def scan_chunks(self, chunks: Iterable[bytes]) -> Verdict:
        with self._connect() as sock:
            try:
                sock.sendall(b"zINSTREAM\0")
                for chunk in chunks:
                    sock.sendall(struct.pack(">I", len(chunk)) + chunk)
                sock.sendall(struct.pack(">I", 0))
            except OSError as exc:
                # clamd closes the stream early when it passes StreamMaxLength; its reason
                # is then waiting to be read
                reply = _try_read(sock)
                raise Unavailable(reply or f"clamd dropped the stream: {exc}") from exc
            return parse_scan_reply(_read_reply(sock))

    def _call(self, command: bytes) -> str:
        with self._connect() as sock:
            try:
                sock.sendall(command)
            except OSError as exc:
                raise Unavailable(f"clamd at {self.address}: {exc}") from exc
            return _read_reply(sock)

    def _connect(self) -> socket.socket:
        try:
            if self.address.startswith("tcp://"):
                host, _, port = self.address.removeprefix("tcp://").rpartition(":")
                return socket.create_connection((host.strip("[]"), int(port)), self.timeout)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.address)
            except BaseException:
                sock.close()
                raise
            return sock
        except (OSError, ValueError) as exc:
            raise Unavailable(f"clamd at {self.address}: {exc}") from exc


def parse_scan_reply(reply: str) -> Verdict:
    """The verdict in an INSTREAM answer; Unavailable for an error answer."""
    body = reply.removeprefix("stream: ")
    if body == "OK":
        return Verdict(clean=True)
    if body.endswith(" FOUND"):
        return Verdict(clean=False, signature=body.removesuffix(" FOUND"))
    raise Unavailable(f"clamd answered: {reply}")


def _read_reply(sock: socket.socket) -> str:
    data = b""
    try:
        while not data.endswith(b"\0") and len(data) < REPLY_MAX:
            part = sock.recv(REPLY_MAX)
            if not part:
                break
            data += part
    except OSError as exc:
        raise Unavailable(f"clamd gave no answer: {exc}") from exc
    if not data:
        raise Unavailable("clamd closed the connection without an answer")
    return data.rstrip(b"\0\n").decode("utf-8", "replace")


def _try_read(sock: socket.socket) -> str:
    try:
        return _read_reply(sock)
    except Unavailable:
        return ""
