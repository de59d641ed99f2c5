"""Steady client load through the fleet's lb while a fault runs, and what it saw.

Shared by the drills of test_fleet.py and test_drills.py. A result is a tuple
(ended, method, path, status or error, started), monotonic seconds; a 503 without
Retry-After is recorded as the string "503 without Retry-After" (never a fine answer).
"""

from __future__ import annotations

import base64
import functools
import json
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pyvips

from tests.deploy.fleet import REPO, Fleet

# Clients of the steady load, each with its own key, and how long the end of a load waits for
# a request still open (longer than the lb's 60 s read timeout, so none is left uncounted).
LOAD_CLIENTS = 4
LOAD_DRAIN_SECONDS = 75

# A POST whose key's first request is still in progress (409: on an api host that died
# inside its transaction, until Postgres gives that up) is sent again, as the API asks,
# for this long at most.
IN_PROGRESS_RESEND_SECONDS = 30

Result = tuple[float, str, str, "int | str", float]


@dataclass(frozen=True)
class Client:
    """How a load client behaves. ``retry_for``: seconds a request is sent again after a
    transport error, 502, 503 or 504 (0: never, the first answer counts), waiting its
    Retry-After (1 s without one). ``converts``: its jobs convert a small picture on the
    workers (import/base64 -> convert webp) instead of waiting for an upload."""

    retry_for: float = 0.0
    converts: bool = False
    sync_waits: bool = False  # each job made is then waited for on the sync API
    side: int = 64  # pixels of the converted picture's side (4000: seconds of work)
    # the answers sent again, as results (ended, method, path, status, started)
    retried: list = field(default_factory=list, compare=False)


RETRIED = (502, 503, 504)
# A sync wait answers within the fleet's sync timeout (120 s by default) and the lb waits 15 s
# more: a client gives it longer than the other requests' 60 s.
SYNC_CLIENT_TIMEOUT = 150


@functools.cache
def gradient_png(side: int) -> bytes:
    base = pyvips.Image.xyz(side, side).extract_band(0).cast("uchar")
    return base.bandjoin([base, base]).write_to_buffer(".png")


def png_base64(side: int) -> str:
    """A picture no job converted before (a text chunk of its own after the header), so
    the conversion cache has no output for it and a worker does the work."""
    png = gradient_png(side)
    text = b"Comment\x00" + uuid.uuid4().hex.encode()
    crc = zlib.crc32(b"tEXt" + text)
    chunk = struct.pack(">I", len(text)) + b"tEXt" + text + struct.pack(">I", crc)
    header = 8 + 25  # the signature and the IHDR chunk
    return base64.b64encode(png[:header] + chunk + png[header:]).decode()


def job_body(tag: str, how: Client) -> dict:
    if not how.converts:
        return {"tasks": {"up": {"operation": "import/upload"}}, "tag": tag}
    return {
        "tag": tag,
        "tasks": {
            "in": {
                "operation": "import/base64",
                "file": png_base64(how.side),
                "filename": "in.png",
            },
            "c": {"operation": "convert", "input": "in", "output_format": "webp"},
        },
    }


def status_of(answer: httpx.Response) -> int | str:
    if answer.status_code == 503 and "Retry-After" not in answer.headers:
        return "503 without Retry-After"
    return answer.status_code


def send(api: httpx.Client, method: str, path: str, how: Client, **kw) -> int | str:
    """One request as a client sends it, again while it fails retryably (``how.retry_for``
    s); the status (or error) of the last answer. Answers go to ``kw['answers']`` if given."""
    answers: list | None = kw.pop("answers", None)
    deadline = time.monotonic() + how.retry_for
    while True:
        wait, started = 1.0, time.monotonic()
        try:
            answer = api.request(method, path, **kw)
            status: int | str = status_of(answer)
            wait = float(answer.headers.get("Retry-After", "1"))
            if answers is not None:
                answers.append(answer)
            if status not in RETRIED:
                return status
        except httpx.HTTPError as exc:
            status = repr(exc)
        if time.monotonic() + wait > deadline:
            return status
        how.retried.append((time.monotonic(), method, path, status, started))
        time.sleep(wait)


def create(api: httpx.Client, body: dict, how: Client) -> httpx.Response | str:
    """POST /v2/jobs as a careful client does: with an Idempotency-Key (the lb may resend it
    to another api host; the job is made once), sent again with that key after a 409, and
    after a retryable failure for ``how.retry_for`` s. The last answer, or the error's repr."""
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    deadline = time.monotonic() + max(IN_PROGRESS_RESEND_SECONDS, how.retry_for)
    while True:
        answers: list[httpx.Response] = []
        status = send(api, "POST", "/v2/jobs", how, json=body, headers=headers,
                      answers=answers)  # fmt: skip
        if status != 409 or time.monotonic() > deadline:
            return answers[-1] if answers and isinstance(status, int) else str(status)
        time.sleep(float(answers[-1].headers.get("Retry-After", "1")))


def steady_load(
    fleet: Fleet, key: str, stop: threading.Event, results: list, made: list[str], how: Client
) -> None:
    """One client's load; the ids of the jobs it made go to ``made`` ("tag id"), its jobs
    tagged with one tag per client."""
    tag = f"load-{uuid.uuid4().hex}"
    body = job_body(tag, how)
    with fleet.client(key) as api:
        first = create(api, body, Client(retry_for=60))
        assert not isinstance(first, str) and first.status_code == 201, first
        job_id = first.json()["data"]["id"]
        made.append(f"{tag} {job_id}")
        while not stop.is_set():
            steps = [("GET", f"/v2/jobs/{job_id}"), ("POST", "/v2/jobs"),
                     ("GET", "/v2/jobs?per_page=5")]  # fmt: skip
            for method, path in steps:
                started = time.monotonic()
                if method == "POST":
                    body = job_body(tag, how)
                    answer = create(api, body, how)
                    status = answer if isinstance(answer, str) else status_of(answer)
                    if status == 201 and not isinstance(answer, str):
                        made.append(f"{tag} {answer.json()['data']['id']}")
                        if how.sync_waits:
                            results.append((time.monotonic(), method, path, status, started))
                            started, method = time.monotonic(), "SYNC"
                            path = f"/sync/v2/jobs/{answer.json()['data']['id']}"
                            status = send(api, "GET", path, how, timeout=SYNC_CLIENT_TIMEOUT)
                else:
                    status = send(api, method, path, how)
                results.append((time.monotonic(), method, path, status, started))
            time.sleep(0.1)


def under_load(
    fleet: Fleet,
    action: Callable[[], object],
    made: list[str] | None = None,
    how: Client | None = None,
) -> list[Result]:
    """Runs ``action`` while LOAD_CLIENTS clients call the API side by side; every request
    is in the result, by end time. A client still waiting on a request LOAD_DRAIN_SECONDS
    after the end counts as a failure. The jobs the clients made go to ``made``."""
    stop, results = threading.Event(), []
    made = [] if made is None else made
    how = how or Client()
    threads = [
        threading.Thread(target=steady_load, args=(fleet, fleet.key(), stop, results, made, how))
        for _ in range(LOAD_CLIENTS)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        action()
        time.sleep(2)
    finally:
        stop.set()
        ended = time.monotonic()
        for thread in threads:
            thread.join(max(0.0, ended + LOAD_DRAIN_SECONDS - time.monotonic()))
    hung = sum(thread.is_alive() for thread in threads)
    results.extend([(time.monotonic(), "?", "(still waiting)", "hung", ended)] * hung)
    return sorted(results)


def timeline(results: list) -> str:
    """Requests per second of the load and the slowest ones, to see where a thin run lost its
    time."""
    if not results:
        return "no requests"
    start = results[0][4]
    per_second: dict[int, int] = {}
    for ended, *_rest in results:
        per_second[int(ended - start)] = per_second.get(int(ended - start), 0) + 1
    slowest = sorted(results, key=lambda r: r[0] - r[4], reverse=True)[:8]
    slow = [f"{r[1]} {r[2].split('?')[0]} {r[3]} at +{r[4] - start:.1f}s took {r[0] - r[4]:.2f}s"
            for r in slowest]  # fmt: skip
    return f"{len(results)} requests, per second {per_second}; slowest: {slow}"


def failures(results: list, allowed: tuple = ()) -> list:
    """The requests not answered with success (nor with one of ``allowed``)."""
    return [r for r in results if not (isinstance(r[3], int) and (r[3] < 400 or r[3] in allowed))]


def seen(results: list) -> dict[str, int]:
    """How often each answer came, by method, route and status."""
    kinds: dict[str, int] = {}
    for _, method, path, status, _started in results:
        route = "/".join("{id}" if len(p) == 36 else p for p in path.split("?")[0].split("/"))
        kind = f"{method} {route} {status}"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def outage(results: list, how: Client, fault: float | None = None) -> dict[str, float | int]:
    """The client-visible outage of a drill: the seconds from the first to the last answer
    that was not a success (a final answer, or one a retrying client had to send again), and
    where those two came relative to ``fault`` (its start, monotonic), if given. 0 s and no
    offsets when every answer was a success."""
    bad = sorted(failures(results) + list(how.retried))
    if not bad:
        return {"seconds": 0.0, "answers": 0}
    window: dict[str, float | int] = {"seconds": round(bad[-1][0] - bad[0][0], 1),
                                      "answers": len(bad)}  # fmt: skip
    if fault is not None:
        window["first_after_fault"] = round(bad[0][0] - fault, 1)
        window["last_after_fault"] = round(bad[-1][0] - fault, 1)
    return window


def record_seen(
    name: str, results: list, how: Client, fault: float | None = None, **figures: float
) -> None:
    """What the clients of drill ``name`` saw: final answers, answers they retried, and the
    outage (``outage``) to count against availability, with the drill's own ``figures``
    (seconds, rounded to 0.1); in bench/out/drills.json."""
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "drills.json"
    drills = json.loads(path.read_text()) if path.exists() else {}
    drills[name] = {"answers": seen(results), "retried": seen(how.retried),
                    "outage": outage(results, how, fault),
                    **{k: round(v, 1) for k, v in figures.items()}}  # fmt: skip
    path.write_text(json.dumps(drills, indent=2, sort_keys=True))
    print(f"{name}: client-visible outage {drills[name]['outage']}")


def explain(fleet: Fleet, results: list, log: str = "", allowed: tuple = ()) -> str:
    """What a failed load test needs to be understood: the failures by kind and time, the
    deploy's rolling steps, and the lb's nginx error log."""
    failed = failures(results, allowed)
    if not failed:
        return ""
    to_wall = time.time() - time.monotonic()  # the deploy logs wall-clock times

    def clock(t: float) -> str:
        return (
            time.strftime("%H:%M:%S", time.localtime(t + to_wall)) + f"{(t + to_wall) % 1:.2f}"[1:]
        )

    nginx = fleet.lab.run(
        "h1",
        "grep -v 'no live upstreams' /var/log/nginx/appliance-error.log | tail -n 40;"
        " echo \"and $(grep -c 'no live upstreams' /var/log/nginx/appliance-error.log)"
        " 'no live upstreams', first and last:\";"
        " grep 'no live upstreams' /var/log/nginx/appliance-error.log | sed -n '1p;$p'",
        check=False,
    )
    return "\n".join(
        [
            f"{len(failed)} of {len(results)} requests failed, from {clock(failed[0][0])}"
            f" to {clock(failed[-1][0])} (load from {clock(results[0][0])}): {seen(failed)}",
            timeline(results),
            *(line for line in log.splitlines() if "rolling:" in line),
            "nginx error log (h1):",
            nginx.stdout,
        ]
    )


def jobs_by_tag(made: list[str]) -> dict[str, set[str]]:
    answered: dict[str, set[str]] = {}
    for line in made:
        tag, job_id = line.split()
        answered.setdefault(tag, set()).add(job_id)
    return answered


def count_in_db(fleet: Fleet, tags: list[str]) -> dict[str, int]:
    """Jobs in the database per tag (read on the primary of the moment)."""
    quoted = ",".join(f"'{tag}'" for tag in tags)
    count = (
        "cd / && runuser -u postgres -- psql -d appliance -AtF ' ' -c "
        f'"SELECT tag, count(*) FROM jobs WHERE tag IN ({quoted}) GROUP BY tag"'
    )
    out = fleet.lab.run(fleet.db_primary(), count).stdout.splitlines()
    return {tag: int(n) for tag, n in (line.split() for line in out)}


def unfinished(fleet: Fleet, made: list[str], within: float) -> dict[str, int]:
    """Waits up to ``within`` s for every job of ``made`` ("tag id") to end; the count of
    those not finished by then, by status (empty: all finished)."""
    ids = ",".join(f"'{line.split()[1]}'" for line in made)
    query = (
        "cd / && runuser -u postgres -- psql -d appliance -AtF ' ' -c "
        f"\"SELECT status, count(*) FROM jobs WHERE id IN ({ids}) AND status <> 'finished'"
        ' GROUP BY status"'
    )
    deadline = time.monotonic() + within
    while True:
        out = fleet.lab.run(fleet.db_primary(), query).stdout.splitlines()
        left = {status: int(n) for status, n in (line.split() for line in out)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(2)
