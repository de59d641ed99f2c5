"""The appliance's one settings object, read from ``APPLIANCE_*`` environment variables.

Every field has a default that suits a single host, so the appliance starts with no
configuration at all. ``Settings.from_env`` validates every variable at start-up and raises
``SettingsError`` naming the variable, its value and what it accepts.
"""

from __future__ import annotations

import base64
import functools
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from appliance import embedded

PREFIX = "APPLIANCE_"
DEFAULT_DATA_DIR = "/var/lib/appliance" if os.geteuid() == 0 else "~/.local/share/appliance"
# Ports of the Postgres and Redis that `appliance up` starts itself when none is configured
# (their Unix sockets carry them in their names; TCP only when a socket cannot be used).
EMBEDDED_POSTGRES_PORT = embedded.POSTGRES_PORT
EMBEDDED_REDIS_PORT = embedded.REDIS_PORT

MiB = 1024 * 1024


def _doc(text: str, **constraints: Any) -> Meta:
    return Meta(description=text, **constraints)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """All configuration. Field ``foo_bar`` is read from ``APPLIANCE_FOO_BAR``."""

    data_dir: Annotated[
        str,
        _doc(
            "Directory for local files, the secret key and the embedded "
            "Postgres/Redis of a single host."
        ),
    ] = DEFAULT_DATA_DIR
    database_url: Annotated[
        str,
        _doc(
            "libpq URL of the PostgreSQL primary (multi-host URLs with "
            "target_session_attrs work). Empty: `appliance up` starts "
            "its own under data_dir (Unix socket in DATA_DIR/run, password in "
            "DATA_DIR/credentials)."
        ),
    ] = ""
    database_read_url: Annotated[
        str,
        _doc(
            "libpq URL of a hot-standby replica (or several, multi-host with "
            "target_session_attrs=prefer-standby) for job and task status reads. Empty: "
            "reads go to the primary."
        ),
    ] = ""
    redis_url: Annotated[
        str,
        _doc(
            "Redis URL for the Dramatiq broker and events. Empty: "
            "`appliance up` starts its own under data_dir (Unix socket in DATA_DIR/run, "
            "password in DATA_DIR/credentials)."
        ),
    ] = ""
    db_pool_size: Annotated[
        int, _doc("Connections per process in the Postgres pool.", ge=1, le=200)
    ] = 10
    db_pool_timeout_seconds: Annotated[
        float,
        _doc(
            "Longest an API request waits for a free Postgres connection (s); past it, or"
            " with Postgres unreachable, the request is answered 503 with Retry-After.",
            gt=0,
        ),
    ] = 5.0
    max_requests_in_flight: Annotated[
        int,
        _doc(
            "Requests one API process serves at once, sync and /wait requests aside; past it,"
            " 503 with Retry-After at once (0: no limit).",
            ge=0,
        ),
    ] = 1000
    max_queue_backlog: Annotated[
        int,
        _doc(
            "Tasks due on a queue class and not yet picked up by a worker beyond which new"
            " jobs for that class are refused, 503 with Retry-After (0: no limit). Jobs"
            " already accepted are kept and run.",
            ge=0,
        ),
    ] = 20_000
    service_user: Annotated[
        str,
        _doc(
            "System user `appliance up` runs everything as (Postgres, Redis, API, workers)"
            " when started as root; created when missing. Never root.",
            pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        ),
    ] = "appliance"
    host: Annotated[str, _doc("Address the API listens on.")] = "127.0.0.1"
    port: Annotated[int, _doc("TCP port the API listens on.", ge=1, le=65535)] = 8080
    api_workers: Annotated[int, _doc("granian worker processes for the API.", ge=1, le=64)] = 1
    public_url: Annotated[
        str,
        _doc(
            "Base URL clients reach the API at (upload forms and "
            "local download links use it). Empty: http://HOST:PORT."
        ),
    ] = ""
    sync_prefix: Annotated[
        str,
        _doc(
            "Path prefix of the blocking (sync) API; point the SDK's "
            "sync_endpoint at PUBLIC_URL + this prefix.",
            pattern=r"^/[A-Za-z0-9_\-/]*[A-Za-z0-9_\-]$",
        ),
    ] = "/sync"
    sync_timeout_seconds: Annotated[
        float,
        _doc(
            "Longest a sync request blocks before it answers with the current state.", gt=0, le=3600
        ),
    ] = 120.0
    max_upload_bytes: Annotated[
        int, _doc("Largest accepted file in bytes (uploads, import/url, import/base64).", ge=1)
    ] = 100 * MiB
    storage: Annotated[Literal["local", "s3"], _doc("Object storage backend.")] = "local"
    storage_path: Annotated[
        str, _doc("Root of the local storage backend. Empty: DATA_DIR/files.")
    ] = ""
    s3_endpoint: Annotated[str, _doc("S3 endpoint host:port (MinIO or any S3 service).")] = ""
    s3_access_key: Annotated[str, _doc("S3 access key.")] = ""
    s3_secret_key: Annotated[str, _doc("S3 secret key.")] = ""
    s3_bucket: Annotated[str, _doc("S3 bucket; created when missing.")] = "appliance"
    s3_region: Annotated[str, _doc("S3 region.")] = "us-east-1"
    s3_secure: Annotated[bool, _doc("Use HTTPS to reach S3.")] = False
    s3_public_url: Annotated[
        str,
        _doc(
            "Base URL clients download exported files from, when it differs from the "
            "internal S3 endpoint (e.g. https://files.example.com). Empty: the endpoint.",
            pattern=r"^(https?://[^/\s]+)?$",
        ),
    ] = ""
    secret_key: Annotated[
        str,
        _doc(
            "Secret for signed URLs; the same on every API host. "
            "Empty: generated once into DATA_DIR/secret_key."
        ),
    ] = ""
    url_ttl_seconds: Annotated[
        int, _doc("Lifetime of download and upload URLs in seconds.", ge=60)
    ] = 86400
    requests_per_minute_per_address: Annotated[
        int,
        _doc(
            "API requests one client address may make in a minute (429 past it). 0: no limit.", ge=0
        ),
    ] = 600
    requests_per_minute_per_key: Annotated[
        int,
        _doc("API requests one API key may make in a minute (429 past it). 0: no limit.", ge=0),
    ] = 1200
    conversions_per_minute_per_address: Annotated[
        int,
        _doc(
            "Tasks that convert (every operation but imports and exports) one client address"
            " may ask for in a minute; a job that would pass it is refused whole (429)."
            " 0: no limit.",
            ge=0,
        ),
    ] = 10
    auth_failures_per_minute: Annotated[
        int,
        _doc(
            "Requests with an invalid API key one client address may make in a minute; past"
            " it, every request of that address is refused (429) until the minute ends, without"
            " a database query. 0: no limit.",
            ge=0,
        ),
    ] = 20
    max_json_bytes: Annotated[
        int,
        _doc(
            "Largest JSON request body in bytes, leaving out the files of import/base64 tasks"
            " (413 past it).",
            ge=1024,
        ),
    ] = 1 * MiB
    max_inline_file_bytes: Annotated[
        int,
        _doc(
            "Largest total size in bytes of the import/base64 files of one request, decoded;"
            " larger files go through import/upload.",
            ge=0,
        ),
    ] = 10 * MiB
    max_tasks_per_job: Annotated[
        int, _doc("Most tasks one job may have (422 past it).", ge=1, le=10_000)
    ] = 100
    max_jobs_in_flight_per_user: Annotated[
        int,
        _doc(
            "Most jobs and single tasks one user may have waiting or processing; a new one"
            " past it is refused (429) until some end. 0: no limit.",
            ge=0,
        ),
    ] = 500
    max_sync_waits_per_user: Annotated[
        int,
        _doc(
            "Most blocking (sync) requests one user may have open on the whole fleet at once"
            " (429 past it). 0: no limit.",
            ge=0,
        ),
    ] = 20
    max_stored_bytes_per_user: Annotated[
        int,
        _doc(
            "Most bytes of files (imported and converted) one user's live jobs and tasks may"
            " hold; past it, new jobs and uploads are refused (403) until some expire or are"
            " deleted. 0: no limit.",
            ge=0,
        ),
    ] = 10 * 1024 * MiB
    quota_minutes_per_day: Annotated[
        int,
        _doc(
            "Conversion minutes (CPU time of engine runs) a user may use per UTC day, unless"
            " `appliance users quota` set theirs; past it, new jobs are refused (402). 0: no"
            " limit.",
            ge=0,
        ),
    ] = 0
    quota_minutes_per_month: Annotated[
        int,
        _doc(
            "Conversion minutes a user may use per UTC calendar month, as"
            " quota_minutes_per_day. 0: no limit.",
            ge=0,
        ),
    ] = 0
    usage_metering: Annotated[
        bool,
        _doc(
            "Count usage per user and day (jobs, tasks, CPU seconds, bytes, stored"
            " byte-hours) for `appliance usage`. Off: nothing is counted, so conversion-minute"
            " quotas see no use."
        ),
    ] = True
    usage_flush_seconds: Annotated[
        float,
        _doc(
            "How often the stored byte-hours accrued are written into the day's usage (they"
            " accrue exactly; this only bounds how much of a day lands in the next).",
            gt=0,
        ),
    ] = 3600.0
    sync_recheck_seconds: Annotated[
        float,
        _doc(
            "A sync request is woken by the task's or job's end (Redis pub/sub); it also"
            " re-reads the state this often in case a message was lost.",
            gt=0,
            le=300,
        ),
    ] = 15.0
    trusted_proxies: Annotated[
        str,
        _doc(
            "Comma-separated addresses or networks of the proxies in front of the API (nginx):"
            " for a request from one of them, the client address is taken from"
            " X-Forwarded-For."
        ),
    ] = "127.0.0.1/32,::1/128"
    status_cache: Annotated[
        bool,
        _doc(
            "Serve GET /v2/jobs/{id} and /v2/tasks/{id} from the API process's memory while"
            " the job is unchanged (checked against a version in Redis on every read, so a"
            " committed change is never answered with the old state)."
        ),
    ] = True
    status_cache_bytes: Annotated[
        int,
        _doc("Memory each API process may hold in cached job and task documents (bytes).", ge=0),
    ] = 64 * 1024 * 1024
    status_cache_seconds: Annotated[
        float,
        _doc(
            "Longest a cached document is served before it is read again (s); bounds how long"
            " a change is missed when its writer could not reach Redis.",
            gt=0,
        ),
    ] = 300.0
    encrypt_at_rest: Annotated[
        bool,
        _doc(
            "Seal every stored file (both storage backends) with its owner's data key,"
            " AES-256-GCM in 256 KiB chunks, before it leaves the process that received or"
            " made it. Off: new files are stored in plain; sealed ones still open."
        ),
    ] = True
    master_keys: Annotated[
        str,
        _doc(
            "The master keys that wrap the users' data keys: comma-separated"
            " `id:base64url` entries of 32 bytes each, the last one current (wraps new data"
            " keys), the others kept while `appliance master-key rewrap` moves data keys off"
            " them. Empty: the key file (master_key_file). Every API and worker host needs"
            " the same keys."
        ),
    ] = ""
    master_key_file: Annotated[
        str,
        _doc(
            "Key file read when master_keys is empty: one `id base64url` line per key, the"
            " last one current. Empty: DATA_DIR/master_keys, created with one key (mode"
            " 0600) on first use."
        ),
    ] = ""
    share_files_across_users: Annotated[
        bool,
        _doc(
            "Store identical files once and share conversion results across users (a"
            " single-tenant install). Off: each user's files and cached results are their own,"
            " so nobody learns from timing or metrics what another user has stored."
        ),
    ] = False
    allow_private_urls: Annotated[
        bool,
        _doc(
            "Let import/url and webhook deliveries reach private, loopback and link-local"
            " addresses."
        ),
    ] = False
    webhook_timeout_seconds: Annotated[
        float, _doc("Timeout of each webhook delivery's connect and read, in seconds.", gt=0)
    ] = 10.0
    webhook_max_attempts: Annotated[
        int,
        _doc(
            "Attempts at one webhook delivery before it fails (network errors, 408, 429 and 5xx"
            " are tried again): 15 with the default backoff span about 24 hours.",
            ge=1,
            le=100,
        ),
    ] = 15
    webhook_backoff_seconds: Annotated[
        float,
        _doc(
            "Wait before a webhook delivery's second attempt, in seconds; it doubles with each"
            " attempt up to APPLIANCE_WEBHOOK_BACKOFF_MAX_SECONDS.",
            gt=0,
        ),
    ] = 30.0
    webhook_backoff_max_seconds: Annotated[
        float, _doc("Longest wait between two attempts at a webhook delivery, in seconds.", gt=0)
    ] = 14400.0
    webhook_senders: Annotated[
        int,
        _doc("Webhook deliveries each worker process has in flight at once.", ge=1, le=64),
    ] = 4
    fetch_timeout_seconds: Annotated[
        float, _doc("Timeout of each import/url connect and read, in seconds.", gt=0)
    ] = 30.0
    task_max_attempts: Annotated[
        int, _doc("Attempts before a retryable failure or a lost worker fails a task.", ge=1, le=20)
    ] = 3
    task_lease_seconds: Annotated[
        int,
        _doc(
            "A running task's lease; a worker renews it, and "
            "a task whose lease lapsed is run again.",
            ge=10,
        ),
    ] = 60
    retry_backoff_seconds: Annotated[
        float, _doc("First retry delay; doubles per attempt.", gt=0)
    ] = 2.0
    no_space_pause_seconds: Annotated[
        float,
        _doc(
            "After a task meets a full disk on a worker host, the seconds that worker hands "
            "every task back to the queue (for workers with room) before it tries one again. "
            "0: no pause.",
            ge=0,
        ),
    ] = 30.0
    reconcile_interval_seconds: Annotated[
        float,
        _doc(
            "How often the reconciler looks for lost messages and lapsed leases, and chains"
            " the audit records appended since onto the log.",
            gt=0,
        ),
    ] = 10.0
    audit_retention_days: Annotated[
        float,
        _doc(
            "Audit records older than this are deleted (hourly, by the reconciler); a signed "
            "anchor of the last one deleted keeps the rest verifiable. 0: kept forever.",
            ge=0,
        ),
    ] = 365.0
    audit_limit_sample_seconds: Annotated[
        float,
        _doc(
            "Rate-limit rejections are audited at most once per limited key or address per "
            "this many seconds (per API process); 0: none are audited.",
            ge=0,
        ),
    ] = 60.0
    virus_scan: Annotated[
        Literal["clamd", "off"],
        _doc(
            "Virus scanning of every imported file before any engine sees it: `clamd` (fail "
            "closed: while clamd is down or loading, imports wait and retry, nothing is "
            "converted unscanned) or `off` (files are not scanned; /health/ready says so)."
        ),
    ] = "clamd"
    clamd_socket: Annotated[
        str,
        _doc(
            "Where clamd listens: a Unix socket path or tcp://HOST:PORT. Empty: `appliance "
            "up` starts its own (DATA_DIR/run/clamd.sock), with the signatures in "
            "APPLIANCE_CLAMD_DATABASE_DIR."
        ),
    ] = ""
    clamd_database_dir: Annotated[
        str,
        _doc(
            "Signature directory of the clamd `appliance up` starts (kept current by "
            "freshclam, Debian's clamav-freshclam)."
        ),
    ] = "/var/lib/clamav"
    clamd_wait_seconds: Annotated[
        float,
        _doc(
            "How long one attempt of an import waits for a clamd that is down or still "
            "loading its signatures before the task is retried later, in seconds.",
            ge=0,
        ),
    ] = 60.0
    clamd_timeout_seconds: Annotated[
        float, _doc("Timeout of one clamd connection, a whole scan included, in seconds.", gt=0)
    ] = 120.0
    job_retention_hours: Annotated[
        float, _doc("Jobs and their files are deleted this long after creation.", gt=0)
    ] = 24.0
    idempotency_key_hours: Annotated[
        float,
        _doc(
            "An Idempotency-Key sent on a creating request answers its repeats with the first "
            "response for this long (hours); the reconciler then deletes it.",
            gt=0,
        ),
    ] = 24.0
    sandbox: Annotated[
        Literal["bwrap", "off"],
        _doc(
            "How engines run: `bwrap` in warm bubblewrap-sandboxed helper processes (no "
            "network, no credentials, resource limits); `off` inside the worker process "
            "(development only: the worker then parses untrusted files itself)."
        ),
    ] = "bwrap"
    engine_timeout_seconds: Annotated[
        float, _doc("Wall-clock limit of one engine run; the helper is killed after it.", gt=0)
    ] = 120.0
    engine_memory_mb: Annotated[
        int,
        _doc(
            "Memory limit (heap and private mappings) of each engine helper process, in MiB.",
            ge=256,
        ),
    ] = 2048
    engine_max_processes: Annotated[
        int,
        _doc(
            "Processes and threads one engine helper may run at once (RLIMIT_NPROC, counted "
            "for the helper alone; a fork bomb stops there). Measured peaks: a helper with a "
            "warm LibreOffice about 15, with calibre's PDF output (Chromium) about 55.",
            ge=32,
        ),
    ] = 256
    engine_tmp_mb: Annotated[
        int,
        _doc(
            "Size of each engine helper's private /tmp (its HOME and the engines' scratch), "
            "in MiB: memory (tmpfs), used only as far as it is filled, emptied after every "
            "conversion. A write past it fails with 'no space left'.",
            ge=64,
        ),
    ] = 512
    engine_job_mb: Annotated[
        int,
        _doc(
            "Size of each engine helper's /job, which holds one conversion's input and "
            "outputs, in MiB: memory (tmpfs), used only as far as it is filled, freed when "
            "the conversion ends. The default holds a 100 MB input and a 1 GiB output (an "
            "engine's largest file). A write past it fails with 'no space left'.",
            ge=64,
        ),
    ] = 1536
    sandbox_seccomp: Annotated[
        bool,
        _doc(
            "Run engine helpers under the seccomp filter that denies the system calls engines "
            "never need (x86_64 only: turn it off on another architecture)."
        ),
    ] = True
    engine_restart_after: Annotated[
        int,
        _doc(
            "Conversions a warm engine helper serves before it is replaced (LibreOffice's do "
            "not count: its listener restarts on its own, APPLIANCE_OFFICE_RESTART_AFTER).",
            ge=1,
        ),
    ] = 200
    office_restart_after: Annotated[
        int,
        _doc(
            "Conversions a warm LibreOffice listener serves before it is restarted (it grows "
            "by about 0.2 MB a document; a restart costs about 0.9 s of CPU).",
            ge=1,
        ),
    ] = 1000
    chromium_restart_after: Annotated[
        int,
        _doc(
            "Pages a warm Chromium renders before it is restarted (it grows with use; a "
            "restart costs about a second).",
            ge=1,
        ),
    ] = 500
    worker_threads: Annotated[
        int,
        _doc(
            "Threads per worker process for each queue class: tasks in progress at once. "
            "More than the engine helpers, so a helper starts the next conversion while a "
            "thread records the last one's result.",
            ge=1,
            le=64,
        ),
    ] = 3
    engine_helpers: Annotated[
        int,
        _doc(
            "Sandboxed engine helpers per worker process, i.e. engine runs at once (an office "
            "helper holds a warm LibreOffice); 0: one per CPU core, never more than the "
            "threads.",
            ge=0,
            le=64,
        ),
    ] = 0
    worker_poll_ms: Annotated[
        int,
        _doc(
            "Longest a worker waits before it looks at its queue again when the queue was "
            "empty or its prefetch full (Dramatiq's own default backs off to 1000 ms, which "
            "leaves threads idle between short tasks), in milliseconds.",
            ge=5,
            le=5000,
        ),
    ] = 100
    worker_processes: Annotated[
        int, _doc("Worker processes per queue class under `appliance up`.", ge=1, le=64)
    ] = 1
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], _doc("Log level.")] = "INFO"
    log_format: Annotated[
        Literal["json", "text"],
        _doc(
            "Log lines on stdout: `json` (one object per line, with request, job and task "
            "ids) or `text` (for a terminal)."
        ),
    ] = "json"
    web_registration: Annotated[
        Literal["invite", "open"],
        _doc(
            "Who may get a web UI account: `invite` (only with a link from `appliance users "
            "invite`) or `open` (anyone who signs up)."
        ),
    ] = "invite"
    web_session_hours: Annotated[
        float, _doc("Hours a web UI sign-in lasts (sessions live in Redis).", gt=0, le=720)
    ] = 12.0
    web_invitation_hours: Annotated[
        float, _doc("Hours an invitation link from `appliance users invite` works.", gt=0)
    ] = 72.0
    grafana_url: Annotated[
        str,
        _doc(
            "Base URL of Grafana, linked from the web UI's operator page. Empty: no links.",
            pattern=r"^(https?://\S+)?$",
        ),
    ] = ""
    metrics_dir: Annotated[
        str,
        _doc(
            "Directory for the multiprocess metric files of each process group (wiped when "
            "the group starts). Empty: DATA_DIR/metrics."
        ),
    ] = ""
    drain_file: Annotated[
        str,
        _doc(
            "While this file exists the API is draining: every response closes its "
            "connection and /health/ready answers 503 (a rolling upgrade creates it). "
            "Empty: never."
        ),
    ] = ""
    api_metrics_host: Annotated[
        str,
        _doc(
            "Address the API's /metrics and /health/* listener binds: loopback unless a "
            "Prometheus on another host scrapes it (the API's own port never serves /metrics)."
        ),
    ] = "127.0.0.1"
    api_metrics_port: Annotated[
        int,
        _doc(
            "TCP port of the API's /metrics (the samples of all its granian workers, plus "
            "queue and storage gauges) and /health/*; 0 disables.",
            ge=0,
            le=65535,
        ),
    ] = 9179
    worker_metrics_host: Annotated[
        str, _doc("Address a worker process group serves /metrics and /health/* on.")
    ] = "127.0.0.1"
    worker_metrics_port: Annotated[
        int,
        _doc(
            "TCP port of a worker group's /metrics and /health/*; 0 disables. `appliance up` "
            "gives its queue groups this port + 1, + 2, + 3.",
            ge=0,
            le=65535,
        ),
    ] = 9180

    # -- derived values --------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or embedded.database_url(self.data_path)

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or embedded.redis_url(self.data_path)

    @property
    def effective_metrics_dir(self) -> Path:
        return (
            Path(self.metrics_dir).expanduser() if self.metrics_dir else self.data_path / "metrics"
        )

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_clamd_socket(self) -> str:
        return self.clamd_socket or embedded.clamd_address(self.data_path)

    @property
    def effective_storage_path(self) -> Path:
        return (
            Path(self.storage_path).expanduser() if self.storage_path else self.data_path / "files"
        )

    def signing_key(self) -> bytes:
        """The URL-signing secret; on a single host it is created once and kept in data_dir."""
        if self.secret_key:
            return self.secret_key.encode()
        return _stored_secret(self.data_path / "secret_key")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build and validate settings; the error names the offending variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, ftype in _field_types().items():
            var = PREFIX + name.upper()
            if var in environ:
                values[name] = _convert(var, environ[var], ftype)
        settings = cls(**values)
        _check_consistency(settings)
        return settings

    @classmethod
    def reference(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) for every field, for docs and `appliance settings`."""
        out = []
        for field in msgspec.structs.fields(cls):
            metas = [m for m in typing.get_args(_field_types()[field.name]) if isinstance(m, Meta)]
            text = metas[0].description if metas else ""
            out.append((PREFIX + field.name.upper(), repr(field.default), text or ""))
        return out


@functools.cache
def _stored_secret(path: Path) -> bytes:
    """The URL-signing secret in ``path``, created the first time; cached per process."""
    return embedded.stored_secret(path, 48).encode()


class SettingsError(ValueError):
    """A setting is invalid; the message names the variable."""


@functools.cache
def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Settings, include_extras=True)
    return {f.name: hints[f.name] for f in msgspec.structs.fields(Settings)}


def _convert(var: str, raw: str, ftype: Any) -> Any:
    try:
        return msgspec.convert(raw, ftype, strict=False)
    except msgspec.ValidationError as exc:
        detail = str(exc).split(" - at ")[0]
        raise SettingsError(f"{var}={raw!r} is invalid: {detail}") from None


def _master_key_entry(entry: str) -> bool:
    """An `id:base64url` master key of 32 bytes (security/envelope.py reads them)."""
    ident, sep, encoded = entry.strip().partition(":")
    try:
        key = base64.urlsafe_b64decode(encoded.strip() + "==")
    except ValueError:
        return False
    return bool(sep and ident.strip()) and len(key) == 32


def _check_consistency(s: Settings) -> None:
    if s.service_user == "root":
        raise SettingsError(f"{PREFIX}SERVICE_USER='root' is invalid: name an unprivileged user")
    if s.storage == "s3":
        for name in ("s3_endpoint", "s3_access_key", "s3_secret_key"):
            if not getattr(s, name):
                raise SettingsError(f"{PREFIX}{name.upper()} must be set when {PREFIX}STORAGE=s3")
    for name in ("database_url", "database_read_url"):
        url = getattr(s, name)
        if url and not url.startswith(("postgresql://", "postgres://")):
            raise SettingsError(
                f"{PREFIX}{name.upper()}={url!r} is invalid: expected a postgresql:// URL"
            )
    if s.master_keys and not all(_master_key_entry(e) for e in s.master_keys.split(",")):
        raise SettingsError(
            f"{PREFIX}MASTER_KEYS is invalid: expected comma-separated `id:base64url` entries"
            " of 32 bytes each"
        )
    if s.redis_url and not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(
            f"{PREFIX}REDIS_URL={s.redis_url!r} is invalid: expected a redis:// URL"
        )
