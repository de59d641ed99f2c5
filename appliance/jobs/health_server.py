"""A process group's own HTTP port: ``/metrics``, ``/health/live``, ``/health/ready``.

Exactly one process per group binds the port and serves the samples of all the group's
processes from their shared multiprocess directory: for a worker group, a Dramatiq fork
function (``serve``, started and stopped by Dramatiq); for the API, a process that
``appliance api`` starts beside granian's workers (``serve_api``), which also reads the gauges
of shared state (queue depth, storage use, the top users of the last hour) at each scrape.
The API's own port never serves ``/metrics``: this port listens on loopback unless the
operator names another address. Ready means Postgres, Redis and storage answer from this
host; the JSON names the one that failed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from appliance import logs
from appliance.engines import QUEUE_CLASSES
from appliance.jobs.dispatch import PENDING_KEY
from appliance.metrics import scrape
from appliance.metrics.process import CONTENT_TYPE, exposition
from appliance.scanning import scanner
from appliance.settings import Settings

log = logging.getLogger(__name__)
PROBE_TIMEOUT = 5.0  # seconds for all dependencies to answer (a scrape's timeout is 10 s)


class Probes:
    """Readiness checks with the group's settings; clients are made once and reused."""

    def __init__(self, settings: Settings, scans: bool = False) -> None:
        """``scans``: the group scans imported files (a worker group), so clamd is checked."""
        import redis

        from appliance.storage import make_storage

        self.settings = settings
        self.scans = scans and scanner.enabled(settings)
        self.redis = redis.Redis.from_url(
            settings.effective_redis_url, socket_timeout=2, socket_connect_timeout=2
        )
        self.storage = make_storage(settings)
        # A thread per dependency: a probe that hangs (a dead NFS mount, a silent host) holds
        # its own thread only, and is not started again until it returns (``check``).
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe")
        self._running: dict[str, Future[object]] = {}
        self._lock = threading.Lock()

    def postgres(self) -> None:
        import psycopg

        from appliance.db import DEAD_PEER_SETTINGS
        from appliance.db.queries.health import ping_sync

        url = self.settings.effective_database_url
        with psycopg.connect(url, connect_timeout=2, **DEAD_PEER_SETTINGS) as conn:
            ping_sync(conn)

    def clamd(self) -> None:
        if not scanner.client(self.settings).ping():
            raise ConnectionError(f"clamd at {self.settings.effective_clamd_socket}")

    def shared_state(self) -> scrape.Snapshot:
        """Queue and storage gauges read now; a source that does not answer is left out (the
        series go missing, which the alert rules see) and logged."""
        import psycopg

        from appliance.db import DEAD_PEER_SETTINGS
        from appliance.db.queries.activity import top_users
        from appliance.db.queries.files import storage_use

        snapshot = scrape.Snapshot()
        try:
            pending: dict[str, str] = {q: PENDING_KEY.format(queue=q) for q in QUEUE_CLASSES}
            snapshot.queues = scrape.queues(self.redis, pending)
        except Exception:
            log.warning("metrics: queue gauges unavailable (Redis)", exc_info=True)
        try:
            url = self.settings.effective_database_url
            with psycopg.connect(
                url, connect_timeout=2, autocommit=True, **DEAD_PEER_SETTINGS
            ) as conn:
                snapshot.storage = storage_use(conn)
                snapshot.top_users = top_users(conn, scrape.TOP_USERS_SECONDS, scrape.TOP_USERS)
        except Exception:
            log.warning(
                "metrics: storage and per-user gauges unavailable (Postgres)", exc_info=True
            )
        return snapshot

    def gauges(self, shared: bool) -> scrape.Snapshot:
        """What a scrape adds to the group's samples: whether each dependency answered a
        readiness check now, and with ``shared`` the shared state. Both at once, so a
        dependency that times out delays the scrape once, within Prometheus's timeout."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-all") as one:
            checked = one.submit(self.check)
            snapshot = self.shared_state() if shared else scrape.Snapshot()
            snapshot.reachable = {name: r == "ok" for name, r in checked.result().items()}
        return snapshot

    def check(self) -> dict[str, str]:
        probes: dict[str, Callable[[], object]] = {
            "postgres": self.postgres,
            "redis": self.redis.ping,
            "storage": self.storage.check,
        }
        if self.scans:  # imports wait while clamd is down or loading
            probes["clamd"] = self.clamd
        with self._lock:  # scrapes and readiness checks come from threads of their own
            futures: dict[str, Future[object]] = {}
            for name, probe in probes.items():
                running = self._running.get(name)
                if running is None or running.done():
                    running = self._running[name] = self._pool.submit(probe)
                futures[name] = running  # one still hanging is waited on, not started again
        done, _ = wait(futures.values(), timeout=PROBE_TIMEOUT)  # one deadline for all
        checks = {}
        for name, future in futures.items():
            if future not in done:
                checks[name] = "error: timeout"
            elif (exc := future.exception()) is not None:
                checks[name] = f"error: {type(exc).__name__}"
            else:
                checks[name] = "ok"
        return checks


def make_handler(probes: Probes, shared: bool = False) -> type[BaseHTTPRequestHandler]:
    """``/metrics`` adds whether each dependency answers; ``shared``: and the gauges of
    shared state (the API group's port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, exposition(probes.gauges(shared)), CONTENT_TYPE)
            elif path == "/health/live":
                self._json(200, {"status": "ok"})
            elif path == "/health/ready":
                checks = probes.check()
                failed = [n for n, r in checks.items() if r != "ok"]
                if failed:
                    log.warning("worker not ready: %s", ", ".join(failed))
                body = {
                    "status": "error" if failed else "ok",
                    "checks": checks,
                    "failed": failed,
                    "virus_scan": "on" if scanner.enabled(probes.settings) else "off",
                }
                self._json(503 if failed else 200, body)
            else:
                self._json(404, {"code": "NOT_FOUND", "message": "Not found"})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._answer(status, json.dumps(body).encode(), "application/json")

        def _answer(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # scrapes every few seconds would drown the log

    return Handler


def serve() -> None:
    """The worker group's fork function: serve until Dramatiq stops the group."""
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    address = (settings.worker_metrics_host, settings.worker_metrics_port)
    try:
        server = ThreadingHTTPServer(address, make_handler(Probes(settings, scans=True)))
    except OSError:
        # Conversions go on without the port; the scrape target shows as down.
        log.exception("cannot serve worker metrics on %s:%s", *address)
        return
    log.info("worker metrics and health on http://%s:%s", *address)
    server.serve_forever()


def serve_api(parent: int) -> None:
    """The API group's port, until process ``parent`` (granian's main process, which
    ``appliance api`` becomes) is gone. A port that cannot be bound ends this process with an
    error; the API goes on serving, and the scrape target shows as down."""
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    address = (settings.api_metrics_host, settings.api_metrics_port)
    try:
        server = ThreadingHTTPServer(address, make_handler(Probes(settings), shared=True))
    except OSError:
        log.exception("cannot serve API metrics on %s:%s", *address)
        raise SystemExit(1) from None
    threading.Thread(target=_stop_with, args=(parent, server), daemon=True).start()
    log.info("API metrics and health on http://%s:%s", *address)
    server.serve_forever()


def _stop_with(parent: int, server: ThreadingHTTPServer) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    server.shutdown()


if __name__ == "__main__":  # python -m appliance.jobs.health_server PARENT_PID
    import sys

    serve_api(int(sys.argv[1]))
