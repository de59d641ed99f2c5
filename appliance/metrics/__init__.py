"""Prometheus metrics of the appliance: the one catalogue of names, and where they are kept.

Names follow ``appliance_<area>_<name>_<unit>``. Every process group (the API's granian
workers, each ``appliance worker`` with its Dramatiq processes) writes its samples to files in
its own directory (prometheus-client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``), and
its ``/metrics`` adds them up over the group's processes. ``process.prepare`` sets that up
before anything imports ``prometheus_client``; without it (unit tests, scripts) the metrics
live in the process's own default registry.

Label values are small, closed sets (route templates, operations, engine ids, queue classes),
created up front where known so every series exists, with value 0, from the first scrape.
The gauges that describe shared state (queue depth, storage use) are not here: the API
computes them from Redis and Postgres at scrape time (``scrape.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

# Seconds; the 2 s bucket lets the p95 > 2 s alert be read exactly.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0)
CONVERSION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

HTTP_REQUESTS = Counter(
    "appliance_http_requests",
    "HTTP requests answered, by route template, method and status class.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "appliance_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response body, by route template, "
    "method and status class.",
    ["route", "method", "status"],
    buckets=HTTP_BUCKETS,
)
JOBS_CREATED = Counter("appliance_jobs_created", "Jobs created through the API.")
JOBS_ENDED = Counter(
    "appliance_jobs_ended",
    "Jobs that reached a final status (finished or error) when a worker ended their last task,"
    " by whose fault an error was (fault: none when finished; service when a task failed with"
    " one of errors.SERVICE_FAULT_CODES, else client).",
    ["status", "fault"],
)
TASKS_ENDED = Counter(
    "appliance_tasks_ended",
    "Tasks ended, by operation and final status (finished, error): by a worker, or by the "
    "API for the imports it completes (upload, base64). A retryable "
    "failure that will run again counts as status retry.",
    ["operation", "status"],
)
TASKS_IN_PROGRESS = Gauge(
    "appliance_tasks_in_progress",
    "Tasks running now in this worker process group, by queue.",
    ["queue"],
    multiprocess_mode="livesum",
)
TASK_DURATION = Histogram(
    "appliance_task_duration_seconds",
    "Time a worker spent on one task attempt, by operation.",
    ["operation"],
    buckets=CONVERSION_BUCKETS,
)
CONVERSIONS = Counter(
    "appliance_conversions",
    "Engine runs (one hop of a route), by engine, format pair and result (ok, error).",
    ["engine", "src", "dst", "result"],
)
CONVERSION_DURATION = Histogram(
    "appliance_conversion_duration_seconds",
    "Time of a successful engine run (one hop), by engine and format pair.",
    ["engine", "src", "dst"],
    buckets=CONVERSION_BUCKETS,
)
VIRUS_SCANS = Counter(
    "appliance_virus_scans",
    "Imported files scanned by clamd, by result (clean, infected), and scan attempts that"
    " found clamd unavailable (unavailable).",
    ["result"],
)
VIRUS_SCAN_DURATION = Histogram(
    "appliance_virus_scan_duration_seconds",
    "Time clamd took to scan one imported file (streamed to it), clean or infected.",
    buckets=HTTP_BUCKETS,
)
CACHE_LOOKUPS = Counter(
    "appliance_conversion_cache_lookups",
    "Conversion-cache lookups by result (hit, miss).",
    ["result"],
)
STATUS_READS = Counter(
    "appliance_status_reads",
    "Job and task status reads by result (hit: from the API process's cache; miss: from the"
    " database).",
    ["result"],
)
STORAGE_WRITES = Counter(
    "appliance_storage_writes",
    "Files brought into content-addressed storage, by result: written, or deduplicated "
    "(the same bytes were already stored).",
    ["result"],
)
UPLOAD_BYTES = Counter(
    "appliance_upload_bytes",
    "Bytes of input files received, by source (upload, url, base64, s3).",
    ["source"],
)
ENGINE_RESTARTS = Counter(
    "appliance_engine_restarts",
    "Sandboxed engine helpers (re)started, by reason: start (first use), recycled (served "
    "its quota), crashed, timeout, died (found dead before use).",
    ["reason"],
)
ADMISSION_REJECTIONS = Counter(
    "appliance_admission_rejections",
    "Requests answered 503 because the appliance could not take them, by reason"
    " (requests-in-flight: the API process's cap; database: no Postgres connection in time or"
    " Postgres unreachable; queue-backlog: a queue class past its cap).",
    ["reason"],
)
RATELIMIT_REJECTIONS = Counter(
    "appliance_ratelimit_rejections",
    "Requests refused by a rate limit (429), by scope: what it is counted per (ip: a client"
    " address, e.g. its failed authentications; key: an API key; user: a user's jobs in"
    " flight or sync requests open).",
    ["scope"],
)

WEBHOOK_DELIVERIES = Counter(
    "appliance_webhook_deliveries",
    "Attempts at webhook deliveries, by outcome: delivered (2xx), retry (a network error,"
    " 408, 429 or 5xx with attempts left), failed (any other answer, a refused address or"
    " the last attempt), gone (410: the webhook is disabled).",
    ["outcome"],
)

# The API processes' own state, sampled every second (``runtime.RuntimeWatch``).
EVENT_LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

EVENT_LOOP_LAG = Histogram(
    "appliance_api_event_loop_lag_seconds",
    "How late an API process's event loop ran a timer due every second: the time the loop was"
    " held by work that did not yield (a blocking call, a long computation), during which"
    " none of the process's requests moved.",
    buckets=EVENT_LOOP_LAG_BUCKETS,
)
DB_POOL_CONNECTIONS = Gauge(
    "appliance_db_pool_connections",
    "The API processes' pooled Postgres connections, by pool (primary, replica) and state"
    " (in_use: checked out by a request; idle: open, free).",
    ["pool", "state"],
    multiprocess_mode="livesum",
)
DB_POOL_WAITING = Gauge(
    "appliance_db_pool_waiting_requests",
    "Requests of the API processes waiting for a pooled Postgres connection, by pool.",
    ["pool"],
    multiprocess_mode="livesum",
)


def preset(queues: Iterable[str] = (), operations: Iterable[str] = ()) -> None:
    """Create the series of the queue classes and task operations the caller knows (the
    engines' queue classes, the enabled operations: this package imports neither), so
    dashboards and alerts see 0, not nothing. Safe to call again."""
    for queue in queues:
        TASKS_IN_PROGRESS.labels(queue)
    for operation in operations:
        for status in ("finished", "error", "retry"):
            TASKS_ENDED.labels(operation, status)


# Every other known label value exists from the start.
for _status, _fault in (("finished", "none"), ("error", "client"), ("error", "service")):
    JOBS_ENDED.labels(_status, _fault)
for _result in ("hit", "miss"):
    CACHE_LOOKUPS.labels(_result)
for _result in ("clean", "infected", "unavailable"):
    VIRUS_SCANS.labels(_result)
for _result in ("written", "deduplicated"):
    STORAGE_WRITES.labels(_result)
for _source in ("upload", "url", "base64", "s3"):
    UPLOAD_BYTES.labels(_source)
for _reason in ("start", "recycled", "crashed", "timeout", "died"):
    ENGINE_RESTARTS.labels(_reason)
for _scope in ("key", "ip", "user"):
    RATELIMIT_REJECTIONS.labels(_scope)
for _outcome in ("delivered", "retry", "failed", "gone"):
    WEBHOOK_DELIVERIES.labels(_outcome)
