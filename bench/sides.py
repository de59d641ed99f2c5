"""Two appliances measured side by side with wrk: rounds interleaved (the order alternating),
so the machine's noise falls on both alike; medians and the ratio of the two sides."""

from __future__ import annotations

import statistics

from bench.bench_api import wrk

Rounds = dict[str, list[tuple[float, float]]]  # side -> (requests/s, p99 ms) per round


def interleaved(
    targets: dict[str, tuple[str, str]],
    rounds: int,
    duration: int,
    connections: int,
    script: str | None = None,
) -> Rounds:
    """``rounds`` rounds of wrk against each side's (url, key)."""
    results: Rounds = {side: [] for side in targets}
    for n in range(rounds):
        for side in targets if n % 2 == 0 else reversed(targets):
            url, key = targets[side]
            results[side].append(wrk(url, key, duration, connections, script))
    return results


def report(results: Rounds, label: str, on: str = "on", off: str = "off") -> None:
    """A row per side, then ``on`` ÷ ``off``: of the medians, the median of the paired
    rounds, and the p99 the ``on`` side adds."""
    print(f"{label:8} {'median req/s':>12} {'p99 ms':>8}   rounds (req/s)")
    for side, rows in results.items():
        rps = statistics.median(r for r, _ in rows)
        p99 = statistics.median(p for _, p in rows)
        print(f"{side:8} {rps:12.0f} {p99:8.1f}   {' '.join(f'{r:.0f}' for r, _ in rows)}")
    ratio = statistics.median(r for r, _ in results[on]) / statistics.median(
        r for r, _ in results[off]
    )
    pairs = zip(results[on], results[off], strict=True)
    paired = statistics.median(a[0] / b[0] for a, b in pairs)
    p99_added = statistics.median(p for _, p in results[on]) - statistics.median(
        p for _, p in results[off]
    )
    print(
        f"{on} / {off}: {ratio:.3f} (median of paired rounds {paired:.3f});"
        f" p99 added: {p99_added:+.1f} ms"
    )
