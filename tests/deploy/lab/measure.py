"""Measures the lab's costs for README.md: rootfs build (cold, cached), boot, tiny deploy.

    .venv/bin/python -m tests.deploy.lab.measure [--hosts 3] [--cold-rootfs] [--cold-apt]

--cold-rootfs builds a fresh rootfs in a temporary cache dir (the shared one is untouched);
--cold-apt starts the APT proxy on an empty cache, so the first deploy downloads everything.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.deploy.lab import Lab, relay, rootfs, start_lab
from tests.deploy.test_lab import DEPLOY

T = TypeVar("T")


def _timed(label: str, fn: Callable[[], T]) -> T:
    started = time.monotonic()
    result = fn()
    print(f"{label}: {time.monotonic() - started:.1f} s", flush=True)
    return result


def _kill_and_boot(lab: Lab, name: str) -> None:
    lab.kill(name)
    lab.boot(name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--cold-rootfs", action="store_true")
    parser.add_argument("--cold-apt", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lab-measure-") as tmp:
        if args.cold_rootfs:
            rootfs.CACHE_DIR = Path(tmp) / "cache"
            _timed("rootfs build (cold)", rootfs.ensure_rootfs)
        _timed("rootfs (cached)", rootfs.ensure_rootfs)
        if args.cold_apt:
            relay.PERSISTENT_APT_CACHE = Path(tmp) / "apt-cache"
        names = [f"h{i}" for i in range(args.hosts)]
        lab = _timed(f"lab start, {args.hosts} hosts booted and ready", lambda: start_lab(names))
        try:
            deploy = Path(tmp) / "deploy.py"
            deploy.write_text(DEPLOY)
            _timed("tiny deploy, first run", lambda: lab.pyinfra(str(deploy)))
            _timed("tiny deploy, second run", lambda: lab.pyinfra(str(deploy)))
            _timed("kill + boot one host", lambda: _kill_and_boot(lab, "h0"))
        finally:
            _timed("lab stop", lab.stop)


if __name__ == "__main__":
    main()
