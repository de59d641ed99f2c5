"""``optimize``: each input (pdf, jpg, png) made smaller, same format and name (never larger)."""

from __future__ import annotations

from appliance.conversions.operation import Errors, Formats, PlannedTask, normalized
from appliance.conversions.operations.per_input import PerInputOperation
from appliance.engines.registry import Registry

FORMATS = ("pdf", "jpg", "png")


class Optimize(PerInputOperation):
    name = "optimize"
    formats = Formats(FORMATS, None, "optimize")

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        declared = normalized(task.payload, "input_format")
        super().check(task, [declared] if declared else formats, registry, errors)
        if declared and declared not in FORMATS:
            errors.add(f"{task.key}.input_format", f"allowed: {', '.join(FORMATS)}")
