"""Runs every conversion the appliance claims (the format graph, as /v2/convert/formats lists
it) for every file of the real-world corpus: files copied unchanged from other projects' test
suites (``../shared/corpus/real`` beside the checkout, or ``APPLIANCE_CORPUS``; its sources are
in the SOURCES.md above it). Routes run hop by hop through the sandboxed engines, each output
checked as a worker checks it (``check_output``); the input is first checked against its
content, as a worker does.

Routes from one file share their first hops (docx -> pdf -> png and docx -> pdf -> webp): a
hop's outputs are made once per file and reused by every route that starts with the same hops,
as the engines give the same output for the same input. That is what keeps a run of some 1,500
conversions within minutes.

    .venv/bin/python -m tests.integration.engines.corpus [threads]

prints each failure and the share that converts.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from appliance.conversions.work import check_output, not_what_it_says
from appliance.engines.enabled import enabled_engines
from appliance.engines.formats import mismatch, normalize
from appliance.engines.registry import Hop, Registry
from appliance.engines.sandbox import HelperPool, Limits, sandboxed
from appliance.errors import PermanentError, RetryableError

ROOT = Path(__file__).resolve().parents[3]
CORPUS = Path(os.environ.get("APPLIANCE_CORPUS") or ROOT.parent / "shared" / "corpus" / "real")
LIMITS = Limits(timeout_seconds=120)  # the worker's default per engine run


@dataclass(frozen=True)
class Outcome:
    file: str
    output_format: str
    engine: str  # the route's engines, as /v2/convert/formats names them ("a+b")
    code: str | None  # None: converted
    message: str = ""
    seconds: float = 0.0


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        raise FileNotFoundError(
            f"the real-world corpus is not at {CORPUS}: set APPLIANCE_CORPUS to its directory"
        )
    return sorted(
        p for p in CORPUS.iterdir() if p.is_file() and p.suffix and not p.name.startswith(".")
    )


class _FileRun:
    """Every claimed route for one file; hop outputs (or the hop's error) kept per prefix."""

    def __init__(self, registry: Registry, src: Path, work: Path) -> None:
        self.registry = registry
        self.src = src
        self.fmt = normalize(src.suffix)
        self.work = work
        self.made: dict[tuple[tuple[str, str, str], ...], list[Path] | Exception] = {}

    def run(self) -> list[Outcome]:
        out = []
        for row in self.registry.formats(input_format=self.fmt):
            hops = self.registry.route(self.fmt, row["output_format"])
            assert hops is not None
            start = time.monotonic()
            code, message = self._outcome(hops)
            out.append(
                Outcome(
                    self.src.name,
                    row["output_format"],
                    row["engine"],
                    code,
                    message,
                    time.monotonic() - start,
                )
            )
        return out

    def _outcome(self, hops: list[Hop]) -> tuple[str | None, str]:
        seen = mismatch(self.fmt, self.src)
        if seen is not None:
            error = not_what_it_says(self.src.name, self.fmt, seen)
            return error.code, error.message
        try:
            self._outputs(hops)
        except (PermanentError, RetryableError) as exc:
            return exc.code, exc.message
        return None, ""

    def _outputs(self, hops: list[Hop]) -> list[Path]:
        key = tuple((h.engine.descriptor.id, h.src, h.dst) for h in hops)
        known = self.made.get(key)
        if isinstance(known, Exception):
            raise known
        if known is not None:
            return known
        try:
            before = self._outputs(hops[:-1]) if len(hops) > 1 else [self.src]
            made = self._hop(hops, before)
        except (PermanentError, RetryableError) as exc:
            self.made[key] = exc
            raise
        self.made[key] = made
        return made

    def _hop(self, hops: list[Hop], inputs: list[Path]) -> list[Path]:
        """The route's last hop on each of ``inputs`` (the pages an earlier hop fanned out),
        with the options a convert task without options gets."""
        hop = hops[-1]
        options = self.registry.options_for(hops, {})
        produced: list[Path] = []
        for path in inputs:
            dst = self.work / f"{len(self.made)}-{len(produced)}.{hop.dst}"
            made = hop.engine.convert(path, dst, hop.src, hop.dst, options, lambda f: None)
            produced += made if made else [dst]
        for out in produced:
            check_output(hop.engine.descriptor.id, hop.dst, out)
        return produced


def run_corpus(
    files: Iterable[Path],
    work: Path,
    threads: int = 2,
    done: Callable[[list[Outcome]], None] = lambda outcomes: None,
) -> list[Outcome]:
    """Every claimed pair of every file in ``files``, ``threads`` files at a time (each with
    a sandboxed helper, a warm LibreOffice in it, of its own); ``done`` hears of each file's
    outcomes as it ends."""
    pool = HelperPool(work / "helpers", LIMITS, size=threads)
    registry = Registry(sandboxed(enabled_engines(), pool))

    def one(src: Path) -> list[Outcome]:
        scratch = Path(tempfile.mkdtemp(prefix=f"{src.stem}-", dir=work))
        try:
            outcomes = _FileRun(registry, src, scratch).run()
            done(outcomes)
            return outcomes
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    try:
        with ThreadPoolExecutor(threads) as executor:
            return [o for outcomes in executor.map(one, files) for o in outcomes]
    finally:
        pool.close()


def report(outcomes: list[Outcome]) -> str:
    failed = [o for o in outcomes if o.code is not None]
    lines = [f"{o.file} -> {o.output_format} ({o.engine}): {o.code}: {o.message}" for o in failed]
    share = 1 - len(failed) / len(outcomes) if outcomes else 0.0
    lines.append(f"{len(outcomes) - len(failed)} of {len(outcomes)} converted ({share:.1%})")
    return "\n".join(lines)


def _print_file(outcomes: list[Outcome]) -> None:
    if outcomes:
        failed = [o for o in outcomes if o.code is not None]
        seconds = sum(o.seconds for o in outcomes)
        converted = len(outcomes) - len(failed)
        print(
            f"# {outcomes[0].file}: {converted}/{len(outcomes)} in {seconds:.0f} s",
            *(f"  {o.output_format} ({o.engine}): {o.code}: {o.message}" for o in failed),
            sep="\n",
            file=sys.stderr,
            flush=True,
        )


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    work = Path(tempfile.mkdtemp(prefix="corpus-"))
    work.chmod(0o755)
    start = time.monotonic()
    try:
        outcomes = run_corpus(corpus_files(), work, threads, _print_file)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report(outcomes))
    slowest = sorted(outcomes, key=lambda o: -o.seconds)[:10]
    for o in slowest:
        print(f"slow: {o.file} -> {o.output_format} ({o.engine}) {o.seconds:.1f} s")
    print(f"{time.monotonic() - start:.0f} s with {threads} threads")


if __name__ == "__main__":
    main()
