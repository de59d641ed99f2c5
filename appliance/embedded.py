"""How the single host's own PostgreSQL, Redis and clamd (``appliance up`` with none
configured) are reached: where their sockets and credentials live under the data directory.

``DATA_DIR/run`` (0700) holds both servers' Unix sockets, the only way in: they listen on no
TCP port (unless the directory's path is too long for a socket; then on 127.0.0.1 only, still
with passwords). ``DATA_DIR/credentials`` (0700) holds the passwords, generated on the first
start (files 0600, owned by whoever runs the appliance: the service user): ``postgres`` for
the application's database role (``appliance_app``, not a superuser) and its libpq password
file ``pgpass``; ``redis`` for Redis's ``requirepass``. The database URL names the password
file, not the password, so no secret travels in the environment or shows in a log line.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

POSTGRES_PORT = 54329
REDIS_PORT = 56379
CLAMD_PORT = 53310  # only when the run directory's path is too long for a socket
CLAMD_SOCKET = "clamd.sock"
APP_ROLE = "appliance_app"
DATABASE = "appliance"
REDIS_SOCKET = "redis.sock"
# sizeof(sockaddr_un.sun_path) is 108 on Linux, and the path needs a NUL byte.
SUN_PATH_MAX = 107


@dataclass(frozen=True)
class Credentials:
    postgres: str  # the password of APP_ROLE
    redis: str  # Redis's requirepass


def run_dir(data: Path) -> Path:
    return data / "run"


def credentials_dir(data: Path) -> Path:
    return data / "credentials"


def socket_dir(data: Path) -> Path | None:
    """Where the servers' sockets go; None when the longest socket path would not fit."""
    longest = run_dir(data) / f".s.PGSQL.{POSTGRES_PORT}.lock"
    return None if len(os.fsencode(longest)) > SUN_PATH_MAX else run_dir(data)


def credentials(data: Path) -> Credentials:
    """The passwords, generated the first time (and the password file libpq reads)."""
    folder = credentials_dir(data)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    found = Credentials(
        postgres=stored_secret(folder / "postgres"), redis=stored_secret(folder / "redis")
    )
    # host:port:database:user:password; "*": libpq names socket connections "localhost".
    _write_private(folder / "pgpass", f"*:*:{DATABASE}:{APP_ROLE}:{found.postgres}\n")
    return found


def database_url(data: Path) -> str:
    """libpq URL of the embedded database as the application role; the password comes from
    ``credentials/pgpass``."""
    sockets = socket_dir(data)
    host = quote(str(sockets), safe="") if sockets else "127.0.0.1"
    passfile = quote(str(credentials_dir(data) / "pgpass"), safe="")
    return (
        f"postgresql://{APP_ROLE}@/{DATABASE}?host={host}&port={POSTGRES_PORT}&passfile={passfile}"
    )


def redis_url(data: Path) -> str:
    """Redis URL of the embedded Redis, with its password when it has been generated."""
    path = credentials_dir(data) / "redis"
    password = path.read_text().strip() if path.exists() else ""
    sockets = socket_dir(data)
    if sockets is None:
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}127.0.0.1:{REDIS_PORT}/0"
    query = f"&password={quote(password, safe='')}" if password else ""
    return f"unix://{sockets / REDIS_SOCKET}?db=0{query}"


def clamd_address(data: Path) -> str:
    """Where the single host's own clamd listens: its socket in DATA_DIR/run, or
    ``tcp://127.0.0.1:CLAMD_PORT`` when that path is too long for a socket."""
    sockets = socket_dir(data)
    return str(sockets / CLAMD_SOCKET) if sockets else f"tcp://127.0.0.1:{CLAMD_PORT}"


def stored_secret(path: Path, nbytes: int = 32) -> str:
    """The secret in ``path`` (0600; ``nbytes`` random bytes, url-safe), created atomically
    the first time: of several processes starting at once, the first link wins and all read
    the same value."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        _write_private(tmp, secrets.token_urlsafe(nbytes))
        try:
            os.link(tmp, path)  # atomic; loses cleanly to a process that got there first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` with mode 0600 from its creation on (never readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)
