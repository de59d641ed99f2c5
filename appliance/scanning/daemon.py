"""A private clamd: the one `appliance up` runs when no APPLIANCE_CLAMD_SOCKET is configured,
and the one the tests start with a signature database they build themselves.

clamd runs in the foreground (its supervisor stops it), listens only on the address given
(a Unix socket, or 127.0.0.1 when the socket path would be too long), logs to a file beside
its config, and accepts streams as large as the appliance's upload limit. Startup time and
memory follow the signature database: Debian's full set (freshclam's main, daily, bytecode)
takes tens of seconds and about 1 GB; a test database of a few hashes, about 0.1 s and 16 MB.
Until it has loaded, clamd refuses connections and scans wait (``scanner``).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from appliance.scanning.clamd import Clamd

# What clamd loads from a database directory (clamd(8), sigtool(1)): signed containers and
# the plain signature formats; a directory with none of them makes clamd refuse to start.
SIGNATURE_SUFFIXES = (".cvd", ".cld", ".cud", ".hdb", ".hsb", ".mdb", ".msb", ".ndb", ".ldb")
CONFIG = "clamd.conf"
LOG = "clamd.log"


def has_signatures(database_dir: Path) -> bool:
    return database_dir.is_dir() and any(
        p.suffix in SIGNATURE_SUFFIXES for p in database_dir.iterdir()
    )


def write_config(work: Path, address: str, database_dir: Path, max_stream_bytes: int) -> Path:
    """clamd's configuration for ``address`` (a socket path or tcp://127.0.0.1:PORT) in
    ``work``; its path."""
    work.mkdir(parents=True, exist_ok=True)
    if address.startswith("tcp://"):
        listen = ["TCPAddr 127.0.0.1", f"TCPSocket {address.rpartition(':')[2]}"]
    else:
        listen = [f"LocalSocket {address}", "LocalSocketMode 660"]
    # INSTREAM counts the whole stream; archives inside a file may unpack to more
    size = max_stream_bytes + 1024 * 1024
    lines = [
        "Foreground yes",
        *listen,
        f"DatabaseDirectory {database_dir}",
        f"LogFile {work / LOG}",
        "LogTime yes",
        f"StreamMaxLength {size}",
        f"MaxFileSize {size}",
        f"MaxScanSize {4 * size}",
        "MaxThreads 4",
        "SelfCheck 600",  # reload signatures freshclam updated, every 10 minutes
    ]
    path = work / CONFIG
    path.write_text("\n".join(lines) + "\n")
    return path


def command(config: Path) -> list[str]:
    return ["clamd", "--config-file", str(config)]


def wait_ready(proc: subprocess.Popen[bytes], address: str, timeout: float) -> None:
    """Return once clamd at ``address`` answers PING; RuntimeError (with its log) if it exits
    or does not answer within ``timeout`` seconds."""
    clamd = Clamd(address, timeout=2.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if clamd.ping():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"clamd at {address} did not start (exit {proc.poll()})")
