"""Job creations that bring their files inline never hold a pooled connection while they
wait for another: with every connection of the API's pool taken by creations at once, each
still gets the connection its file's storing needs, and none waits out the pool timeout."""

from __future__ import annotations

import asyncio
import base64
import json

import msgspec
import pytest

from appliance.settings import Settings

CREATIONS = 12  # at once, on a pool of 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, db_pool_size=2, db_pool_timeout_seconds=3)


def test_inline_files_created_at_once_on_a_small_pool_all_succeed(system, png_file):
    data = base64.b64encode(png_file.read_bytes()).decode()

    def job(i: int) -> dict:
        return {
            "in": {"operation": "import/base64", "file": data, "filename": f"in{i}.png"},
            "c": {"operation": "convert", "input": "in", "output_format": "jpg"},
        }

    async def create_all() -> list[dict]:
        made = await asyncio.gather(
            *(system.svc.create_job(system.user_id, job(i), None) for i in range(CREATIONS))
        )
        return [json.loads(doc) for doc in made]

    jobs = system.call(create_all())
    assert len({j["id"] for j in jobs}) == CREATIONS
    for made in jobs:
        assert system.wait(made["id"], timeout=60)["status"] == "finished"
