"""How a Gotenberg route answers a finished job: the file with Gotenberg's headers, and the
headers a stage adds to report on its work (remediate's, as Gotenberg 9 sends them)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

from appliance.api.gotenberg import answers
from appliance.api.gotenberg.fields import Plan
from appliance.conversions.gotenberg import JobState, Output, TaskState


class OneFile:
    """A job service whose every task made one small PDF."""

    async def task_outputs(self, user_id: Any, task_id: Any) -> list[Output]:
        return [Output("ab12", "a.pdf", 4)]

    def output_bytes(self, sha256: str) -> Iterator[bytes]:
        return iter([b"%PDF"])


def answered(plan: Plan) -> Any:
    task = TaskState(uuid.uuid4(), plan.last, "finished")
    job = JobState(uuid.uuid4(), "finished", tasks=[task])
    ended = answers.ended(OneFile(), uuid.uuid4(), job, plan, None, "trace-1")  # type: ignore[arg-type]
    return asyncio.run(ended)


def test_a_stage_s_report_headers_go_out_with_the_file():
    plan = Plan({}, [], "stage-1", headers={"Gotenberg-Remediation-Rolled-Back": "0"})
    answer = answered(plan)
    assert answer.headers["Gotenberg-Remediation-Rolled-Back"] == "0"
    assert answer.headers["Gotenberg-Trace"] == "trace-1"
    assert answer.headers["Content-Disposition"].startswith('attachment; filename="a.pdf"')


def test_an_answer_without_a_report_has_no_remediation_headers():
    answer = answered(Plan({}, [], "stage-1"))
    assert not [h for h in answer.headers if h.lower().startswith("gotenberg-remediation")]
