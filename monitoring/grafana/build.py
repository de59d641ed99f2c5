"""Writes the Grafana dashboards (dashboards/*.json) as typed code with Grafana's own
grafana-foundation-sdk (builders for each panel kind, the dashboard schema's models).

    .venv/bin/python monitoring/grafana/build.py

The JSON files are committed (the deploy copies them as they are); a test checks they match
this script's output, so edit here and run it. Every panel's query is evaluated against a
running appliance by tests/e2e/test_monitoring.py. The uids are stable: links and
bookmarks keep working across rebuilds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, common, prometheus, stat, timeseries
from grafana_foundation_sdk.builders import dashboard as board
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    VizOrientation,
)

from appliance.metrics import slo

HERE = Path(__file__).parent
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="prometheus")
RATE = "$__rate_interval"
API = 'job="appliance-api"'
WORKER = 'job="appliance-worker"'
TIMED = slo.TIMED  # sync waits, uploads and downloads are not latency
REAL_FS = 'job="node",fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs"'

Panel = cogbuilder.Builder[model.Panel]
Steps = Sequence[tuple[float | None, str]]  # threshold steps: (from value, colour)


def quantile(q: float, metric: str, selector: str, by: str = "", window: str = RATE) -> str:
    return (
        f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) "
        f"(rate({metric}_bucket{{{selector}}}[{window}])))"
    )


def query(expr: str, legend: str, ref: str, instant: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    return q.instant() if instant else q


def panel(title: str, targets: list[tuple[str, str]], unit: str = "short") -> Panel:
    """A time series of each (PromQL, legend)."""
    p = timeseries.Panel().title(title).datasource(DATASOURCE).unit(unit).height(8).span(12)
    for i, (expr, legend) in enumerate(targets):
        p = p.with_target(query(expr, legend, chr(65 + i)))
    return p


def thresholds(steps: Steps) -> board.ThresholdsConfig:
    return (
        board.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in steps])
    )


def big(title: str, expr: str, unit: str, steps: Steps, description: str) -> Panel:
    """One number, its background coloured by ``steps``."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(4)
        .span(4)
        .thresholds(thresholds(steps))
        .color_mode(BigValueColorMode.BACKGROUND)
        .graph_mode(BigValueGraphMode.NONE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(query(expr, "", "A", instant=True))
    )


def top(title: str, expr: str) -> Panel:
    """Horizontal bars, one per series of an instant query, largest first."""
    return (
        bargauge.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .display_mode(BarGaugeDisplayMode.BASIC)
        .orientation(VizOrientation.HORIZONTAL)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(query(f"sort_desc({expr})", "{{user}}", "A", instant=True))
    )


OVERVIEW = [
    panel(
        "Requests/s by status class",
        [(f"sum by (status) (rate(appliance_http_requests_total{{{API}}}[{RATE}]))", "{{status}}")],
        "reqps",
    ),
    panel(
        "Latency p50 / p95 / p99 (without sync waits and file transfers)",
        [
            (quantile(0.5, "appliance_http_request_duration_seconds", TIMED), "p50"),
            (quantile(0.95, "appliance_http_request_duration_seconds", TIMED), "p95"),
            (quantile(0.99, "appliance_http_request_duration_seconds", TIMED), "p99"),
        ],
        "s",
    ),
    panel(
        "Error rate (5xx share)",
        [
            (
                f'(sum(rate(appliance_http_requests_total{{{API},status="5xx"}}[{RATE}])) '
                f"or vector(0)) / sum(rate(appliance_http_requests_total{{{API}}}[{RATE}]))",
                "5xx",
            )
        ],
        "percentunit",
    ),
    panel(
        "Jobs/min: created, and ended by status",
        [
            (f"sum(rate(appliance_jobs_created_total{{{API}}}[{RATE}])) * 60", "created"),
            (
                f"sum by (status) (rate(appliance_jobs_ended_total{{{WORKER}}}[{RATE}])) * 60",
                "{{status}}",
            ),
        ],
    ),
    panel(
        "Queue depth (due tasks not yet picked up)",
        [(f"max by (queue) (appliance_queue_depth{{{API}}})", "{{queue}}")],
    ),
    panel(
        "Oldest waiting message",
        [(f"max by (queue) (appliance_queue_oldest_age_seconds{{{API}}})", "{{queue}}")],
        "s",
    ),
    panel(
        "Tasks in progress",
        [(f"sum by (queue) (appliance_tasks_in_progress{{{WORKER}}})", "{{queue}}")],
    ),
    panel(
        "Conversions/min by engine family",
        [
            (
                f"sum by (engine) (rate(appliance_conversions_total{{{WORKER}}}[{RATE}])) * 60",
                "{{engine}}",
            )
        ],
    ),
    panel(
        "Tasks ended/min by operation and status",
        [
            (
                "sum by (operation, status) "
                f'(rate(appliance_tasks_ended_total{{status!="retry"}}[{RATE}])) * 60',
                "{{operation}} {{status}}",
            )
        ],
    ),
    panel(
        "p95 latency by route",
        [(quantile(0.95, "appliance_http_request_duration_seconds", API, "route"), "{{route}}")],
        "s",
    ),
    panel(
        "Conversion cache hit ratio",
        [
            (
                "sum(rate(appliance_conversion_cache_lookups_total"
                f'{{result="hit"}}[{RATE}])) / '
                f"sum(rate(appliance_conversion_cache_lookups_total[{RATE}]))",
                "hits",
            )
        ],
        "percentunit",
    ),
    panel(
        "Upload bytes/s by source",
        [(f"sum by (source) (rate(appliance_upload_bytes_total[{RATE}]))", "{{source}}")],
        "Bps",
    ),
    panel(
        "Rate-limit rejections/s",
        [
            (
                f"sum by (scope) (rate(appliance_ratelimit_rejections_total{{{API}}}[{RATE}]))",
                "{{scope}}",
            )
        ],
        "reqps",
    ),
    panel(
        "API event loop lag p99 by instance (a blocked loop holds all its requests)",
        [
            (
                quantile(0.99, "appliance_api_event_loop_lag_seconds", API, "instance"),
                "{{instance}}",
            )
        ],
        "s",
    ),
    panel(
        "API database pool: connections in use, requests waiting for one",
        [
            (
                f'sum by (pool) (appliance_db_pool_connections{{{API},state="in_use"}})',
                "in use ({{pool}})",
            ),
            (f"sum by (pool) (appliance_db_pool_waiting_requests{{{API}}})", "waiting ({{pool}})"),
        ],
    ),
]

ENGINES = [
    panel(
        "Conversion time p50 / p95 by engine",
        [
            (
                quantile(0.5, "appliance_conversion_duration_seconds", WORKER, "engine"),
                "{{engine}} p50",
            ),
            (
                quantile(0.95, "appliance_conversion_duration_seconds", WORKER, "engine"),
                "{{engine}} p95",
            ),
        ],
        "s",
    ),
    panel(
        "Conversion time p95 by format pair",
        [
            (
                quantile(0.95, "appliance_conversion_duration_seconds", WORKER, "engine, src, dst"),
                "{{engine}} {{src}}→{{dst}}",
            )
        ],
        "s",
    ),
    panel(
        "Engine runs/min by result",
        [
            (
                "sum by (engine, result) "
                f"(rate(appliance_conversions_total{{{WORKER}}}[{RATE}])) * 60",
                "{{engine}} {{result}}",
            )
        ],
    ),
    panel(
        "Engine failures/min",
        [
            (
                "sum by (engine, src, dst) "
                f'(rate(appliance_conversions_total{{{WORKER},result="error"}}[{RATE}])) * 60',
                "{{engine}} {{src}}→{{dst}}",
            )
        ],
    ),
    panel(
        "Engine helper restarts by reason (per hour)",
        [
            (
                "sum by (instance, reason) "
                f"(increase(appliance_engine_restarts_total{{{WORKER}}}[1h]))",
                "{{instance}} {{reason}}",
            )
        ],
    ),
    panel(
        "Task time p95 by operation",
        [(quantile(0.95, "appliance_task_duration_seconds", WORKER, "operation"), "{{operation}}")],
        "s",
    ),
    panel(
        "Storage writes/s: written vs deduplicated",
        [(f"sum by (result) (rate(appliance_storage_writes_total[{RATE}]))", "{{result}}")],
    ),
]

INFRASTRUCTURE = [
    panel("Targets up", [("sum by (job) (up)", "{{job}}")]),
    panel(
        "Hosts that cannot reach a dependency",
        [
            (
                "count by (dependency) (appliance_dependency_up == 0)"
                " or sum by (dependency) (appliance_dependency_up * 0)",
                "{{dependency}}",
            )
        ],
    ),
    panel(
        "CPU busy by host",
        [
            (
                "1 - avg by (instance) "
                f'(rate(node_cpu_seconds_total{{job="node",mode="idle"}}[{RATE}]))',
                "{{instance}}",
            )
        ],
        "percentunit",
    ),
    panel(
        "Memory used by host",
        [
            (
                '1 - node_memory_MemAvailable_bytes{job="node"}'
                ' / node_memory_MemTotal_bytes{job="node"}',
                "{{instance}}",
            )
        ],
        "percentunit",
    ),
    panel(
        "Filesystem used",
        [
            (
                f"max by (instance, mountpoint) (1 - node_filesystem_avail_bytes{{{REAL_FS}}} "
                f"/ node_filesystem_size_bytes{{{REAL_FS}}})",
                "{{instance}} {{mountpoint}}",
            )
        ],
        "percentunit",
    ),
    panel(
        "Object storage: bytes and objects",
        [
            (f"max(appliance_storage_bytes{{{API}}})", "bytes"),
            (f"max(appliance_storage_objects{{{API}}})", "objects"),
        ],
    ),
    panel(
        "PostgreSQL up, connections",
        [
            ('pg_up{job="postgres"}', "{{instance}} up"),
            (
                'sum by (instance) (pg_stat_activity_count{job="postgres"})',
                "{{instance}} connections",
            ),
        ],
    ),
    panel(
        "PostgreSQL commits/s",
        [
            (
                f'sum by (instance) (rate(pg_stat_database_xact_commit{{job="postgres"}}[{RATE}]))',
                "{{instance}}",
            )
        ],
    ),
    panel(
        "PostgreSQL replication lag",
        [('max by (instance) (pg_replication_lag{job="postgres"})', "{{instance}}")],
        "s",
    ),
    panel(
        "Redis memory and clients",
        [
            ('redis_memory_used_bytes{job="redis"}', "{{instance}} memory"),
            ('redis_connected_clients{job="redis"}', "{{instance}} clients"),
        ],
    ),
    panel(
        "Redis commands/s",
        [(f'rate(redis_commands_processed_total{{job="redis"}}[{RATE}])', "{{instance}}")],
    ),
    panel(
        "nginx requests/s and active connections",
        [
            (
                f'sum by (instance) (rate(nginx_http_requests_total{{job="nginx"}}[{RATE}]))',
                "{{instance}} req/s",
            ),
            ('nginx_connections_active{job="nginx"}', "{{instance}} active"),
        ],
    ),
]


GOOD, WARN, BAD = "green", "orange", "red"


def meets(objective: float) -> Steps:
    return [(None, BAD), (objective, GOOD)]


BUDGET: Steps = [(None, BAD), (0.0, WARN), (0.25, GOOD)]  # share of the month's budget left


def objective_of(name: str) -> float:
    return slo.DEFAULT_OBJECTIVES[name]


SERVICE_LEVEL = [
    big(
        "Availability (30 d)",
        '1 - slo:sli_error:ratio_rate30d{slo="availability"}',
        "percentunit",
        meets(objective_of("availability")),
        "Share of API requests answered without 5xx over 30 days; green at the objective.",
    ),
    big(
        "Availability: error budget left",
        'slo:error_budget_remaining:ratio{slo="availability"}',
        "percentunit",
        BUDGET,
        "Share of this 30-day window's 5xx budget not spent (below 0: the SLO is missed).",
    ),
    big(
        "API p95 (1 h) vs 2 s",
        quantile(0.95, "appliance_http_request_duration_seconds", TIMED, window="1h"),
        "s",
        [(None, GOOD), (1.5, WARN), (2.0, BAD)],
        "95th percentile of timed API requests over the last hour (sync waits, uploads and "
        "downloads left out); the target is under 2 s.",
    ),
    big(
        "Latency: error budget left",
        'slo:error_budget_remaining:ratio{slo="latency"}',
        "percentunit",
        BUDGET,
        "Share of this 30-day window's budget of requests over 2 s not spent.",
    ),
    big(
        "Job success (30 d)",
        '1 - slo:sli_error:ratio_rate30d{slo="jobs"}',
        "percentunit",
        meets(objective_of("jobs")),
        "Share of ended jobs that did not fail by the service's fault (see RUNBOOK.md).",
    ),
    big(
        "Jobs: error budget left",
        'slo:error_budget_remaining:ratio{slo="jobs"}',
        "percentunit",
        BUDGET,
        "Share of this 30-day window's budget of jobs failed by the service not spent.",
    ),
    big(
        "Queue depth (fullest queue) vs 1,000",
        f"max(appliance_queue_depth{{{API}}})",
        "short",
        [(None, GOOD), (100, WARN), (1000, BAD)],
        "Due tasks not yet picked up by a worker, in the fullest queue class.",
    ),
    big(
        "Oldest waiting message",
        f"max(appliance_queue_oldest_age_seconds{{{API}}})",
        "s",
        [(None, GOOD), (60, WARN), (300, BAD)],
        "How long the oldest due task of any queue has waited for a worker.",
    ),
    big(
        "Storage used (fullest filesystem) vs 80%",
        f"max(1 - node_filesystem_avail_bytes{{{REAL_FS}}} "
        f"/ node_filesystem_size_bytes{{{REAL_FS}}})",
        "percentunit",
        [(None, GOOD), (0.7, WARN), (0.8, BAD)],
        "The fullest real filesystem of any host.",
    ),
    big(
        "Hosts up",
        'sum(up{job="node"}) / count(up{job="node"})',
        "percentunit",
        [(None, BAD), (1.0, GOOD)],
        "Share of hosts whose node exporter answers; red as soon as one does not.",
    ),
    big(
        "Targets down",
        "count(up == 0) or vector(0)",
        "short",
        [(None, GOOD), (1, BAD)],
        "Scrape targets Prometheus cannot reach (which: the infrastructure dashboard).",
    ),
    big(
        "API requests/s",
        f"sum(rate(appliance_http_requests_total{{{API}}}[{RATE}]))",
        "reqps",
        [(None, "blue")],
        "Requests answered by all API hosts.",
    ),
    panel(
        "Burn rate by SLO (1 h, 6 h; 14.4 and 6 page, 1 is a ticket)",
        [
            (
                "slo:sli_error:ratio_rate1h / on (slo) (1 - slo:objective:ratio)",
                "{{slo}} 1 h",
            ),
            (
                "slo:sli_error:ratio_rate6h / on (slo) (1 - slo:objective:ratio)",
                "{{slo}} 6 h",
            ),
        ],
    ),
    panel(
        "Error budget left by SLO (30 d)",
        [("slo:error_budget_remaining:ratio", "{{slo}}")],
        "percentunit",
    ),
    top(
        "Top users by conversions (last hour)",
        f"max by (user) (appliance_user_conversions_last_hour{{{API}}})",
    ),
    top(
        "Top users by errors (last hour)",
        f"max by (user) (appliance_user_errors_last_hour{{{API}}})",
    ),
]

DASHBOARDS = {
    "appliance-service-level": ("Appliance: service level", SERVICE_LEVEL),
    "appliance-overview": ("Appliance: overview", OVERVIEW),
    "appliance-engines": ("Appliance: engines", ENGINES),
    "appliance-infrastructure": ("Appliance: infrastructure", INFRASTRUCTURE),
}


def dashboard(uid: str, title: str, panels: list[Panel]) -> board.Dashboard:
    """The panels flow left to right, top to bottom (the builder lays them out)."""
    d = (
        board.Dashboard(title)
        .uid(uid)
        .tags(["appliance"])
        .timezone("utc")
        .refresh("30s")
        .time("now-6h", "now")
        .readonly()
        .version(1)
    )
    for i, p in enumerate(panels):
        d = d.with_panel(p.id(i + 1))
    return d


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    encoder = JSONEncoder(sort_keys=False, indent=2, ensure_ascii=False)
    out = {}
    for uid, (title, panels) in DASHBOARDS.items():
        doc = json.loads(encoder.encode(dashboard(uid, title, panels).build()))
        out[f"{uid}.json"] = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return out


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / "dashboards" / name).write_text(text)
        print("wrote", HERE / "dashboards" / name)
