"""(c) End-to-end image conversions per minute through the API, as a ratio to the same libvips
conversion in a bare loop on the same cores, measured side by side.

Every input is a different image (one pixel differs), so the conversion cache never answers:
each API job really runs the engine. A job is upload -> convert (png -> webp) -> export/url.

    .venv/bin/python -m bench.bench_convert [--images 60] [--size 1000] [--clients 8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyvips

from bench.harness import appliance, cpu_seconds, pids_matching

CORES = os.cpu_count() or 1
JOB = {
    "tasks": {
        "up": {"operation": "import/upload"},
        "c": {"operation": "convert", "input": "up", "output_format": "webp"},
        "e": {"operation": "export/url", "input": "c"},
    }
}


def make_inputs(root: Path, count: int, size: int) -> list[Path]:
    """Photo-like inputs: smooth gradients plus sensor-like noise (compresses like a photo,
    unlike a flat test pattern). One pixel differs per image, so no two inputs are equal."""
    x = pyvips.Image.xyz(size, size)
    smooth = (x[0] * 255 / size).bandjoin([x[1] * 255 / size, (x[0] + x[1]) * 127 / size])
    noise = pyvips.Image.gaussnoise(size, size, sigma=12, mean=0)
    photo = (smooth + noise.bandjoin([noise, noise])).cast("uchar")
    photo = photo.copy_memory()
    paths = []
    for i in range(count):
        img = photo.draw_rect([i % 256, i // 256, 7], 0, 0, 1, 1, fill=True)
        path = root / f"in{i}.png"
        img.write_to_file(str(path))
        paths.append(path)
    return paths


def _bare_convert(path: Path) -> None:
    from appliance.engines.images import ImageEngine, ImageOptions

    out = path.with_suffix(".webp")
    ImageEngine().convert(path, out, "png", "webp", ImageOptions(), lambda f: None)
    out.unlink()


def bare_loop(paths: list[Path]) -> float:
    """Conversions per minute, one process per core."""
    # spawn, not fork: libvips' thread pool does not survive a fork.
    with ProcessPoolExecutor(CORES, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_bare_convert, paths[:CORES]))  # warm up imports
        start = time.perf_counter()
        list(pool.map(_bare_convert, paths))
        return len(paths) / (time.perf_counter() - start) * 60


class JsonApi:
    """The API as the load generator calls it: JSON over one keep-alive http.client
    connection per thread. Lean on purpose (about half of httpx's CPU per request): the load
    generator shares the cores with the appliance, and a remote client would cost it none."""

    def __init__(self, url: str, key: str, timeout: float = 300) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self._local = threading.local()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's JSON; RuntimeError on an error status."""
        payload = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):  # once more on a new connection if the kept one was closed
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                self._local.conn = conn
            try:
                conn.request(method, path, payload, self.headers)
                resp = conn.getresponse()
                data = resp.read()
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
                continue
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {data[:300]!r}")
            return json.loads(data)
        raise AssertionError("unreachable")


def run_job(api: JsonApi, path: Path, tasks: dict = JOB) -> None:
    """One job (``tasks``: its body, an upload first) for ``path``, to its sync answer."""
    job = api.call("POST", "/v2/jobs", tasks)["data"]
    upload(job["tasks"][0]["result"]["form"], path)
    job = api.call("GET", f"/sync/v2/jobs/{job['id']}")["data"]
    if job["status"] != "finished":
        raise RuntimeError(job)


def upload(form: dict, path: Path) -> None:
    """A lean multipart POST (http.client, 1 MB blocks): the load generator shares the cores
    with the appliance, so it should cost as little CPU as a remote client would cost here."""
    boundary = uuid.uuid4().hex
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in form["parameters"].items()
    ) + (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head.encode()) + path.stat().st_size + len(tail)
    parts = urlsplit(form["url"])
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120, blocksize=1 << 20)
    with open(path, "rb") as fh:
        conn.putrequest("POST", parts.path)
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        conn.send(head.encode())
        conn.send(fh)
        conn.send(tail)
    status = conn.getresponse().status
    conn.close()
    if status != 201:
        raise RuntimeError(f"upload answered {status}")


def through_api(
    paths: list[Path], clients: int, env: dict[str, str] | None = None
) -> tuple[float, dict[str, float]]:
    """Jobs per minute, and CPU ms per job spent by each part of the appliance (``env``: more
    settings for it)."""
    with appliance(worker_processes=CORES, worker_threads=2, env_extra=env) as app:
        api = JsonApi(app.url, app.key)
        run_job(api, paths[0])  # warm up engines and connections
        parts = {  # process groups, found again at the end: helpers start during the run
            "api": lambda: app.api_pids,
            "workers": lambda: pids_matching("appliance.jobs.worker"),
            "engine helpers": lambda: pids_matching("appliance.engines.helper"),
            "postgres": lambda: pids_matching("postgres"),
            "redis": lambda: pids_matching("redis-server"),
            "load generator": lambda: [os.getpid()],
        }
        before = {pid: cpu_seconds([pid]) for find in parts.values() for pid in find()}
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda p: run_job(api, p), paths[1:]))
        elapsed = time.perf_counter() - start
        jobs = len(paths) - 1
        cpu = {
            name: sum(cpu_seconds([pid]) - before.get(pid, 0.0) for pid in find()) / jobs * 1000
            for name, find in parts.items()
        }
        return jobs / elapsed * 60, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare, api, cpus = [], [], []
        for r in range(args.rounds):  # alternate, so machine noise hits both alike
            (Path(tmp) / f"r{r}").mkdir()
            paths = make_inputs(Path(tmp) / f"r{r}", args.images, args.size)
            bare.append(bare_loop(paths))
            rate, cpu = through_api(paths, args.clients)
            api.append(rate)
            cpus.append(cpu)
            print(f"round {r + 1}: bare {bare[-1]:.0f}/min, API {api[-1]:.0f}/min")
    b, a = statistics.median(bare), statistics.median(api)
    print(
        f"{args.size}x{args.size} PNG -> WebP on {CORES} cores: bare libvips {b:.0f}/min, "
        f"through the API {a:.0f}/min, ratio {a / b:.2f}"
    )
    print(
        f"bare loop CPU per conversion: {CORES * 60000 / b:.0f} ms; through the API, CPU ms "
        "per job (median of rounds):"
    )
    for part in cpus[0]:
        print(f"  {part:15} {statistics.median(c[part] for c in cpus):6.1f}")


if __name__ == "__main__":
    main()
