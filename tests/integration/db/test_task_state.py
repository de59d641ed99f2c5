"""The task state functions under concurrency, on a real Postgres: two inputs of one task (or
the last two tasks of a job) finishing at the same moment must still release the dependent and
settle the job. Two connections are interleaved by hand so the race happens every time."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest


@pytest.fixture
def db(postgres_url):
    conn = psycopg.connect(postgres_url, autocommit=True)
    user = conn.execute(
        "INSERT INTO users (email) VALUES ('race@example.test') RETURNING id"
    ).fetchone()[0]
    yield conn, user
    conn.close()


def _job(conn, user):
    return conn.execute(
        "INSERT INTO jobs (user_id, expires_at) VALUES (%s, now() + "
        "interval '1 hour') RETURNING id",
        (user,),
    ).fetchone()[0]


def _task(conn, user, job, name, status="processing", depends_on=()):
    return conn.execute(
        "INSERT INTO tasks (job_id, user_id, name, operation, queue, status, depends_on,"
        " expires_at) VALUES (%s, %s, %s, 'convert', 'light', %s, %s, now() + interval"
        " '1 hour') RETURNING id",
        (job, user, name, status, list(depends_on)),
    ).fetchone()[0]


def _blocked_by(conn, waiter: int, holder: int, seconds: float = 10) -> None:
    """Return once backend ``waiter`` waits on a lock ``holder`` holds (a state Postgres
    reports, not a guess at how long it takes to get there)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        (blockers,) = conn.execute("SELECT pg_blocking_pids(%s)", (waiter,)).fetchone()
        if holder in blockers:
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {waiter} never waited on {holder}")


def _finish_both(url, first, second):
    """Finish ``first`` in an open transaction; start finishing ``second`` and wait until
    it is blocked on the first's locks, inside the function; then commit the first. Returns
    the ids each call released."""
    released = {}
    second_pid: list[int] = []
    with psycopg.connect(url) as c1, psycopg.connect(url, autocommit=True) as watcher:
        released["first"] = [
            r[0] for r in c1.execute("SELECT appliance_finish_task(%s, '{}')", (first,)).fetchall()
        ]
        c2 = psycopg.connect(url)
        second_pid.append(c2.info.backend_pid)

        def other():
            with c2:
                released["second"] = [
                    r[0]
                    for r in c2.execute(
                        "SELECT appliance_finish_task(%s, '{}')", (second,)
                    ).fetchall()
                ]
                c2.commit()

        thread = threading.Thread(target=other)
        thread.start()
        _blocked_by(watcher, second_pid[0], c1.info.backend_pid)
        c1.commit()
    thread.join(10)
    assert not thread.is_alive()
    return released


def test_dependent_of_two_inputs_finishing_at_once_is_released(db, postgres_url):
    conn, user = db
    job = _job(conn, user)
    a, b = _task(conn, user, job, "a"), _task(conn, user, job, "b")
    m = _task(conn, user, job, "m", status="waiting", depends_on=[a, b])
    released = _finish_both(postgres_url, a, b)
    assert released["first"] + released["second"] == [m]
    assert conn.execute("SELECT ready_at IS NOT NULL FROM tasks WHERE id = %s", (m,)).fetchone()[0]


def test_job_whose_last_two_tasks_finish_at_once_is_finished(db, postgres_url):
    conn, user = db
    job = _job(conn, user)
    a, b = _task(conn, user, job, "a"), _task(conn, user, job, "b")
    _finish_both(postgres_url, a, b)
    assert conn.execute("SELECT status FROM jobs WHERE id = %s", (job,)).fetchone()[0] == "finished"


def test_deleting_an_input_fails_its_dependents_and_settles_their_job(db):
    conn, user = db
    job = _job(conn, user)
    a = _task(conn, user, job, "a", status="finished")
    b = _task(conn, user, job, "b", status="waiting")
    other_job = _job(conn, user)
    m = _task(conn, user, other_job, "m", status="waiting", depends_on=[a, b])
    assert conn.execute("SELECT appliance_delete_tasks(%s)", ([b],)).fetchone()[0] == 1
    status, code = conn.execute("SELECT status, code FROM tasks WHERE id = %s", (m,)).fetchone()
    assert (status, code) == ("error", "INPUT_TASK_FAILED")
    assert (
        conn.execute("SELECT status FROM jobs WHERE id = %s", (other_job,)).fetchone()[0] == "error"
    )
    assert (
        conn.execute("SELECT status FROM jobs WHERE id = %s", (job,)).fetchone()[0] == "finished"
    )  # only the finished task is left


def test_reconciler_safety_nets_release_and_settle_stragglers(db):
    conn, user = db
    job = _job(conn, user)
    a = _task(conn, user, job, "a", status="finished")
    m = _task(conn, user, job, "m", status="waiting", depends_on=[a])
    conn.execute("UPDATE tasks SET created_at = now() - interval '1 minute'")
    assert [r[0] for r in conn.execute("SELECT appliance_release_stragglers()")] == [m]
    done = _job(conn, user)
    _task(conn, user, done, "x", status="finished")
    conn.execute("UPDATE jobs SET created_at = now() - interval '1 minute'")
    conn.execute("SELECT appliance_settle_jobs()")
    assert (
        conn.execute("SELECT status FROM jobs WHERE id = %s", (done,)).fetchone()[0] == "finished"
    )


def test_a_retried_task_counts_through_its_retry(db):
    conn, user = db
    job = _job(conn, user)
    failed = _task(conn, user, job, "c", status="error")
    assert conn.execute("SELECT appliance_refresh_job(%s)", (job,)).fetchone()[0] == "error"
    retry = _task(conn, user, job, "c-retry")
    conn.execute("UPDATE tasks SET retry_of_task_id = %s WHERE id = %s", (failed, retry))
    conn.execute("SELECT appliance_finish_task(%s, '{}')", (retry,))
    assert conn.execute("SELECT status FROM jobs WHERE id = %s", (job,)).fetchone()[0] == "finished"
    assert uuid.UUID(str(retry))


def _complete_import(conn, task, queues, routed):
    return conn.execute(
        "SELECT owned, stale, dependents, ready FROM appliance_complete_import(%s, NULL,"
        " '[]', '{}', %s, %s, false)",
        (task, psycopg.types.json.Jsonb(queues), routed),
    ).fetchone()


def test_an_import_that_gained_a_dependent_changes_nothing_and_names_them_all(db):
    """The import's end worked out queues for the dependents its caller knew of; one more has
    appeared since: the answer is stale, with every dependent, and nothing is written."""
    conn, user = db
    job = _job(conn, user)
    up = _task(conn, user, job, "up", status="waiting")
    known = _task(conn, user, job, "c1", status="waiting", depends_on=[up])
    late = _task(conn, user, job, "c2", status="waiting", depends_on=[up])
    owned, stale, dependents, ready = _complete_import(conn, up, {str(known): "office"}, [known])
    assert (owned, stale, ready) == (False, True, None)
    assert sorted(d["id"] for d in dependents) == sorted([str(known), str(late)])
    assert {d["queue"] for d in dependents} == {"light"}
    rows = conn.execute(
        "SELECT status, queue FROM tasks WHERE id = ANY(%s) ORDER BY name", ([up, known, late],)
    ).fetchall()
    assert rows == [("waiting", "light")] * 3

    queues = {str(known): "office", str(late): "office"}
    owned, stale, dependents, ready = _complete_import(conn, up, queues, [known, late])
    assert (owned, stale, dependents) == (True, False, None)
    assert sorted(r["id"] for r in ready) == sorted([str(known), str(late)])
    assert {r["queue"] for r in ready} == {"office"}


def test_task_ends_find_dependents_through_the_index_not_by_scanning_every_task(db, postgres_url):
    """Among 20,000 other tasks, claiming a task, ending it (moving its dependent to another
    queue) and failing another with its dependent read tasks and their files through indexes
    only: no sequential scan in the transaction."""
    from appliance.db.queries.tasks import CLAIM, COMPLETE

    conn, user = db
    job = _job(conn, user)
    conn.execute(
        "INSERT INTO tasks (job_id, user_id, name, operation, queue, status, depends_on,"
        " expires_at) SELECT %s, %s, 'old', 'convert', 'light', 'finished',"
        " ARRAY[gen_random_uuid()], now() + interval '1 hour' FROM generate_series(1, 20000)",
        (_job(conn, user), user),
    )
    conn.execute(
        "INSERT INTO task_files (task_id, position, sha256, filename, size)"
        " SELECT id, 0, md5(id::text), 'f', 1 FROM tasks"
    )
    conn.execute("ANALYZE tasks")
    conn.execute("ANALYZE task_files")
    a, b = _task(conn, user, job, "a", status="waiting"), _task(conn, user, job, "b")
    conn.execute("UPDATE tasks SET ready_at = now() WHERE id = %s", (a,))
    after_a = _task(conn, user, job, "after-a", status="waiting", depends_on=[a])
    after_b = _task(conn, user, job, "after-b", status="waiting", depends_on=[b])
    queues = psycopg.types.json.Jsonb({str(after_a): "office"})
    with psycopg.connect(postgres_url) as tx:
        claimed = tx.execute(CLAIM, (a, 60)).fetchone()
        ended = tx.execute(COMPLETE, (a, 1, "[]", "{}", None, None, queues, "[]", False)).fetchone()
        failed = tx.execute("SELECT appliance_fail_task(%s, 'X', 'broken')", (b,)).fetchone()
        scans = tx.execute(
            "SELECT relname, seq_scan FROM pg_stat_xact_user_tables"
            " WHERE relname IN ('tasks', 'task_files') ORDER BY relname"
        ).fetchall()
    assert claimed is not None and ended[0] is True and failed == (2,)
    assert [(r["id"], r["queue"]) for r in ended[1]] == [(str(after_a), "office")]
    assert scans == [("task_files", 0), ("tasks", 0)]
    assert conn.execute("SELECT status FROM tasks WHERE id = %s", (after_b,)).fetchone() == (
        "error",
    )
