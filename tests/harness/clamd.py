"""A real clamd for tests, with a signature database built here (no signatures can be
downloaded): the EICAR test file by its SHA-256 (an .hsb line), and a body signature (.ndb)
that matches ``MARKER`` anywhere in a file, so a valid image or document carrying it counts
as infected. A database this small loads in about 0.1 s, in about 16 MB.

``stop()`` kills clamd (its socket refuses, as when clamd is down); ``start()`` brings it
back on the same address, with a delay first if asked (as when clamd is slow to load).
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from appliance.scanning import daemon

# The EICAR anti-virus test file: harmless, and every scanner's agreed test of detection.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE = "Appliance.Test.EICAR"
MARKER = b"APPLIANCE-TEST-MALWARE-MARKER-7f3a"  # matched anywhere in a file's bytes
MARKER_SIGNATURE = "Appliance.Test.Marker"
UPLOAD_LIMIT = 200 * 1024 * 1024  # bytes clamd takes in one stream here


def write_signatures(database: Path) -> Path:
    database.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(EICAR).hexdigest()
    (database / "appliance-test.hsb").write_text(f"{digest}:{len(EICAR)}:{EICAR_SIGNATURE}:73\n")
    (database / "appliance-test.ndb").write_text(f"{MARKER_SIGNATURE}:0:*:{MARKER.hex()}:73\n")
    return database


@dataclass
class ClamdServer:
    work: Path
    address: str
    database: Path
    proc: subprocess.Popen[bytes] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, delay: float = 0.0, wait: bool = True) -> None:
        """Start clamd (after ``delay`` seconds, in the background, when one is given)."""
        if delay:
            threading.Timer(delay, self.start).start()
            return
        with self._lock:
            config = daemon.write_config(self.work, self.address, self.database, UPLOAD_LIMIT)
            log = (self.work / "stdout.log").open("ab")
            self.proc = subprocess.Popen(
                daemon.command(config), stdout=log, stderr=subprocess.STDOUT
            )
            proc = self.proc
        if wait:
            daemon.wait_ready(proc, self.address, 30)

    def stop(self) -> None:
        with self._lock:
            proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)  # as a crash: no goodbye
            proc.wait(10)
        Path(self.address).unlink(missing_ok=True)


def start_clamd(work: Path) -> ClamdServer:
    server = ClamdServer(work, str(work / "clamd.sock"), write_signatures(work / "db"))
    server.start()
    return server
