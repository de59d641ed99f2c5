"""The lab's fixed settings (the run-dependent ones come from the harness's JSON file)."""

fleet_name = "lab"
# A light engine set keeps the CI run short: libvips and the data engine's libraries come
# as wheels, so worker hosts install no engine Debian packages and only `light` runs.
engine_families = ["images", "data"]
worker_queues = {
    "light": {"processes": 1, "threads": 2, "metrics_port": 9181, "memory_max": "1G"},
}
api_workers = 1
max_upload_bytes = 20 * 1024 * 1024
# Grafana's APT repository is unreachable from here: skip it, still check its files.
grafana = False
grafana_skip_reason = "the lab has no route to apt.grafana.com"
# Enough for the e2e's steady load from one client address (nginx's limit and the app's).
rate_limit_per_second = 500
rate_limit_burst = 1000
requests_per_minute_per_address = 0
requests_per_minute_per_key = 0
conversions_per_minute_per_address = 0
# The rolling upgrade's steady load leaves hundreds of upload jobs of one user in flight.
max_jobs_in_flight_per_user = 0
# The lab has no route to ClamAV's signature mirrors, and clamd cannot start without
# signatures: scanning stays off here (its templates are checked by tests/deploy/unit).
virus_scan = "off"
# Drills hold a fault for seconds to a minute or two: every alert's `for` is a quarter of
# production's (a target down fires after 30 s, not 2 minutes), so each drill's alert fires
# within it. monitoring/prometheus/tests checks the rules with their own.
alert_for_scale = 0.25
