"""Usage metering per user and UTC day, in the transactions of the events: jobs created, tasks
ended and failed, the CPU seconds real conversions used, bytes in, out and exported, stored
byte-hours integrated as stored bytes change; and the quotas checked when a job is made."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator

import msgspec
import psycopg
import pytest
import pyvips

from appliance.db import sync_pool
from appliance.db.queries import usage as usage_rows
from appliance.errors import CreditsExceeded, QuotaExceeded
from appliance.jobs.reconciler import Reconciler
from appliance.security import usage
from appliance.security.accounts import user_document
from tests.integration.jobs.conftest import task


def _noise_png(size: int = 1200) -> bytes:
    """A PNG no other test converts (so no conversion-cache hit), heavy enough to take CPU."""
    image = pyvips.Image.gaussnoise(size, size, mean=128, sigma=40).cast("uchar")
    return bytes(image.write_to_buffer(".png"))


def _convert_job(data: bytes) -> dict:
    return {
        "in": {
            "operation": "import/base64",
            "file": base64.b64encode(data).decode(),
            "filename": "a.png",
        },
        "c": {"operation": "convert", "input": "in", "output_format": "webp"},
        "e": {"operation": "export/url", "input": "c"},
    }


def _day(system, user_id) -> dict:
    rows = system.sql(
        "SELECT * FROM usage_daily WHERE user_id = %s AND day = (now() AT TIME ZONE 'UTC')::date",
        user_id,
    )
    return rows[0] if rows else {}


def _user(system) -> tuple[uuid.UUID, str]:
    email = f"{uuid.uuid4().hex[:10]}@example.test"
    row = system.sql("INSERT INTO users (email) VALUES (%s) RETURNING id", email)
    return row[0]["id"], email


def _email(system, user_id) -> str:
    return system.sql("SELECT email FROM users WHERE id = %s", user_id)[0]["email"]


def _run(system, user_id, tasks) -> dict:
    """Make the job as ``user_id`` and wait for its end."""
    job_id = uuid.UUID(json.loads(system.call(system.svc.create_job(user_id, tasks, None)))["id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        doc = json.loads(system.call(system.svc.get_job(user_id, job_id)))
        if doc["status"] in ("finished", "error"):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end: {doc}")


def test_a_conversion_lands_in_the_days_usage_with_its_cpu_seconds_and_bytes(system):
    data = _noise_png()
    job = _run(system, system.user_id, _convert_job(data))
    assert job["status"] == "finished", job
    [conv] = system.sql("SELECT cpu_seconds FROM tasks WHERE id = %s", task(job, "c")["id"])
    [out] = system.sql("SELECT size FROM task_files WHERE task_id = %s", task(job, "c")["id"])
    day = _day(system, system.user_id)
    assert conv["cpu_seconds"] > 0.01  # measured in the sandboxed helper
    assert day["cpu_seconds"] == pytest.approx(conv["cpu_seconds"])
    assert (day["jobs_created"], day["tasks_ended"], day["tasks_failed"]) == (1, 3, 0)
    assert day["bytes_in"] == len(data)
    assert day["bytes_out"] == out["size"] == day["bytes_exported"]

    again = _run(system, system.user_id, _convert_job(_noise_png(1000)))
    assert again["status"] == "finished"
    later = _day(system, system.user_id)
    assert (later["jobs_created"], later["tasks_ended"]) == (2, 6)
    assert later["cpu_seconds"] > day["cpu_seconds"]


def test_a_failed_task_counts_as_ended_and_failed_with_no_cpu(system):
    tasks = {
        "in": {
            "operation": "import/base64",
            "file": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"junk" * 100).decode(),
            "filename": "bad.png",
        },
        "c": {"operation": "convert", "input": "in", "output_format": "webp"},
        "e": {"operation": "export/url", "input": "c"},
    }
    job = _run(system, system.user_id, tasks)
    assert job["status"] == "error"
    day = _day(system, system.user_id)
    # the import finished; the conversion failed and its export with it
    assert (day["tasks_ended"], day["tasks_failed"], day["cpu_seconds"]) == (3, 2, 0)


def test_with_metering_off_nothing_is_counted(system):
    off = msgspec.structs.replace(system.settings, usage_metering=False)
    pool = sync_pool(off)
    try:
        with pool.connection() as conn:
            conn.execute("SELECT appliance_create_job(%s, NULL, 1, '[]', false)", (system.user_id,))
        assert _day(system, system.user_id) == {}
    finally:
        pool.close()
    system.create({"up": {"operation": "import/upload"}})  # metering on: counted
    assert _day(system, system.user_id)["jobs_created"] == 1


def test_stored_byte_hours_accrue_while_files_are_held_and_stop_when_they_go(system):
    data = _noise_png(600)
    tasks = {"in": _convert_job(data)["in"]}
    started = time.time()
    job = system.create(tasks)
    time.sleep(1.5)
    system.call(system.svc.delete_job(system.user_id, uuid.UUID(job["id"])))
    held = time.time() - started
    time.sleep(1.5)  # nothing is stored now: these seconds add nothing
    report = Reconciler(system.rt).run_once()
    assert report is not None and report.usage_flushed == 1
    hours = _day(system, system.user_id)["stored_byte_hours"]
    assert hours == pytest.approx(len(data) * held / 3600, rel=0.25)
    assert usage_rows.flush_stored(system.rt.pool) == 0  # nothing held, nothing more


def test_a_user_past_their_daily_minutes_is_refused_with_402_and_another_is_not(
    system,
):
    email = _email(system, system.user_id)
    other, other_email = _user(system)
    for who in (email, other_email):
        usage.set_quota(system.settings, who, 1, None, None)
    job = _run(system, system.user_id, _convert_job(_noise_png()))
    assert job["status"] == "finished"
    with pytest.raises(CreditsExceeded) as refused:  # a minute begun is a minute used
        system.create({"up": {"operation": "import/upload"}})
    assert refused.value.status == 402 and refused.value.code == "CREDITS_EXCEEDED"
    assert "day" in refused.value.message
    with pytest.raises(CreditsExceeded):
        system.call(system.svc.create_task(system.user_id, "import/upload", {}))
    system.call(system.svc.create_job(other, {"up": {"operation": "import/upload"}}, None))

    usage.set_quota(system.settings, email, 0, 1, None)  # unlimited per day, 1 a month
    with pytest.raises(CreditsExceeded) as monthly:
        system.create({"up": {"operation": "import/upload"}})
    assert "month" in monthly.value.message
    usage.set_quota(system.settings, email, -1, -1, None)  # the defaults: unlimited
    system.create({"up": {"operation": "import/upload"}})


def test_credits_are_the_minutes_left_and_shrink_after_a_conversion(system):
    def credits():
        doc = system.call(user_document(system.svc.pool, system.svc.settings, system.user_id))
        return doc["credits"]

    assert credits() is None  # no quota: unlimited
    system.svc.settings = msgspec.structs.replace(system.settings, quota_minutes_per_day=25)
    assert credits() == 25
    job = _run(system, system.user_id, _convert_job(_noise_png()))
    assert job["status"] == "finished"
    assert credits() == 24
    usage.set_quota(system.settings, _email(system, system.user_id), None, 10, None)
    assert credits() == 9  # the fewer of the day's and the month's


def test_a_users_own_stored_bytes_cap_overrides_the_setting(system):
    data = _noise_png(300)
    system.create({"in": _convert_job(data)["in"]})
    email = _email(system, system.user_id)
    usage.set_quota(system.settings, email, None, None, len(data))
    with pytest.raises(QuotaExceeded):
        system.create({"up": {"operation": "import/upload"}})
    usage.set_quota(system.settings, email, None, None, 0)  # unlimited for them
    system.create({"up": {"operation": "import/upload"}})


def _slot(conn: psycopg.Connection) -> int:
    return conn.info.backend_pid % 16  # appliance_usage_slot()


@contextlib.contextmanager
def _another_slot(system, conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """An autocommit connection whose usage slot is not ``conn``'s (16 slots, 17 tries), that
    waits at most 2 s for a lock."""
    url = system.settings.effective_database_url
    tries = [psycopg.connect(url, autocommit=True) for _ in range(17)]
    try:
        other = next(c for c in tries if _slot(c) != _slot(conn))
        other.execute("SET lock_timeout = '2s'")
        yield other
    finally:
        for c in tries:
            c.close()


def test_one_users_counts_on_two_connections_do_not_wait_for_each_other(system):
    """A day's count is kept in a row per connection slot (migration 0028): one account's job
    creations and task ends no longer commit one after another on the day's one row."""
    make = "SELECT appliance_create_job(%s, NULL, 1, '[]', false)"
    with psycopg.connect(system.settings.effective_database_url) as first:
        first.execute(make, (system.user_id,))
        first.execute("SET CONSTRAINTS ALL IMMEDIATE")  # counted now; its row held until commit
        with _another_slot(system, first) as second:
            second.execute(make, (system.user_id,))  # counted and committed, not waiting
            assert _day(system, system.user_id)["jobs_created"] == 1
        first.commit()
    assert _day(system, system.user_id)["jobs_created"] == 2


def test_one_users_stored_bytes_on_two_connections_do_not_wait_and_sum_up(system):
    """So are the bytes a user's files hold: a task's files added on one connection do not
    hold another's; a file deleted on another slot than it was counted on is taken off, and
    the reconciler's flush moves the slots back into one."""
    job = system.create({n: {"operation": "import/upload"} for n in ("a", "b")})
    a, b = (task(job, n)["id"] for n in ("a", "b"))
    add = (
        "INSERT INTO task_files (task_id, position, sha256, filename, size)"
        " VALUES (%s, 0, %s, 'f', %s)"
    )
    stored = "SELECT appliance_stored_bytes(%s) AS n"
    with psycopg.connect(system.settings.effective_database_url) as first:
        first.execute(add, (a, uuid.uuid4().hex, 1000))  # the user's slot row held until commit
        with _another_slot(system, first) as second:
            second.execute(add, (b, uuid.uuid4().hex, 500))
            assert system.sql(stored, system.user_id)[0]["n"] == 500
        first.commit()
        with _another_slot(system, first) as second:
            second.execute("DELETE FROM task_files WHERE task_id = %s", (a,))
    assert system.sql(stored, system.user_id)[0]["n"] == 500
    slots = "SELECT slot, stored_bytes FROM user_usage WHERE user_id = %s ORDER BY slot"
    held = [r["stored_bytes"] for r in system.sql(slots, system.user_id)]
    assert len(held) >= 2 and min(held) < 0  # -1000 on a slot other than the 1000's
    report = Reconciler(system.rt).run_once()
    assert report is not None and report.usage_flushed == 1
    assert system.sql(slots, system.user_id) == [{"slot": 0, "stored_bytes": 500}]


def test_the_days_gone_by_are_folded_into_one_row_per_user_keeping_their_sums(system):
    user = system.user_id
    put = (
        "INSERT INTO usage_counts (user_id, day, slot, jobs_created, cpu_seconds, bytes_out)"
        " VALUES (%s, (now() AT TIME ZONE 'UTC')::date - %s, %s, %s, 0.5, 100)"
    )
    for days_ago, slot, jobs in [(3, 0, 1), (3, 3, 2), (3, 7, 4), (2, 5, 8), (1, 5, 16)]:
        system.sql(put, user, days_ago, slot, jobs)
    by_day = "SELECT * FROM usage_daily WHERE user_id = %s ORDER BY day"
    before = system.sql(by_day, user)
    report = Reconciler(system.rt).run_once()
    assert report is not None and report.usage_folded == 3  # slots 3 and 7, and 2 days ago's 5
    assert system.sql(by_day, user) == before
    assert [(r["jobs_created"], r["cpu_seconds"], r["bytes_out"]) for r in before] == [
        (7, 1.5, 300),
        (8, 0.5, 100),
        (16, 0.5, 100),
    ]
    rows = system.sql(
        "SELECT (now() AT TIME ZONE 'UTC')::date - day AS ago, slot FROM usage_counts"
        " WHERE user_id = %s ORDER BY day, slot",
        user,
    )
    # yesterday's slots stay apart: its last commits may still be counting as the day turns
    assert [(r["ago"], r["slot"]) for r in rows] == [(3, 0), (2, 0), (1, 5)]
    assert usage_rows.fold(system.rt.pool) == 0
