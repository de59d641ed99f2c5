"""The per-tenant lists the metrics port reads at each scrape: the top users by conversions
and by failed tasks over the last hour, on a real Postgres."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from appliance.db.queries.activity import top_users


@pytest.fixture
def conn(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as c:  # a database of its own
        yield c


def _user(conn) -> str:
    email = f"t{uuid.uuid4().hex[:8]}@example.test"
    return str(
        conn.execute("INSERT INTO users (email) VALUES (%s) RETURNING id", (email,)).fetchone()[0]
    )


def _tasks(conn, user, n, operation="convert", status="finished", ended="now()"):
    for _ in range(n):
        conn.execute(
            "INSERT INTO tasks (user_id, name, operation, queue, status, ended_at, expires_at)"
            f" VALUES (%s, 't', %s, 'light', %s, {ended}, now() + interval '1 day')",
            (user, operation, status),
        )


def test_top_users_count_the_last_hours_conversions_and_errors_with_a_limit(conn):
    busy, failing, quiet, old = (_user(conn) for _ in range(4))
    _tasks(conn, busy, 5)
    _tasks(conn, busy, 2, operation="export/url")  # not a conversion
    _tasks(conn, failing, 1)
    _tasks(conn, failing, 3, operation="import/url", status="error")
    _tasks(conn, failing, 1, status="error")  # a failed conversion: both lists
    _tasks(conn, quiet, 1)
    _tasks(conn, old, 9, status="error", ended="now() - interval '2 hours'")
    _tasks(conn, old, 9, status="processing", ended="NULL")  # not ended
    top = top_users(conn, 3600, 2)
    assert top == {"conversions": {busy: 5, failing: 2}, "errors": {failing: 4}}
    assert top_users(conn, 3 * 3600, 10)["errors"] == {old: 9, failing: 4}
