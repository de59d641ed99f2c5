"""What ``GET /v2/operations`` lists: every task operation that takes inputs, by input and
output format, with the engines that run it, its queue class and its options schema.

Convert rows are the registry's (``Registry.formats``); the other operations' rows come from
what each enabled operation declares (``Operation.formats``), which its graph check reads
too, and the same routes, so a listed row is a task ``graph.plan`` accepts and an unlisted
input format one it refuses.
Built once per process, on first use: engines, routes and versions do not change while it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from appliance.conversions.operation import Formats, Operation, input_queue
from appliance.conversions.operations.enabled import ENABLED
from appliance.engines.registry import Registry, route_summary

ANY_FORMAT = "*"  # the input_format of an operation that takes a file of any format


@dataclass(frozen=True)
class Filters:
    """CloudConvert's ``filter[...]`` parameters, formats already normalized."""

    operation: str | None = None
    input_format: str | None = None
    output_format: str | None = None
    # any engine on the row: ``libreoffice`` matches ``libreoffice+thumbnail``
    engine: str | None = None


@dataclass(frozen=True)
class _Row:
    full: dict[str, Any]  # with the options schema
    lean: dict[str, Any]  # without (CloudConvert sends options only when asked)
    engines: frozenset[str]


class Catalog:
    """The operations list of one registry's engines, built on first use."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._rows: list[_Row] | None = None
        self._known: frozenset[str] = frozenset()

    def operations(self, filters: Filters, options: bool = False) -> list[dict[str, Any]]:
        """The rows ``filters`` select, with their options schema if ``options``."""
        rows = self._built()
        return [row.full if options else row.lean for row in rows if self._matches(row, filters)]

    def _matches(self, row: _Row, f: Filters) -> bool:
        r = row.full
        # a row of any input format matches a format the appliance names, not an unknown one
        any_input = r["input_format"] == ANY_FORMAT and f.input_format in self._known
        return (
            (not f.operation or r["operation"] == f.operation)
            and (not f.input_format or r["input_format"] == f.input_format or any_input)
            and (not f.output_format or r["output_format"] == f.output_format)
            and (not f.engine or f.engine in row.engines)
        )

    def _built(self) -> list[_Row]:
        if self._rows is not None:
            return self._rows
        rows = [_row(r) for r in self.registry.formats()]
        formats = self.registry.sources | self.registry.targets
        for op in ENABLED:
            if op.formats is not None:  # convert's rows are the registry's; imports, exports none
                rows += self._rows_of(op, op.formats, formats)
        named = {r.full["input_format"] for r in rows} | {r.full["output_format"] for r in rows}
        self._known = frozenset(named - {ANY_FORMAT, None})
        self._rows = rows
        return rows

    def _rows_of(self, op: Operation, rule: Formats, formats: frozenset[str]) -> Iterator[_Row]:
        """One row per input format the rule takes (as it is or through a route) and output."""
        engine = self.registry.engine(rule.engine).descriptor if rule.engine else None
        schema = msgspec.json.schema(op.options_schema(self.registry))
        inputs = [ANY_FORMAT] if rule.inputs is None else sorted(formats | set(rule.inputs))
        for src in inputs:
            hops = [] if src == ANY_FORMAT else rule.route(self.registry, src)
            if hops is None:
                continue
            ids = [h.engine.descriptor.id for h in hops] + ([engine.id] if engine else [])
            versions = [h.engine.descriptor.version() for h in hops]
            versions += [engine.version()] if engine else []
            for dst in _outputs(rule, src):
                yield _row(
                    {
                        "operation": op.name,
                        "input_format": src,
                        "output_format": dst,
                        "engine": "+".join(ids) or None,
                        "engine_version": "+".join(versions) or None,
                        "queue": input_queue(self.registry, op, src, hops),
                        "route": route_summary(hops),  # the conversions run first
                        "options": schema,
                    }
                )


def _outputs(rule: Formats, src: str) -> tuple[str | None, ...]:
    """What the operation makes of ``src``; None for a result without a file (metadata)."""
    if rule.outputs is None:
        return (src,)
    return rule.outputs or (None,)


def _row(full: dict[str, Any]) -> _Row:
    lean = {k: v for k, v in full.items() if k != "options"}
    engines = frozenset(full["engine"].split("+")) if full["engine"] else frozenset()
    return _Row(full, lean, engines)
