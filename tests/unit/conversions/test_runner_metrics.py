"""Every enabled operation is a metrics label from the start (0, not nothing)."""

from prometheus_client import REGISTRY

from appliance.conversions.operations.enabled import OPERATIONS
from appliance.conversions.runner import TaskRunner


def test_a_runner_creates_the_task_series_of_every_enabled_operation():
    TaskRunner(None, OPERATIONS)  # type: ignore[arg-type]  # a runtime is not needed for this
    for name in OPERATIONS:
        for status in ("finished", "error", "retry"):
            value = REGISTRY.get_sample_value(
                "appliance_tasks_ended_total", {"operation": name, "status": status}
            )
            assert value is not None, (name, status)
