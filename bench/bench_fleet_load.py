"""The bundled load test against the lab fleet: six real Debian hosts (systemd-nspawn, see
tests/deploy/lab) provisioned from bare with ``scripts/deploy`` as the deploy tests do (nginx
on h1 in front of the api hosts h2 and h3; workers h4 and h5; the Postgres primary on h4 and a
standby on h6; Redis on h2; storage the harness's S3 server), then ``bench.loadtest`` through
the lb's TLS address, one run per ``--users`` figure, its jobs of images and tables (the lab's
workers carry those engines only). Prints Locust's summary line per run and the CPU each
host's services used (``unit_cpu``), to see where a fleet's cores go and what saturates
first. All six hosts and the load generator share this machine's cores, so the figures show
the fleet's costs per request and per role, not a fleet's capacity.

    .venv/bin/python -m bench.bench_fleet_load [--users 100 300] [--run-time 90s]

Loopback and the lab's own hosts only; bounded by ``--run-time`` per run.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance.settings import Settings
from bench.harness import cpu_seconds
from tests.deploy.fleet import LAYOUT, Fleet, provision
from tests.deploy.lab import start_lab
from tests.deploy.lab.system import cgroup_pids
from tests.harness.s3server import S3Server, start_s3_server

REPO = Path(__file__).resolve().parents[1]
# The lab fleet's api hosts serve /metrics on the fleet's default port, the app's own default.
METRICS_PORT = Settings().api_metrics_port


@dataclass
class LabFleet:
    fleet: Fleet
    keys: Path  # one API key per line
    s3: S3Server
    work: Path  # fleet.json, the deploy's secrets


@contextmanager
def lab_fleet(keys: int, settings: dict[str, object] | None = None) -> Iterator[LabFleet]:
    """The six-host lab fleet provisioned from bare (``settings``: fleet settings beyond the
    lab's own) with ``keys`` users' keys in a file, on the harness's S3 server; all of it
    stopped and removed at the end."""
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # as the suite's work root: the S3 server's daemons reach it
        s3 = start_s3_server(work / "s3")
        lab = start_lab(list(LAYOUT))
        try:
            fleet = provision(lab, s3, work, settings)
            print(f"fleet provisioned in {fleet.first_seconds:.0f} s", flush=True)
            path = work / "keys.txt"
            path.write_text("".join(fleet.key() + "\n" for _ in range(keys)))
            yield LabFleet(fleet, path, s3, work)
        finally:
            lab.stop()
            s3.stop()


def unit_pids(fleet: Fleet) -> dict[str, list[int]]:
    """The live processes of each systemd unit of each host, as ``host/unit`` (what no
    service holds, e.g. the host's init: ``host/other``), by the unit their cgroup names."""
    units: dict[str, list[int]] = defaultdict(list)
    for name in LAYOUT:
        for pid in cgroup_pids(fleet.lab.host(name).cgroup):
            try:
                groups = Path(f"/proc/{pid}/cgroup").read_text()
            except OSError:  # ended meanwhile
                continue
            services = re.findall(r"/([^/\n]+)\.service", groups)
            units[f"{name}/{services[-1] if services else 'other'}"].append(pid)
    return units


def unit_cpu(fleet: Fleet) -> dict[str, float]:
    """Core-seconds used so far by each systemd unit of each host (``unit_pids``): every live
    process's own time and that of its children it has reaped (so a finished engine run or
    connection counts). This machine's cgroups (v1 beside an unified tree without the cpu
    controller) keep no CPU account per lab host, hence /proc."""
    return {unit: cpu_seconds(pids, reaped=True) for unit, pids in unit_pids(fleet).items()}


def loop_lag(fleet: Fleet) -> dict[str, dict[float, float]]:
    """Each api host's event loop lag histogram so far (``appliance_api_event_loop_lag_
    seconds``: one sample a second per API process), as cumulative counts by bucket bound,
    read from its metrics port on the host itself."""
    lags = {}
    for name, roles in LAYOUT.items():
        if "api" not in roles:
            continue
        url = f"http://{fleet.lab.ip(name)}:{METRICS_PORT}/metrics"
        text = fleet.lab.run(
            name,
            f"python3 -c 'import urllib.request as u; print(u.urlopen(\"{url}\").read().decode())'",
            check=False,  # an unanswered read leaves the host out of the report
        ).stdout
        lags[name] = {
            float(le): float(n)
            for le, n in re.findall(
                r'^appliance_api_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M
            )
        }
    return lags


def run_load(fleet: Fleet, keys: Path, users: int, run_time: str, out: Path) -> tuple[float, float]:
    """One headless Locust run through the lb: its wall-clock seconds and the load
    generator's CPU seconds."""
    started, generator = time.monotonic(), _children_cpu()
    subprocess.run(
        [sys.executable, "-m", "bench.loadtest", "--url", fleet.url, "--keys", str(keys),
         "--users", str(users), "--spawn-rate", str(min(users, 50)), "--run-time", run_time,
         "--insecure", "--mix", "image,table", "--out", str(out)],
        cwd=REPO, check=True, timeout=3600,
    )  # fmt: skip
    return time.monotonic() - started, _children_cpu() - generator


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, nargs="+", default=[100, 300])
    ap.add_argument("--run-time", default="90s")
    ap.add_argument("--keys", type=int, default=20, help="users' keys made on the fleet")
    ap.add_argument("--out", type=Path, default=REPO / "bench/out/loadtest-fleet")
    args = ap.parse_args()
    with lab_fleet(args.keys) as lab:
        fleet = lab.fleet
        for users in args.users:
            before, lag_before = unit_cpu(fleet), loop_lag(fleet)
            wall, generator = run_load(
                fleet, lab.keys, users, args.run_time, args.out / f"u{users}"
            )
            after, lag_after = unit_cpu(fleet), loop_lag(fleet)
            used = {unit: after[unit] - before.get(unit, 0.0) for unit in after}
            used["load generator (locust)"] = generator
            report(users, wall, used)
            report_lag(lag_before, lag_after)


def report(users: int, wall: float, used: dict[str, float]) -> None:
    cores = os.cpu_count() or 1
    total = sum(used.values())
    print(f"\n{users} users: CPU of the fleet over {wall:.0f} s on {cores} cores: "
          f"{total:.0f} core-seconds, {total / (wall * cores):.0%} of the machine")  # fmt: skip
    for unit, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        if seconds / total >= 0.005:
            print(f"  {unit:34} {seconds:8.1f}  {seconds / total:6.1%} of the fleet's")
    print(flush=True)


def report_lag(before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]) -> None:
    """Per api host over the run: how many of its event loop's once-a-second timers ran
    more than 0.1 s and more than 1 s late (while late, none of the process's requests moved)."""
    for host, counts in after.items():
        was = before.get(host, {})
        run = {le: n - was.get(le, 0.0) for le, n in counts.items()}
        ticks = run.get(float("inf"), 0.0)
        late = [ticks - run.get(bound, 0.0) for bound in (0.1, 1.0)]
        print(f"  {host} event loop: {ticks:.0f} ticks, {late[0]:.0f} more than 0.1 s late, "
              f"{late[1]:.0f} more than 1 s")  # fmt: skip
    print(flush=True)


if __name__ == "__main__":
    main()
