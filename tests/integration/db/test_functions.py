"""appliance/db/functions.sql, the one readable current definition of every database function,
is what a database migrated with every migration holds.

The migrated database is the expected side, so this fails by construction whenever a migration
adds, changes (CREATE OR REPLACE, ALTER) or drops an appliance_* function and functions.sql was
not regenerated, and whenever someone edits functions.sql by hand."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from appliance.db.functions import FUNCTIONS_SQL, REGENERATE, render


def test_functions_sql_is_what_the_migrations_define(postgres_url):
    assert FUNCTIONS_SQL.read_text() == render(postgres_url), (
        f"{FUNCTIONS_SQL} differs from the functions of a migrated database."
        f" Regenerate it (and commit it with the migration):\n{REGENERATE}"
    )


def test_a_database_not_migrated_is_refused(postgres_server):
    name = f"f_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    with pytest.raises(RuntimeError, match="not migrated"):
        render(make_conninfo(postgres_server, dbname=name))
