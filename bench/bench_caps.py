"""The cost of the per-user caps on job creation, at their worst: POST /v2/jobs (an
import/base64 job, which ends at once and stores a file) for a user who already has 499 jobs in
flight, with the caps on (the default 500 in flight and the stored-bytes cap: one more query a
creation, and the stored-bytes triggers on task_files) and off (caps 0 and those triggers
disabled), two appliances side by side, rounds interleaved.

    .venv/bin/python -m bench.bench_caps [--duration 10] [--rounds 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import base64
import json
import tempfile
from contextlib import ExitStack

import httpx
import psycopg

from bench.bench_api import wrk
from bench.harness import appliance
from bench.sides import interleaved, report

OPEN_JOBS = 499
JOB = {
    "tasks": {
        "in": {
            "operation": "import/base64",
            "file": base64.b64encode(b"a small file of text\n").decode(),
            "filename": "a.txt",
        }
    }
}
SIDES = {
    "off": {},
    "on": {
        "APPLIANCE_MAX_JOBS_IN_FLIGHT_PER_USER": "500",
        "APPLIANCE_MAX_STORED_BYTES_PER_USER": str(10 * 1024**3),
    },
}
TRIGGERS = ("task_files_owner", "task_files_stored_added", "task_files_stored_gone")


def _prepare(url: str, key: str, database_url: str, side: str) -> None:
    """The user's 499 jobs in flight (uploads never sent); the off side without triggers."""
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=auth, timeout=60) as api:
        for _ in range(OPEN_JOBS):
            made = api.post("/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}})
            made.raise_for_status()
    if side == "off":
        with psycopg.connect(database_url, autocommit=True) as conn:
            for trigger in TRIGGERS:
                conn.execute(f"ALTER TABLE task_files DISABLE TRIGGER {trigger}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with ExitStack() as stack:
        lua = stack.enter_context(tempfile.NamedTemporaryFile("w", suffix=".lua"))
        lua.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [[{json.dumps(JOB)}]]\n"
        )
        lua.flush()
        urls = {}
        for side, env in SIDES.items():
            app = stack.enter_context(appliance(start_workers=False, env_extra=env))
            _prepare(app.url, app.key, app.env["APPLIANCE_DATABASE_URL"], side)
            urls[side] = (app.url + "/v2/jobs", app.key)
            wrk(*urls[side], 3, args.connections, lua.name)  # warm-up
        results = interleaved(urls, args.rounds, args.duration, args.connections, lua.name)
    report(results, "caps")


if __name__ == "__main__":
    main()
