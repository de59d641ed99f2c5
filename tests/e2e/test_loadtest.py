"""A short run of the bundled load test (bench/loadtest) against a running appliance: keys
made by the tool, every request and every job succeeds (or is shed with a 503 on a busy
machine), every job's file is its own (``--unique-files``) and of the kinds asked
(``--mix``), and the report (Locust's CSV and HTML, the queue samples, the PNG plots)
is written and readable."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import pyvips

from tests.e2e.conftest import Deployment

# Its own deployment: the load it leaves queued would slow the modules after it.
OWN_DEPLOYMENT = True

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("deployment", ["local"], indirect=True)
def test_a_short_load_test_succeeds_and_writes_its_report(deployment: Deployment, tmp_path):
    out = tmp_path / "run"
    metrics = f"http://127.0.0.1:{deployment.env['APPLIANCE_API_METRICS_PORT']}/metrics"
    ran = subprocess.run(
        [sys.executable, "-m", "bench.loadtest", "--url", deployment.url, "--make-keys", "3",
         "--users", "6", "--spawn-rate", "6", "--run-time", "12s", "--metrics-url", metrics,
         "--unique-files", "--mix", "image,text", "--out", str(out)],
        env=deployment.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert len((out / "keys.txt").read_text().split()) == 3
    assert oct((out / "keys.txt").stat().st_mode & 0o777) == "0o600"
    with (out / "locust_stats.csv").open() as f:
        rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    for name in (("POST", "/v2/jobs"), ("JOB", "created to ended"), ("GET", "download")):
        assert int(rows[name]["Request Count"]) > 0, (name, sorted(rows))
    # Every request succeeds, but for the appliance shedding load on a machine the rest of
    # the suite keeps busy: a 503 (sent with Retry-After), one in ten at most. (Seen in a
    # parallel run: Postgres closed an API connection, likely a transaction starved of CPU
    # past its 5 s idle limit; the request was answered 503.)
    with (out / "locust_failures.csv").open() as f:
        failed = {r["Error"]: int(r["Occurrences"]) for r in csv.DictReader(f)}
    shed = sum(n for error, n in failed.items() if "503 Server Error" in error)
    assert shed == sum(failed.values()), (failed, ran.stdout[-2000:])
    assert shed * 10 <= int(rows[("", "Aggregated")]["Request Count"]), ran.stdout[-2000:]
    assert "Locust" in (out / "report.html").read_text()
    with psycopg.connect(deployment.database_url) as conn:
        files, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT f.sha256) FROM task_files f"
            " JOIN tasks t ON t.id = f.task_id JOIN users u ON u.id = t.user_id"
            " WHERE t.operation = 'import/base64' AND u.email LIKE 'loadtest-%'"
        ).fetchone() or (0, 0)
        targets = {
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT t.payload->>'output_format' FROM tasks t"
                " JOIN users u ON u.id = t.user_id"
                " WHERE t.operation = 'convert' AND u.email LIKE 'loadtest-%'"
            )
        }
    posts = rows[("POST", "/v2/jobs")]
    assert files >= int(posts["Request Count"]) - int(posts["Failure Count"]) > 0  # 503s made none
    assert distinct == files
    assert targets == {"webp", "html"}  # images and texts, as --mix asked: no tables
    with (out / "queues.csv").open() as f:
        assert {r["queue"] for r in csv.DictReader(f)} >= {"light"}
    for plot in ("throughput", "latency", "errors", "queue-depth"):
        image = pyvips.Image.new_from_file(str(out / f"{plot}.png"))
        assert (image.width, image.height) == (800, 350)
