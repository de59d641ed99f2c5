"""The lab's alerts as Prometheus has them now (reached with ``fleet.lab.tunnel("h1",
9090)``), and a bounded wait for one to fire or clear: shared by the drills of
test_drills.py and test_fleet.py."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


def alerts(
    port: int, name: str, state: str | None = None, *, on: str | None = None, **labels: str
) -> set[str]:
    """The targets ("job instance") alert ``name`` names now (pending or firing, or only
    ``state``), of those with ``labels`` (and on the host at address ``on``); ``port``: the
    lab's Prometheus, tunnelled."""
    selector = ",".join(
        f'{k}="{v}"' for k, v in {"alertname": name, **labels, "alertstate": state}.items() if v
    )
    reply = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/query", params={"query": f"ALERTS{{{selector}}}"},
        timeout=15,
    )  # fmt: skip
    found = reply.raise_for_status().json()["data"]["result"]
    # an alert that aggregates its job away (by instance, mountpoint) names "- instance",
    # one that aggregates everything away (AppliancePostgresNoStandby) "- -"
    named = {f"{r['metric'].get('job', '-')} {r['metric'].get('instance', '-')}" for r in found}
    return {t for t in named if on is None or f" {on}:" in t}


def wait_for(check: Callable[[], bool], seconds: float) -> float:
    """Seconds until ``check()`` held, polled every 5 s; fails after ``seconds``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"not within {seconds:g} s"
        time.sleep(5)
    return time.monotonic() - start
