import threading

import psycopg

from appliance.db.migrate import available, migrate
from tests.conftest import _with_db


def _fresh(server_url):
    import uuid

    name = f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return _with_db(server_url, name)


def test_migrate_twice_applies_each_migration_once(postgres_server):
    url = _fresh(postgres_server)
    assert migrate(url) == [name for _, name, _ in available()]
    assert migrate(url) == []


def test_concurrent_migrations_from_two_hosts_apply_once(postgres_server):
    url = _fresh(postgres_server)
    results, errors = [], []

    def run():
        try:
            results.append(migrate(url))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(len(r) for r in results) == [0, 0, 0, len(available())]
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0]
    assert count == len(available())
