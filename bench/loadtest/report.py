"""PNG plots of a load-test run, from Locust's CSV history (``<prefix>_stats_history.csv``)
and the sampled queue depth (``queues.csv``): throughput, latency percentiles, failures and
queue depth over time; and the summary figures of the whole run."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt


@dataclass
class Summary:
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def line(self) -> str:
        return (
            f"{self.requests} requests, {self.failures} failed ({self.error_rate:.3%}),"
            f" {self.rps:.1f} req/s; p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms,"
            f" p99 {self.p99_ms:.0f} ms (HTTP requests; jobs as 'JOB created to ended')"
        )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def summary(prefix: Path) -> Summary:
    """The run's HTTP requests as one (Locust's 'Aggregated' row counts the JOB rows too, so
    the HTTP rows are summed here; percentiles are the most common request's)."""
    rows = [r for r in _rows(Path(f"{prefix}_stats.csv")) if r["Type"] not in ("JOB", "")]
    requests = sum(int(r["Request Count"]) for r in rows)
    failures = sum(int(r["Failure Count"]) for r in rows)
    rps = sum(_number(r["Requests/s"]) for r in rows)
    busiest = max(rows, key=lambda r: int(r["Request Count"]))
    return Summary(
        requests,
        failures,
        rps,
        _number(busiest["50%"]),
        _number(busiest["95%"]),
        _number(busiest["99%"]),
    )


def plots(prefix: Path, queues: Path, out: Path) -> list[Path]:
    history = [r for r in _rows(Path(f"{prefix}_stats_history.csv")) if r["Name"] == "Aggregated"]
    start = _number(history[0]["Timestamp"]) if history else 0.0
    t = [_number(r["Timestamp"]) - start for r in history]
    made = [
        _plot(out / "throughput.png", "Throughput", "requests/s", t,
              {"requests/s": [_number(r["Requests/s"]) for r in history],
               "failures/s": [_number(r["Failures/s"]) for r in history]}),
        _plot(out / "latency.png", "Latency (all requests)", "ms", t,
              {p: [_number(r[p]) for r in history] for p in ("50%", "95%", "99%")}),
        _plot(out / "errors.png", "Failed requests (cumulative)", "requests", t,
              {"failures": [_number(r["Total Failure Count"]) for r in history]}),
    ]  # fmt: skip
    if queues.exists():
        samples = _rows(queues)
        first = _number(samples[0]["time"]) if samples else 0.0
        depth: dict[str, tuple[list[float], list[float]]] = {}
        for row in samples:
            xs, ys = depth.setdefault(row["queue"], ([], []))
            xs.append(_number(row["time"]) - first)
            ys.append(_number(row["depth"]))
        made.append(_plot_series(out / "queue-depth.png", "Queue depth", "tasks due", depth))
    return made


def _plot(
    path: Path, title: str, unit: str, t: list[float], series: dict[str, list[float]]
) -> Path:
    return _plot_series(path, title, unit, {k: (t, v) for k, v in series.items()})


def _plot_series(
    path: Path, title: str, unit: str, series: dict[str, tuple[list[float], list[float]]]
) -> Path:
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, label=label)
    ax.set_title(title)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
