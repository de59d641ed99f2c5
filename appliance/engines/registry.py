"""The format graph built from enabled engines, and routes through it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec

from appliance.engines import QUEUE_CLASSES, Engine, QueueClass
from appliance.errors import InvalidData


@dataclass(frozen=True)
class Hop:
    engine: Engine
    src: str
    dst: str


class Registry:
    def __init__(self, engines: list[Engine]) -> None:
        self.engines = engines
        self._edges: dict[str, list[Hop]] = {}
        self._formats: list[dict[str, Any]] | None = None
        seen: set[str] = set()
        for engine in engines:
            d = engine.descriptor
            if d.id in seen:
                raise RuntimeError(f"engine id {d.id!r} registered twice")
            if d.queue not in QUEUE_CLASSES:
                raise RuntimeError(f"engine {d.id!r} has unknown queue class {d.queue!r}")
            seen.add(d.id)
            for src, dst in sorted(d.conversions):
                self._edges.setdefault(src, []).append(Hop(engine, src, dst))

    def route(self, src: str, dst: str) -> list[Hop] | None:
        """Fewest hops from ``src`` to ``dst``; None if no path. Breadth-first search."""
        if src == dst:
            return None
        previous: dict[str, Hop] = {}
        queue = deque([src])
        while queue:
            fmt = queue.popleft()
            for hop in self._edges.get(fmt, []):
                if hop.dst in previous or hop.dst == src:
                    continue
                previous[hop.dst] = hop
                if hop.dst == dst:
                    return _unwind(previous, src, dst)
                queue.append(hop.dst)
        return None

    def plan(self, src: str, dst: str, options: dict[str, Any]) -> tuple[list[Hop], Any]:
        """Route and validated options (applied to the last hop), or InvalidData."""
        hops = self.route(src, dst)
        if hops is None:
            raise InvalidData(
                f"No conversion path from {src} to {dst}",
                code="INVALID_CONVERSION_TYPE",
                errors={"output_format": [f"cannot convert {src} to {dst}"]},
            )
        schema = hops[-1].engine.descriptor.options
        try:
            parsed = msgspec.convert(options, schema)
        except msgspec.ValidationError as exc:
            field = str(exc).rsplit("`$.", 1)[-1].rstrip("`") if "`$." in str(exc) else "options"
            raise InvalidData(
                f"Invalid conversion option: {exc}", errors={field: [str(exc)]}
            ) from exc
        return hops, parsed

    def queue_for(self, hops: list[Hop]) -> QueueClass:
        """The heaviest queue class on the route runs the whole task."""
        return max((h.engine.descriptor.queue for h in hops), key=QUEUE_CLASSES.index)

    @property
    def targets(self) -> set[str]:
        """Every format some engine produces."""
        return {hop.dst for hops in self._edges.values() for hop in hops}

    def formats(
        self, input_format: str | None = None, output_format: str | None = None
    ) -> list[dict[str, Any]]:
        """Direct conversions, CloudConvert's /v2/convert/formats shape."""
        return [
            row
            for row in self._all_formats()
            if (not input_format or row["input_format"] == input_format)
            and (not output_format or row["output_format"] == output_format)
        ]

    def _all_formats(self) -> list[dict[str, Any]]:
        # Built once: option schemas and versions do not change while the process runs.
        if self._formats is not None:
            return self._formats
        out = []
        for src, hops in sorted(self._edges.items()):
            for hop in hops:
                d = hop.engine.descriptor
                out.append(
                    {
                        "operation": "convert",
                        "input_format": src,
                        "output_format": hop.dst,
                        "engine": d.id,
                        "engine_version": d.version(),
                        "queue": d.queue,
                        "options": msgspec.json.schema(d.options),
                    }
                )
        self._formats = out
        return out


def _unwind(previous: dict[str, Hop], src: str, dst: str) -> list[Hop]:
    path = []
    fmt = dst
    while fmt != src:
        hop = previous[fmt]
        path.append(hop)
        fmt = hop.src
    return list(reversed(path))
