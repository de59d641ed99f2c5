"""The service-level objectives, as code: each SLI's bad and total events in PromQL over the
appliance's own metrics, recording rules for its error ratio over the standard windows, and
multi-window, multi-burn-rate alerts (the SRE workbook's pattern: page when 2% of a 30-day
error budget goes in 1 h or 5% in 6 h, open a ticket when 10% goes in 3 days; each long
window is confirmed by a short one, so an alert stops soon after the burn does).

    python -m appliance.metrics.slo > monitoring/prometheus/rules/slo.yml

writes the rules at the default objectives (a unit test checks the committed file matches);
the deploy renders them with the fleet's own (``slo_objectives`` in group data).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

API = 'job="appliance-api"'
WORKER = 'job="appliance-worker"'
# Sync waits, uploads and downloads last as long as the job or the file: not latency.
TIMED = 'job="appliance-api",route!~".*/wait|/sync/.*|/v2/upload/.*|/v2/files/.*"'
LATENCY_SECONDS = "2.0"  # a bucket bound of HTTP_BUCKETS, as prometheus-client writes it
RUNBOOK = "monitoring/RUNBOOK.md"  # the deploy replaces it with the fleet's runbook_url


@dataclass(frozen=True)
class Indicator:
    """One SLI: ``bad`` and ``total`` are PromQL event rates with ``$W`` for the window."""

    name: str
    title: str  # for summaries: "API availability"
    bad: str
    total: str
    default: float  # the objective: the share of events that must be good


INDICATORS = (
    Indicator(
        "availability",
        "API availability",
        f'sum(rate(appliance_http_requests_total{{{API},status="5xx"}}[$W]))',
        f"sum(rate(appliance_http_requests_total{{{API}}}[$W]))",
        0.999,
    ),
    Indicator(
        "latency",
        "API latency",
        f"sum(rate(appliance_http_request_duration_seconds_count{{{TIMED}}}[$W]))"
        " - sum(rate(appliance_http_request_duration_seconds_bucket"
        f'{{{TIMED},le="{LATENCY_SECONDS}"}}[$W]))',
        f"sum(rate(appliance_http_request_duration_seconds_count{{{TIMED}}}[$W]))",
        0.95,  # the seed's "p95 < 2 s": 95% of timed requests answered within 2 s
    ),
    Indicator(
        "jobs",
        "Job success",
        f'sum(rate(appliance_jobs_ended_total{{{WORKER},status="error",fault="service"}}[$W]))',
        f"sum(rate(appliance_jobs_ended_total{{{WORKER}}}[$W]))",
        0.999,
    ),
)
WINDOWS = ("5m", "30m", "1h", "6h", "3d", "30d")
DEFAULT_OBJECTIVES = {i.name: i.default for i in INDICATORS}


@dataclass(frozen=True)
class Burn:
    """An alert on a burn rate seen over a long window and confirmed over a short one."""

    suffix: str  # of the alert name
    severity: str
    # (long window, short window, burn rate): budget spent = rate x long window / 30 days
    conditions: tuple[tuple[str, str, float], ...]
    spends: str  # for the description


BURNS = (
    Burn("BudgetBurn", "page", (("1h", "5m", 14.4), ("6h", "30m", 6.0)), "2% in 1 h or 5% in 6 h"),
    Burn("BudgetSlowBurn", "ticket", (("3d", "6h", 1.0),), "10% in 3 days"),
)


def ratio(indicator: str, window: str) -> str:
    """The recorded error ratio of an SLI over a window."""
    return f'slo:sli_error:ratio_rate{window}{{slo="{indicator}"}}'


def alert_name(indicator: Indicator, burn: Burn) -> str:
    return f"Appliance{indicator.name.capitalize()}{burn.suffix}"


def recording_rules(indicator: Indicator, objective: float) -> list[dict[str, Any]]:
    """The error ratio per window (NaN, so no alert, when there were no events), the
    objective, and the share of this month's error budget left."""

    def labels() -> dict[str, str]:  # a fresh dict each time: no YAML anchors
        return {"slo": indicator.name}

    rules: list[dict[str, Any]] = [
        {
            "record": f"slo:sli_error:ratio_rate{w}",
            "expr": f"({indicator.bad.replace('$W', w)} or vector(0))"
            f" / {indicator.total.replace('$W', w)}",
            "labels": labels(),
        }
        for w in WINDOWS
    ]
    objective_rule = {"record": "slo:objective:ratio", "expr": f"vector({objective:g})"}
    rules.append({**objective_rule, "labels": labels()})
    rules.append(
        {
            "record": "slo:error_budget_remaining:ratio",
            "expr": f"1 - {ratio(indicator.name, '30d')} / {1 - objective:.6g}",
            "labels": labels(),
        }
    )
    return rules


def burn_alert(indicator: Indicator, burn: Burn, objective: float) -> dict[str, Any]:
    budget = 1 - objective
    clauses = [
        f"{ratio(indicator.name, long)} > {rate * budget:.6g}"
        f" and {ratio(indicator.name, short)} > {rate * budget:.6g}"
        for long, short, rate in burn.conditions
    ]
    name = alert_name(indicator, burn)
    return {
        "alert": name,
        "expr": "\nor ".join(clauses),
        "labels": {"severity": burn.severity, "slo": indicator.name},
        "annotations": {
            "summary": f"{indicator.title} burns its error budget too fast ({burn.severity})",
            "description": (
                f"{indicator.title} (objective {objective:.4g}) spends its 30-day error budget"
                f" at a rate that would spend {burn.spends}: {{{{ $value | humanizePercentage }}}}"
                " of its events were bad over the long window."
            ),
            "runbook_url": f"{RUNBOOK}#{name.lower()}",
        },
    }


def rules(objectives: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The rule file's content; ``objectives``: SLI name -> objective, over the defaults."""
    chosen = {**DEFAULT_OBJECTIVES, **(objectives or {})}
    unknown = set(chosen) - set(DEFAULT_OBJECTIVES)
    if unknown:
        raise ValueError(f"unknown SLOs {sorted(unknown)}; known: {sorted(DEFAULT_OBJECTIVES)}")
    for name, value in chosen.items():
        if not 0 < value < 1:
            raise ValueError(f"the {name} objective must be between 0 and 1, not {value}")
    groups = []
    for indicator in INDICATORS:
        objective = chosen[indicator.name]
        groups.append(
            {"name": f"slo-{indicator.name}", "rules": recording_rules(indicator, objective)}
        )
        groups.append(
            {
                "name": f"slo-{indicator.name}-alerts",
                "rules": [burn_alert(indicator, burn, objective) for burn in BURNS],
            }
        )
    return {"groups": groups}


HEADER = """\
# Generated by `python -m appliance.metrics.slo` (appliance/metrics/slo.py): edit there.
# Service-level objectives: error ratios per window (slo:sli_error:ratio_rate<window>), the
# objectives, the error budget left over 30 days, and multi-window burn-rate alerts.
"""


class _Dumper(yaml.SafeDumper):
    """Writes an expression of several lines as a literal block, every other one whole on
    its line (folding PromQL at spaces makes it hard to read)."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def render(objectives: Mapping[str, float] | None = None) -> str:
    body = yaml.dump(rules(objectives), Dumper=_Dumper, sort_keys=False, width=1000)
    return HEADER + body


if __name__ == "__main__":
    sys.stdout.write(render())
