"""Writes the Grafana dashboards (dashboards/*.json) from the panel lists below.

    python3 monitoring/grafana/build.py

The JSON files are committed (the deploy copies them as they are); a test checks they match
this script's output, so edit here and run it. Every panel's query is evaluated against a
running appliance by tests/integration/monitoring/test_prometheus.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"
API = 'job="appliance-api"'
WORKER = 'job="appliance-worker"'
# Sync waits, uploads and downloads last as long as the job or the file: not latency.
TIMED = 'job="appliance-api",route!~".*/wait|/sync/.*|/v2/upload/.*|/v2/files/.*"'
REAL_FS = 'job="node",fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs"'


def quantile(q: float, metric: str, selector: str, by: str = "") -> str:
    return (
        f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) "
        f"(rate({metric}_bucket{{{selector}}}[{RATE}])))"
    )


def panel(
    title: str, targets: list[tuple[str, str]], unit: str = "short", kind: str = "timeseries"
) -> dict[str, Any]:
    return {
        "title": title,
        "type": kind,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(65 + i), "expr": expr, "legendFormat": legend, "datasource": DATASOURCE}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


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

DASHBOARDS = {
    "appliance-overview": ("Appliance: overview", OVERVIEW),
    "appliance-engines": ("Appliance: engines", ENGINES),
    "appliance-infrastructure": ("Appliance: infrastructure", INFRASTRUCTURE),
}


def dashboard(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    laid_out = []
    for i, p in enumerate(panels):  # two columns of 12 x 8
        laid_out.append(
            {"id": i + 1, "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}, **p}
        )
    return {
        "uid": uid,
        "title": title,
        "tags": ["appliance"],
        "timezone": "utc",
        "schemaVersion": 37,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "panels": laid_out,
    }


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{uid}.json": json.dumps(dashboard(uid, title, panels), indent=2, ensure_ascii=False)
        + "\n"
        for uid, (title, panels) in DASHBOARDS.items()
    }


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / "dashboards" / name).write_text(text)
        print("wrote", HERE / "dashboards" / name)
