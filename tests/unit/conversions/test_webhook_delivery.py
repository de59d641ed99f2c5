"""What a receiver's answer means for a webhook delivery, and how long a retry waits."""

from __future__ import annotations

import itertools

import pytest

from appliance.conversions.webhook_delivery import Outbox, judge
from appliance.conversions.webhooks import check_events
from appliance.errors import InvalidData
from appliance.settings import Settings


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (410, "gone"),
        (500, "retry"),
        (503, "retry"),
        (429, "retry"),
        (408, "retry"),
        (301, "failed"),
        (400, "failed"),
        (404, "failed"),
    ],
)
def test_answers_are_judged_as_cloudconvert_does(status, verdict):
    assert judge(status).verdict == verdict
    assert judge(status).code == status


def test_the_default_retries_span_about_a_day_and_double_up_to_the_cap():
    outbox = Outbox(Settings(), None, None)  # type: ignore[arg-type]  # backoff needs no pool
    s = outbox.settings
    waits = [outbox.backoff(n) for n in range(1, s.webhook_max_attempts)]
    assert s.webhook_backoff_seconds <= waits[0] <= s.webhook_backoff_seconds * 1.1
    assert all(b >= a or b >= s.webhook_backoff_max_seconds for a, b in itertools.pairwise(waits))
    assert max(waits) <= s.webhook_backoff_max_seconds * 1.1
    assert 20 * 3600 <= sum(waits) <= 28 * 3600


def test_events_are_checked_and_kept_in_their_order():
    assert check_events(["job.failed", "job.created", "job.failed"]) == [
        "job.created",
        "job.failed",
    ]
    for wrong in ([], ["job.exploded"], "job.created", [1]):
        with pytest.raises(InvalidData):
            check_events(wrong)
