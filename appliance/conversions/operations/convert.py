"""``convert``: each input file through the cheapest route of engines to the output format,
over several hops if needed, with the conversion cache in front."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from appliance.conversions.operation import (
    Errors,
    Operation,
    PlannedTask,
    Progress,
    heavier,
    normalized,
)
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import InputFile, Outcome, OutFile, Task
from appliance.conversions.work import (
    cache_entry,
    cache_key,
    cached,
    each_input,
    fetch_input,
    keep,
    names_for,
    not_what_it_says,
    output_name,
    run_hops,
    with_extension,
)
from appliance.engines.formats import normalize
from appliance.engines.registry import Hop, Registry, route_summary
from appliance.errors import InvalidData, PermanentError


class Convert(Operation):
    name = "convert"
    required = ("input", "output_format")
    fields = Operation.fields | {"output_format"}
    routed = True

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        p, key = task.payload, task.key
        out = normalize_out(p)
        task.output_format = out
        if not task.depends_on:
            errors.add(f"{key}.input", "convert needs an input task")
            return
        declared = normalized(p, "input_format")
        candidates = {declared} if declared else {f for f in formats if f}
        if not candidates:
            # Input format only known once the file arrives; check the target exists at all.
            if out not in registry.targets:
                errors.add(f"{key}.output_format", f"no engine converts to {out!r}")
            return
        for src in sorted(candidates):
            try:
                hops, _ = self.plan(registry, src, p, None)
            except InvalidData as exc:
                for field_name, msgs in exc.errors.items():
                    for msg in msgs:
                        errors.add(f"{key}.{field_name}", msg)
                return
            task.plan_route(src, hops)
            task.queue = heavier(task.queue, registry.queue_for(hops))

    def route(self, registry: Registry, src: str, payload: dict[str, Any]) -> list[Hop] | None:
        dst = str(payload.get("output_format", ""))
        engine = payload.get("engine")
        return registry.route_through(src, dst, engine) if engine else registry.route(src, dst)

    def check_engine(self, task: PlannedTask, registry: Registry, errors: Errors) -> None:
        """``engine`` names an enabled engine (or a chain of them); ``engine_version`` is
        checked against the route once it is planned."""
        engine = task.payload.get("engine")
        if isinstance(engine, str) and any(not registry.has(e) for e in engine.split("+")):
            errors.add(
                f"{task.key}.engine",
                f"no engine {engine!r} is installed (GET /v2/convert/formats lists them)",
            )

    def plan(
        self,
        registry: Registry,
        src: str,
        payload: dict[str, Any],
        routes: dict[str, Any] | None,
    ) -> tuple[list[Hop], Any]:
        """The route from ``src`` to the task's output format (as planned before, when it
        was) and its validated options; InvalidData when there is none or an option is
        wrong."""
        hops = self.planned(registry, routes, src, payload)
        if hops is None:
            dst, engine = payload.get("output_format", ""), payload.get("engine")
            field, by = ("engine", f" with {engine}") if engine else ("output_format", "")
            raise InvalidData(
                f"No conversion path from {src} to {dst}{by}",
                code="INVALID_CONVERSION_TYPE",
                errors={field: [f"cannot convert {src} to {dst}{by}"]},
            )
        pinned = payload.get("engine_version")
        if pinned is not None and registry.versions(hops) != pinned:
            raise InvalidData(
                f"The route runs {registry.versions(hops)}, not {pinned}",
                code="ENGINE_VERSION_UNAVAILABLE",
                errors={"engine_version": [f"{pinned} is not installed"]},
            )
        options = {k: v for k, v in payload.items() if k not in self.fields}
        return hops, registry.options_for(hops, options)

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        outputs: list[OutFile] = []
        hops: list[Hop] = []
        cache: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(dir=rt.work_root()) as tmp:
            for i, f, step in each_input(task.input_files(), progress):
                files, hops, entry = self._one(rt, task, f, Path(tmp) / str(i), step)
                outputs += files
                cache += [entry] if entry else []
        engine = (
            "+".join(h.engine.descriptor.id for h in hops),
            "+".join(h.engine.descriptor.version() for h in hops),
        )
        outcome = Outcome.of_files(outputs, route=route_summary(hops))
        outcome.engine, outcome.cache = engine, cache
        return outcome

    def _one(
        self, rt: Runtime, task: Task, f: InputFile, work: Path, progress: Progress
    ) -> tuple[list[OutFile], list[Hop], dict[str, Any] | None]:
        """One input through its route: the files made, the route, and the conversion
        cache's entry for them (recorded with the task's end), if any."""
        p = task.payload
        out_fmt = p["output_format"]
        src, src_fmt, seen = fetch_input(rt, f, work, p.get("input_format"))
        hops, options = self._worker_plan(rt.registry, src_fmt, task)
        if seen is not None:
            src_fmt, hops, options = self._real_type(rt.registry, f, src_fmt, seen, hops, task)
        src = with_extension(src, src_fmt)
        filename = output_name(p, f, out_fmt)
        key = cache_key(f, src_fmt, out_fmt, hops, options)
        hit = cached(rt, key, filename)
        if hit is not None:
            return [hit], hops, None
        paths = run_hops(hops, src, work, options, progress)
        names = names_for(filename, len(paths))
        outputs = [keep(rt, task, path, name) for path, name in zip(paths, names, strict=True)]
        if len(outputs) != 1:  # the cache holds single results; page sets are converted again
            return outputs, hops, None
        return outputs, hops, cache_entry(key, outputs[0])

    def _worker_plan(self, registry: Registry, src: str, task: Task) -> tuple[list[Hop], Any]:
        try:
            return self.plan(registry, src, task.payload, task.routes)
        except InvalidData as exc:  # e.g. the pinned engine version is no longer installed
            raise PermanentError(exc.message, code=exc.code) from exc
        except Exception as exc:
            raise PermanentError(str(exc), code="INVALID_CONVERSION_TYPE") from exc

    def _real_type(
        self,
        registry: Registry,
        f: InputFile,
        declared: str,
        seen: str,
        hops: list[Hop],
        task: Task,
    ) -> tuple[str, list[Hop], Any]:
        """The content is not the declared format. If it is one the declared route's first
        engine takes as well (a PNG named .jpg, for libvips), convert it as what it is;
        otherwise the input is invalid: an engine is never handed a file it was not meant to
        parse."""
        try:
            real_hops, options = self.plan(registry, seen, task.payload, task.routes)
        except Exception:
            real_hops = []
        if real_hops and real_hops[0].engine.descriptor.id == hops[0].engine.descriptor.id:
            return seen, real_hops, options
        raise not_what_it_says(f.filename, declared, seen)


def normalize_out(payload: dict[str, Any]) -> str:
    """The payload's ``output_format``, normalized in place."""
    payload["output_format"] = out = normalize(str(payload.get("output_format", "")))
    return out
