"""The audit log on real Postgres: the hash chain finds an edited, a deleted or a reordered
record; appends never wait for each other and concurrent ones, once sealed, make one valid
chain; retention prunes a prefix behind a signed anchor; operators' changes to users and keys
are recorded by the code that makes them."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from appliance.cli import main
from appliance.security import audit

KEY = b"k" * 48


@pytest.fixture
def conn(postgres_url):
    with psycopg.connect(postgres_url, autocommit=True, row_factory=dict_row) as c:
        yield c


@pytest.fixture
def cli(postgres_url, redis_url, monkeypatch, capsys):
    monkeypatch.setenv("APPLIANCE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("APPLIANCE_REDIS_URL", redis_url)
    monkeypatch.setenv("APPLIANCE_SECRET_KEY", KEY.decode())

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def append_some(conn, n: int = 6) -> None:
    """``n`` records appended, then sealed onto the chain (as the reconciler would)."""
    user = uuid.uuid4()
    for i in range(n):
        audit.record(conn, "job.created", user, f"job:{i}", {"tasks": i, "tag": "é|\n"})
    audit.seal(conn)


def tamper(conn, sql: str, *args) -> None:
    """As a database superuser who skips the append-only guard (triggers off)."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(sql, args)


def problems(conn) -> list[str]:
    return audit.verify(conn, KEY).problems


def test_an_untouched_chain_verifies_and_python_agrees_with_postgres_on_every_hash(conn):
    append_some(conn)
    report = audit.verify(conn, KEY)
    assert report.ok and report.records == 6 and (report.first, report.last) == (1, 6)
    head = conn.execute("SELECT hash FROM audit_head").fetchone()["hash"]
    assert report.head == head


def test_an_edited_record_is_found(conn):
    append_some(conn)
    tamper(conn, "UPDATE audit_log SET details = '{\"tasks\":99}' WHERE seq = 3")
    assert problems(conn) == ["record 3 does not match its hash (edited or moved)"]


def test_an_edit_that_recomputes_the_records_own_hash_breaks_the_next_link(conn):
    append_some(conn)
    tamper(
        conn,
        "UPDATE audit_log SET subject = 'job:x', hash = appliance_audit_hash(seq, prev, at,"
        " event, user_id, actor, 'job:x', details) WHERE seq = 3",
    )
    (found,) = problems(conn)
    assert found.startswith("record 4 does not follow the record before it")


def test_a_deleted_record_is_found(conn):
    append_some(conn)
    tamper(conn, "DELETE FROM audit_log WHERE seq = 4")
    assert "record 4 missing (deleted)" in problems(conn)


def test_a_deleted_first_record_is_found(conn):
    append_some(conn)
    tamper(conn, "DELETE FROM audit_log WHERE seq = 1")
    assert "record 1 missing (deleted)" in problems(conn)


def test_deleted_last_records_are_found_by_the_chains_head(conn):
    append_some(conn)
    tamper(conn, "DELETE FROM audit_log WHERE seq >= 5")
    (found,) = problems(conn)
    assert found.startswith("the chain's head is record 6 but the log ends at record 4")


def test_reordered_records_are_found(conn):
    append_some(conn)
    tamper(conn, "UPDATE audit_log SET seq = -seq WHERE seq IN (2, 3)")
    tamper(conn, "UPDATE audit_log SET seq = CASE seq WHEN -2 THEN 3 ELSE 2 END WHERE seq < 0")
    found = problems(conn)
    assert "record 2 does not match its hash (edited or moved)" in found
    assert "record 3 does not match its hash (edited or moved)" in found


REWRITE_FROM_3 = """
DO $$
DECLARE r record; v_prev text; v_subject text;
BEGIN
    SELECT hash INTO v_prev FROM audit_log WHERE seq = 2;
    FOR r IN SELECT * FROM audit_log WHERE seq >= 3 ORDER BY seq LOOP
        v_subject := CASE WHEN r.seq = 3 THEN 'job:forged' ELSE r.subject END;
        UPDATE audit_log SET subject = v_subject, prev = v_prev,
               hash = appliance_audit_hash(r.seq, v_prev, r.at, r.event, r.user_id, r.actor,
                                           v_subject, r.details)
         WHERE seq = r.seq RETURNING hash INTO v_prev;
    END LOOP;
    UPDATE audit_head SET hash = v_prev;
END $$
"""


def test_a_rewritten_chain_is_found_only_against_a_head_noted_elsewhere(conn):
    append_some(conn)
    noted = (6, audit.verify(conn, KEY).head)
    tamper(conn, REWRITE_FROM_3)
    assert problems(conn) == []  # every hash recomputed: the chain alone cannot tell
    (found,) = audit.verify(conn, KEY, noted).problems
    assert found == "record 6 is not the one noted (its hash differs): the log was rewritten"


def test_a_noted_head_still_in_the_chain_verifies(conn):
    append_some(conn, 3)
    noted = (3, audit.verify(conn, KEY).head)
    append_some(conn, 2)
    assert audit.verify(conn, KEY, noted).ok
    assert audit.verify(conn, KEY, (9, noted[1])).problems == [
        "the noted record 9 is not in the log: it cannot be compared"
    ]


def refuses_changes(conn, table: str, change: str, says: str) -> None:
    """UPDATE (``change``), DELETE and TRUNCATE of ``table`` each fail, saying ``says``."""
    for sql in (f"UPDATE {table} SET {change}", f"DELETE FROM {table}", f"TRUNCATE {table}"):
        with pytest.raises(psycopg.errors.RaiseException, match=says):
            conn.execute(sql)


def test_the_log_refuses_updates_deletes_and_truncation(conn):
    append_some(conn, 2)
    refuses_changes(conn, "audit_log", "event = 'x'", "append-only")
    assert audit.verify(conn, KEY).ok


def test_an_append_rolled_back_leaves_no_gap(conn):
    append_some(conn, 2)
    with pytest.raises(RuntimeError), conn.transaction():
        audit.record(conn, "job.deleted", None, "job:gone")
        raise RuntimeError
    append_some(conn, 1)
    report = audit.verify(conn, KEY)
    assert report.ok and report.last == 3


def test_concurrent_appends_once_sealed_keep_one_valid_chain(postgres_url, conn):
    writers, each = 8, 25
    committed = []
    lock = threading.Lock()

    def write(n: int) -> None:
        rnd = random.Random(n)
        with psycopg.connect(postgres_url, autocommit=True, row_factory=dict_row) as c:
            for i in range(each):
                rollback = rnd.random() < 0.2
                try:
                    with c.transaction():
                        audit.record(c, "limit.hit", None, f"ip:{n}", {"i": i})
                        if rollback:
                            raise LookupError
                except LookupError:
                    continue
                with lock:
                    committed.append((f"ip:{n}", f'{{"i":{i}}}'))
                if i % 10 == 0:
                    audit.seal(c)  # sealers race the writers and each other

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = audit.verify(conn, KEY)
    assert report.ok, report.problems
    assert report.records == len(committed) and (report.first, report.last) == (1, len(committed))
    chained = conn.execute("SELECT subject, details FROM audit_log ORDER BY seq").fetchall()
    assert sorted((r["subject"], r["details"]) for r in chained) == sorted(committed)
    assert conn.execute("SELECT count(*) AS n FROM audit_pending").fetchone()["n"] == 0


def test_an_append_waits_for_no_other_and_is_chained_once_it_commits(postgres_url, conn):
    """One transaction appended and is still open; another appends and commits at once (it
    used to wait for the first's end); sealing chains only what has committed."""
    with psycopg.connect(postgres_url, row_factory=dict_row) as slow:
        audit.record(slow, "job.created", None, "job:slow")  # its transaction stays open
        conn.execute("SET statement_timeout = '2s'")
        try:
            audit.record(conn, "job.created", None, "job:fast")  # autocommit: committed
        finally:
            conn.execute("RESET statement_timeout")
        assert audit.seal(conn) == 1
        slow.commit()
    assert audit.seal(conn) == 1
    rows = conn.execute("SELECT seq, subject FROM audit_log ORDER BY seq").fetchall()
    assert [(r["seq"], r["subject"]) for r in rows] == [(1, "job:fast"), (2, "job:slow")]
    assert audit.verify(conn, KEY).ok


def test_pending_records_refuse_updates_deletes_and_truncation(conn):
    audit.record(conn, "job.created", None, "job:pending")
    refuses_changes(conn, "audit_pending", "subject = 'job:other'", "append-only until sealed")
    audit.seal(conn)
    (row,) = conn.execute("SELECT subject FROM audit_log").fetchall()
    assert row["subject"] == "job:pending"


def test_retention_prunes_a_prefix_behind_a_signed_anchor(conn):
    append_some(conn, 5)
    later = datetime.now(UTC) + timedelta(days=2)
    assert audit.prune(conn, KEY, 1, later) == 5
    append_some(conn, 2)
    report = audit.verify(conn, KEY)
    assert report.ok, report.problems
    assert report.anchored == 5 and (report.first, report.last) == (6, 8)  # 6: audit.pruned
    (pruned,) = conn.execute("SELECT * FROM audit_log WHERE event = 'audit.pruned'").fetchall()
    assert '"records":5' in pruned["details"]
    assert audit.prune(conn, KEY, 0, later) == 0  # 0 days: kept forever


def test_a_forged_anchor_hiding_deleted_records_is_found(conn):
    append_some(conn, 5)
    audit.prune(conn, KEY, 1, datetime.now(UTC) + timedelta(days=2))
    append_some(conn, 3)
    # hide records 6-7 behind an anchor made without the appliance's key
    row = conn.execute("SELECT hash FROM audit_log WHERE seq = 7").fetchone()
    tamper(conn, "DELETE FROM audit_log WHERE seq <= 7")
    conn.execute(
        "INSERT INTO audit_anchors (seq, hash, records, signature) VALUES (7, %s, 2, %s)",
        (row["hash"], audit.anchor_signature(b"guess" * 10, 7, row["hash"])),
    )
    (found,) = audit.verify(conn, KEY).problems
    assert "not signed with this appliance's secret key" in found


def test_operator_changes_to_users_and_keys_are_recorded(cli, conn):
    assert cli("users", "create", "ada@example.test")[0] == 0
    assert cli("keys", "create", "--user", "bo@example.test", "--name", "ci")[0] == 0
    key_id = conn.execute("SELECT id FROM api_keys").fetchone()["id"]
    assert cli("keys", "revoke", str(key_id))[0] == 0
    assert cli("users", "disable", "ada@example.test")[0] == 0
    assert cli("users", "enable", "ada@example.test")[0] == 0
    ada = conn.execute("SELECT id FROM users WHERE email = 'ada@example.test'").fetchone()["id"]
    bo = conn.execute("SELECT id FROM users WHERE email = 'bo@example.test'").fetchone()["id"]
    assert cli("users", "delete", "ada@example.test")[0] == 0
    audit.seal(conn)
    rows = conn.execute(
        "SELECT event, user_id, actor, subject, details FROM audit_log ORDER BY seq"
    ).fetchall()
    events = [(r["event"], r["user_id"]) for r in rows if r["event"] != "operator.command"]
    assert events == [
        ("user.created", ada),
        ("user.created", bo),
        ("key.created", bo),
        ("key.revoked", bo),
        ("user.disabled", ada),
        ("user.enabled", ada),
        ("user.deleted", ada),
    ]
    commands = [r["details"] for r in rows if r["event"] == "operator.command"]
    assert len(commands) == 6 and '"argv":["keys","revoke"' in commands[2]
    # no record holds an e-mail: a user's id stands for it, or "<e-mail>" once they are gone
    assert not any("example.test" in r["details"] + r["subject"] for r in rows)
    assert f'"argv":["users","create","user:{ada}"]' in commands[0]
    assert f'"argv":["keys","create","--user","user:{bo}","--name","ci"]' in commands[1]
    assert '"argv":["users","delete","<e-mail>"]' in commands[5]
    assert all(r["actor"].startswith("operator") for r in rows)
    key_created = next(r for r in rows if r["event"] == "key.created")
    assert key_created["subject"] == f"key:{key_id}" and '"name":"ci"' in key_created["details"]
    assert "apl_" not in key_created["details"].replace('"prefix":"apl_', "")  # no key in it


def test_audit_verify_exits_1_on_a_broken_chain_and_show_filters(cli, conn):
    assert cli("keys", "create", "--user", "cy@example.test")[0] == 0
    assert cli("keys", "create", "--user", "di@example.test")[0] == 0
    code, out, _ = cli("audit", "show", "--user", "cy@example.test", "--since", "1h")
    shown = out.strip().split("\n")[1:]
    assert code == 0 and [line.split("\t")[2] for line in shown] == ["key.created", "user.created"]
    code, out, _ = cli("audit", "show", "--event", "key")
    assert code == 0 and len(out.strip().split("\n")) == 3
    assert cli("audit", "show", "--since", "2999-01-01")[1].count("\n") == 1  # the header
    code, out, _ = cli("audit", "verify")
    assert code == 0 and out.startswith("audit log intact: records 1-")
    head = out.strip().rsplit(" ", 1)[1]
    assert cli("audit", "verify", "--noted", head)[0] == 0
    tamper(conn, "UPDATE audit_log SET user_id = NULL WHERE seq = 2")
    code, out, _ = cli("audit", "verify")
    assert code == 1 and "BROKEN: record 2 does not match its hash" in out
