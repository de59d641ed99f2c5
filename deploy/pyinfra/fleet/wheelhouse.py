"""The release: the app's wheel built from this checkout plus a wheelhouse of its locked
dependencies, built on the operator's machine (hosts may have no route to PyPI; they install
with ``pip --no-index``).

The dependency wheels are cached under ``deploy/.build/deps-<uv.lock hash>``; the app's wheel
is rebuilt on every deploy (a second or two). The release id is a hash of every wheel's bytes:
the same checkout gives the same id, so a re-run changes nothing on the hosts, and any code
change gives a new id, which the api hosts roll out one at a time.

The machine that builds must match the hosts' Python (3.11 on Debian 12) and architecture.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BUILD = REPO / "deploy" / ".build"


@dataclass(frozen=True)
class Release:
    id: str  # 16 hex digits
    wheelhouse: Path  # every wheel, the app's included
    app_wheel: str  # file name of the app's wheel


def _tool(name: str) -> str:
    for candidate in (REPO / ".tools" / "bin" / name, Path(sys.executable).parent / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is needed to build the release (scripts/install.sh --dev)")
    return found


def _run(*cmd: str, cwd: Path = REPO) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")


def _deps(lock_hash: str) -> Path:
    out = BUILD / f"deps-{lock_hash}"
    if (out / ".complete").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    req = out / "requirements.txt"
    _run(
        _tool("uv"),
        "export",
        "--frozen",
        "--no-dev",
        "--no-emit-project",
        "--no-hashes",
        "-q",
        "-o",
        str(req),
    )
    _for_hosts(req)
    # pip wheel (not download): a few dependencies publish only an sdist (pyvips).
    _run(_tool("pip"), "wheel", "-q", "--no-deps", "-r", str(req), "-w", str(out))
    req.unlink()
    (out / ".complete").touch()
    return out


def _for_hosts(req: Path) -> None:
    """Keep every requirement the hosts may need: markers on the Python version are dropped
    (Debian 12's 3.11.2 needs async-timeout, this machine's 3.11.x may not), others are
    evaluated here (Linux)."""
    from packaging.markers import Marker

    kept = []
    for line in req.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        spec, _, marker = line.partition(";")
        if not marker or "python" in marker or Marker(marker.strip()).evaluate():
            kept.append(spec.strip())
    req.write_text("\n".join(kept) + "\n")


@functools.cache
def build() -> Release:
    """Build (once per deploy run) and return the release."""
    recipe = b"v2" + (REPO / "uv.lock").read_bytes()  # v2: requirements kept for the hosts
    lock_hash = hashlib.sha256(recipe).hexdigest()[:16]
    deps = _deps(lock_hash)
    dist = BUILD / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    _run(_tool("uv"), "build", "--wheel", "-q", "-o", str(dist))
    (app_wheel,) = dist.glob("appliance-*.whl")
    house = BUILD / "wheelhouse"
    shutil.rmtree(house, ignore_errors=True)
    house.mkdir()
    for wheel in [*deps.glob("*.whl"), app_wheel]:
        shutil.copy2(wheel, house / wheel.name)
    digest = hashlib.sha256()
    for wheel in sorted(house.glob("*.whl")):
        digest.update(wheel.name.encode() + hashlib.sha256(wheel.read_bytes()).digest())
    return Release(digest.hexdigest()[:16], house, app_wheel.name)
