"""The API in-process (ASGI) on the harness's Postgres, Redis and local storage, with the
request, conversion and failed-key limits off: every request comes from one test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from appliance.api.app import create_app
from appliance.jobs.broker import dramatiq_dispatcher
from tests.conftest import make_settings


@pytest.fixture
def app(postgres_url: str, redis_url: str, data_dir: Path) -> Litestar:
    settings = make_settings(
        {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "data_dir": str(data_dir),
            "sync_timeout_seconds": "0.1",  # sync routes answer at once: the fuzz sends many
            "requests_per_minute_per_address": "0",
            "requests_per_minute_per_key": "0",
            "conversions_per_minute_per_address": "0",
            "auth_failures_per_minute": "0",
        }
    )
    return create_app(dramatiq_dispatcher, settings)


@pytest.fixture
def api(app: Litestar, api_key: str) -> Iterator[TestClient]:
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {api_key}"
        yield client
