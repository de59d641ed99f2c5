"""The format graph built from enabled engines, and routes through it."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from appliance.engines import QUEUE_CLASSES, Engine, QueueClass
from appliance.errors import InvalidData, PermanentError


@dataclass(frozen=True)
class Hop:
    engine: Engine
    src: str
    dst: str

    @property
    def cost(self) -> float:
        d = self.engine.descriptor
        return d.pair_costs.get((self.src, self.dst), d.cost)


class Registry:
    def __init__(self, engines: list[Engine]) -> None:
        self.engines = engines
        self._edges: dict[str, list[Hop]] = {}
        self._last_edges: dict[str, list[Hop]] = {}  # Descriptor.last_only pairs
        self._formats: list[dict[str, Any]] | None = None
        self._routes: dict[str, dict[str, list[Hop]]] = {}
        # pdf -> pdf and the like: an engine that rewrites a format into itself (one hop only)
        self._loops: dict[str, Hop] = {}
        self._by_id: dict[str, Engine] = {}
        seen: set[str] = set()
        for engine in engines:
            d = engine.descriptor
            if d.id in seen:
                raise RuntimeError(f"engine id {d.id!r} registered twice")
            if d.queue not in QUEUE_CLASSES:
                raise RuntimeError(f"engine {d.id!r} has unknown queue class {d.queue!r}")
            seen.add(d.id)
            self._by_id[d.id] = engine
            for src, dst in sorted(d.conversions):
                if src == dst:
                    self._loops.setdefault(src, Hop(engine, src, dst))
                else:
                    edges = self._last_edges if (src, dst) in d.last_only else self._edges
                    edges.setdefault(src, []).append(Hop(engine, src, dst))
        # every format some engine produces (checked on each job creation), and reads
        every = [
            hop
            for table in (self._edges, self._last_edges)
            for hops in table.values()
            for hop in hops
        ]
        self.targets = frozenset(hop.dst for hop in every) | set(self._loops)
        self.sources = frozenset(hop.src for hop in every) | set(self._loops)

    def has(self, engine_id: str) -> bool:
        return engine_id in self._by_id

    def engine(self, engine_id: str) -> Engine:
        """The engine with this id (operations such as merge and optimize run one by id)."""
        try:
            return self._by_id[engine_id]
        except KeyError:
            raise PermanentError(
                f"The {engine_id} engine is not enabled", code="ENGINE_UNAVAILABLE"
            ) from None

    def route(self, src: str, dst: str) -> list[Hop] | None:
        """The cheapest path from ``src`` to ``dst`` (sum of the engines' ``cost``, fewer hops
        on a tie); None if there is none. Dijkstra over the format graph. A format into itself
        only goes through an engine that declares that pair."""
        if src == dst:
            loop = self._loops.get(src)
            return [loop] if loop else None
        return self._routes_from(src).get(dst)

    def route_through(self, src: str, dst: str, engine: str) -> list[Hop] | None:
        """The cheapest route from ``src`` to ``dst`` whose engines are ``engine``: one engine
        id names the engine that makes the output (earlier hops are the cheapest way to a
        format it reads); ``a+b`` names the whole chain, as /v2/convert/formats lists it.
        None if there is none."""
        chain = engine.split("+")
        if len(chain) > 1:
            hops = self.route(src, dst)
            return hops if hops and [h.engine.descriptor.id for h in hops] == chain else None
        last = self._by_id.get(engine)
        if last is None:
            return None
        best: tuple[float, int, list[Hop]] | None = None
        for a, b in sorted(last.descriptor.conversions):
            if b != dst or (a == b) != (src == dst):
                continue
            before = [] if a == src else self._routes_from(src).get(a)
            if before is None or any(
                (h.src, h.dst) in h.engine.descriptor.last_only for h in before
            ):
                continue  # a last-only pair ends a route, it does not lead on
            hops = [*before, Hop(last, a, b)]
            candidate = (sum(h.cost for h in hops), len(hops), hops)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        return None if best is None else best[2]

    def versions(self, hops: list[Hop]) -> str:
        """The engine versions of a route, as tasks and /v2/convert/formats show them."""
        return "+".join(h.engine.descriptor.version() for h in hops)

    def _routes_from(self, src: str) -> dict[str, list[Hop]]:
        """Cheapest route to every format reachable from ``src`` (cached: the graph is fixed).

        Dijkstra over the ordinary hops; a last-only hop then ends a route where that is
        cheaper (its prefix is the cheapest ordinary route to the hop's source)."""
        cached = self._routes.get(src)
        if cached is not None:
            return cached
        best: dict[str, tuple[float, int]] = {src: (0.0, 0)}
        previous: dict[str, Hop] = {}
        heap: list[tuple[float, int, str]] = [(0.0, 0, src)]
        while heap:
            cost, hops, fmt = heapq.heappop(heap)
            if (cost, hops) > best[fmt]:
                continue
            for hop in self._edges.get(fmt, []):
                candidate = (cost + hop.cost, hops + 1)
                if hop.dst not in best or candidate < best[hop.dst]:
                    best[hop.dst] = candidate
                    previous[hop.dst] = hop
                    heapq.heappush(heap, (*candidate, hop.dst))
        routes = {dst: _unwind(previous, src, dst) for dst in previous if dst != src}
        reached = dict(best)
        for fmt, (cost, hops) in best.items():
            for hop in self._last_edges.get(fmt, []):
                candidate = (cost + hop.cost, hops + 1)
                if hop.dst != src and (hop.dst not in reached or candidate < reached[hop.dst]):
                    reached[hop.dst] = candidate
                    routes[hop.dst] = [*routes.get(fmt, []), hop]
        self._routes[src] = routes
        return routes

    def plan(self, src: str, dst: str, options: dict[str, Any]) -> tuple[list[Hop], Any]:
        """Route and validated options (applied to the last hop), or InvalidData."""
        hops = self.route(src, dst)
        if hops is None:
            raise InvalidData(
                f"No conversion path from {src} to {dst}",
                code="INVALID_CONVERSION_TYPE",
                errors={"output_format": [f"cannot convert {src} to {dst}"]},
            )
        return hops, self.options_for(hops, options)

    def options_for(self, hops: list[Hop], options: dict[str, Any]) -> Any:
        """``options`` validated against the route's last engine, or InvalidData."""
        schema = hops[-1].engine.descriptor.options
        try:
            return msgspec.convert(options, schema)
        except msgspec.ValidationError as exc:
            field = str(exc).rsplit("`$.", 1)[-1].rstrip("`") if "`$." in str(exc) else "options"
            raise InvalidData(
                f"Invalid conversion option: {exc}", errors={field: [str(exc)]}
            ) from exc

    def hops_of(self, steps: Sequence[Mapping[str, str]]) -> list[Hop] | None:
        """The hops of a route as ``route_summary`` wrote it (planned earlier, perhaps by
        another process), if each engine is still enabled and still converts its pair; else
        None, and the caller plans again."""
        hops = []
        for step in steps:
            engine = self._by_id.get(step.get("engine", ""))
            pair = (step.get("from", ""), step.get("to", ""))
            if engine is None or pair not in engine.descriptor.conversions:
                return None
            hops.append(Hop(engine, *pair))
        return hops

    def queue_for(self, hops: list[Hop]) -> QueueClass:
        """The heaviest queue class on the route runs the whole task."""
        return max((h.engine.descriptor.queue for h in hops), key=QUEUE_CLASSES.index)

    def formats(
        self, input_format: str | None = None, output_format: str | None = None
    ) -> list[dict[str, Any]]:
        """Every reachable conversion (direct or over several hops), CloudConvert's
        /v2/convert/formats shape plus the route taken."""
        return [
            row
            for row in self._all_formats()
            if (not input_format or row["input_format"] == input_format)
            and (not output_format or row["output_format"] == output_format)
        ]

    def _all_formats(self) -> list[dict[str, Any]]:
        # Built once: routes, option schemas and versions do not change while the process runs.
        if self._formats is not None:
            return self._formats
        out = []
        for src in sorted(self.sources):
            routes = self._routes_from(src) | (
                {src: [self._loops[src]]} if src in self._loops else {}
            )
            for dst, hops in sorted(routes.items()):
                last = hops[-1].engine.descriptor
                out.append(
                    {
                        "operation": "convert",
                        "input_format": src,
                        "output_format": dst,
                        "engine": "+".join(h.engine.descriptor.id for h in hops),
                        "engine_version": "+".join(h.engine.descriptor.version() for h in hops),
                        "queue": self.queue_for(hops),
                        "route": route_summary(hops),
                        "options": msgspec.json.schema(last.options),
                    }
                )
        self._formats = out
        return out


def route_summary(hops: list[Hop]) -> list[dict[str, str]]:
    """The route as shown to clients (formats endpoint, convert task results)."""
    return [{"from": h.src, "to": h.dst, "engine": h.engine.descriptor.id} for h in hops]


def _unwind(previous: dict[str, Hop], src: str, dst: str) -> list[Hop]:
    path = []
    fmt = dst
    while fmt != src:
        hop = previous[fmt]
        path.append(hop)
        fmt = hop.src
    return list(reversed(path))
