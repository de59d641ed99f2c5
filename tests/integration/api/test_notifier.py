"""The API process's lifespan: the sync API's Redis subscription (api/events.py) ends with it."""

from __future__ import annotations

import pytest
from litestar import Litestar
from litestar.testing import TestClient


@pytest.mark.timeout(60)
def test_the_app_stopped_right_after_a_request_stops(app: Litestar) -> None:
    # The lifespan hung in Notifier.stop about one time in five here: the subscription task
    # stayed in redis-py's read after its cancellation.
    for _ in range(20):
        with TestClient(app) as client:
            assert client.get("/v2/jobs").status_code == 401
