"""DELETE /v2/users/me erases the key's user, only for a key made with the user.erase scope."""

from __future__ import annotations

import base64
import uuid

import psycopg
import pytest
from litestar.testing import TestClient
from psycopg.rows import dict_row

from appliance.security.keys import ERASE_SCOPE, SCOPES, create_key


def test_erasing_needs_the_user_erase_scope_which_no_key_has_by_default(api, postgres_url):
    answer = api.delete("/v2/users/me")
    assert answer.status_code == 403 and answer.json()["code"] == "MISSING_SCOPE"
    assert api.get("/v2/users/me").status_code == 200  # still there


@pytest.fixture
def eraser(app, postgres_url):
    email = f"erase-{uuid.uuid4().hex[:8]}@example.test"
    with psycopg.connect(postgres_url, autocommit=True, row_factory=dict_row) as conn:
        key = create_key(conn, email, [*SCOPES, ERASE_SCOPE])
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client, email


def test_a_key_with_the_scope_erases_its_user_with_their_files(eraser, postgres_url, data_dir):
    client, email = eraser
    words = f"private {uuid.uuid4().hex}".encode() * 100
    job = client.post(
        "/v2/jobs",
        json={
            "tasks": {
                "in": {
                    "operation": "import/base64",
                    "filename": "a.txt",
                    "file": base64.b64encode(words).decode(),
                }
            }
        },
    )
    assert job.status_code == 201, job.text
    stored = [p for p in (data_dir / "files").rglob("*") if p.is_file()]
    assert len(stored) == 1

    assert client.delete("/v2/users/me").status_code == 204

    assert client.get("/v2/users/me").status_code == 401
    assert not stored[0].exists()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert (
            conn.execute("SELECT count(*) FROM users WHERE email = %s", (email,)).fetchone()[0] == 0
        )
        assert conn.execute("SELECT count(*) FROM data_keys").fetchone()[0] == 0
