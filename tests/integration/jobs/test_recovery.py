"""An accepted job is never lost: lost messages, crashes after commit, dead workers."""

from __future__ import annotations

import base64
import threading
import time
import uuid

import redis

from appliance.jobs.reconciler import Reconciler
from tests.integration.jobs.conftest import UPLOAD_CONVERT_EXPORT, as_operation, task
from tests.integration.jobs.test_metrics import changes, snapshot


def _base64_job(system, png_file):
    return system.create(
        {
            "b": {
                "operation": "import/base64",
                "filename": "p.png",
                "file": base64.b64encode(png_file.read_bytes()).decode(),
            },
            "c": {"operation": "convert", "input": "b", "output_format": "gif"},
        }
    )


def _age_ready_tasks(system):
    system.sql(
        "UPDATE tasks SET ready_at = now() - interval '1 minute'"
        " WHERE status = 'waiting' AND ready_at IS NOT NULL"
    )


def test_messages_lost_with_a_redis_restart_are_enqueued_again(system, png_file):
    system.stop_worker()
    job = _base64_job(system, png_file)
    redis.Redis.from_url(system.settings.effective_redis_url).flushall()  # Redis lost it all
    _age_ready_tasks(system)
    report = Reconciler(system.rt).run_once()
    assert report.requeued == 1
    assert Reconciler(system.rt).run_once().requeued == 0  # now pending: not enqueued twice
    system.start_worker()
    assert system.wait(job["id"])["status"] == "finished"


def test_crash_between_commit_and_enqueue_is_recovered(system, png_file):
    system.stop_worker()

    class Crash(Exception):
        pass

    real = system.svc.dispatcher

    class Crashing:
        def dispatch(self, tasks, delay_ms=None):
            raise Crash

    system.svc.dispatcher = Crashing()
    try:
        _base64_job(system, png_file)
    except Crash:
        pass
    finally:
        system.svc.dispatcher = real
    rows = system.sql("SELECT id FROM jobs")
    assert len(rows) == 1  # the job was committed before the crash
    _age_ready_tasks(system)
    assert Reconciler(system.rt).run_once().requeued == 1
    system.start_worker()
    assert system.wait(str(rows[0]["id"]))["status"] == "finished"


def test_task_of_a_killed_worker_runs_again_when_its_lease_lapses(system, png_file):
    system.stop_worker()
    job = _base64_job(system, png_file)
    conv = task(job, "c")
    claimed = system.runner._claim(conv["id"])  # a worker took it, then died
    assert claimed.status == "processing"
    assert Reconciler(system.rt).run_once().lapsed == 0  # lease still valid
    system.sql(
        "UPDATE tasks SET lease_until = now() - interval '1 second' WHERE id = %s", conv["id"]
    )
    assert Reconciler(system.rt).run_once().lapsed == 1
    system.start_worker()
    job = system.wait(job["id"])
    assert job["status"] == "finished"
    assert system.sql("SELECT attempts FROM tasks WHERE id = %s", conv["id"])[0]["attempts"] == 2


def test_task_that_keeps_killing_workers_fails_with_worker_lost(system, png_file):
    system.stop_worker()
    job = _base64_job(system, png_file)
    conv = task(job, "c")
    system.runner._claim(conv["id"])
    system.sql(
        "UPDATE tasks SET attempts = 3, lease_until = now() - interval '1 second' WHERE id = %s",
        conv["id"],
    )
    before = snapshot()
    assert Reconciler(system.rt).run_once().lost == 1
    job = system.job(job["id"])
    assert job["status"] == "error"
    assert task(job, "c")["code"] == "WORKER_LOST"
    # the appliance's fault, not the input's: it counts against the job-success SLO
    diff = changes(before, until="jobs_error_service")
    assert diff.get("jobs_error_service") == 1 and "jobs_error" not in diff


def test_progress_is_written_while_the_task_runs(system, png_file):
    release = threading.Event()
    original = system.runner.operations["convert"]

    def slow(rt, t, progress):
        progress(0.5)
        release.wait(20)
        return original.run(rt, t, progress)

    system.runner.operations["convert"] = as_operation(slow)
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    deadline = time.monotonic() + 20
    seen = None
    while time.monotonic() < deadline:
        conv = task(system.job(job["id"]), "c")
        if conv["percent"] == 50:
            seen = conv
            break
        time.sleep(0.05)
    release.set()
    assert seen is not None and seen["status"] == "processing"
    assert system.job(job["id"])["status"] in ("processing", "finished")
    assert system.wait(job["id"])["status"] == "finished"


def test_cancelled_task_is_not_finished_by_its_worker(system, png_file):
    """The task is cancelled while its worker converts; the worker then ends its run (the
    test waits for that run to return, not for the job, which the cancel already ended)
    and must leave CANCELLED and no output behind."""
    release = threading.Event()
    started = threading.Event()
    original = system.runner.operations["convert"]

    def slow(rt, t, progress):
        started.set()
        release.wait(20)
        return original.run(rt, t, progress)

    system.runner.operations["convert"] = as_operation(slow)
    job = system.create(UPLOAD_CONVERT_EXPORT)
    conv_id = task(job, "c")["id"]
    ran = threading.Event()
    run = system.runner.run

    def run_and_tell(task_id, queue):
        try:
            return run(task_id, queue)
        finally:
            if str(task_id) == conv_id:
                ran.set()

    system.runner.run = run_and_tell
    system.upload(task(job, "up")["id"], png_file)
    assert started.wait(20)
    system.call(system.svc.cancel_task(system.user_id, uuid.UUID(conv_id)))
    release.set()
    assert ran.wait(20), "the worker's run did not end"
    job = system.job(job["id"])
    assert job["status"] == "error"
    assert task(job, "c")["code"] == "CANCELLED"
    assert task(job, "e")["code"] == "INPUT_TASK_FAILED"
    assert (
        system.sql(
            "SELECT count(*) AS n FROM task_files tf JOIN tasks t ON t.id = tf.task_id"
            " WHERE t.name = 'c'"
        )[0]["n"]
        == 0
    )


def test_message_that_arrives_before_its_retry_time_is_put_back_with_the_rest_of_the_delay(
    system, png_file
):
    system.stop_worker()
    job = _base64_job(system, png_file)
    conv = task(job, "c")
    client = redis.Redis.from_url(system.settings.effective_redis_url)
    client.flushall()
    system.sql(
        "UPDATE tasks SET ready_at = now() + interval '30 seconds' WHERE id = %s", conv["id"]
    )
    system.runner.run(conv["id"], "light")  # early: must not run, must not be dropped
    row = system.sql("SELECT status, attempts FROM tasks WHERE id = %s", conv["id"])[0]
    assert (row["status"], row["attempts"]) == ("waiting", 0)
    assert client.hlen("dramatiq:light.DQ.msgs") == 1
    assert client.zscore("appliance:pending:light", conv["id"]) is not None


def test_the_reconcilers_background_loop_recovers_on_its_own_and_survives_a_failed_pass(
    system, png_file
):
    """The thread the worker runs, not a pass called by hand: a first pass that fails (the
    database away, say) is logged and the loop goes on; a later pass re-enqueues the job
    whose message Redis lost, and the job finishes. ``stop`` ends the loop."""
    from appliance.jobs.reconciler import ReconcilerThread

    system.stop_worker()
    job = _base64_job(system, png_file)
    redis.Redis.from_url(system.settings.effective_redis_url).flushall()  # the message is lost
    _age_ready_tasks(system)
    thread = ReconcilerThread(system.rt)
    thread.interval = 0.1
    passes = []
    real = thread.reconciler.run_once

    def run_once():
        passes.append(len(passes))
        if len(passes) == 1:
            raise RuntimeError("the first pass fails")
        return real()

    thread.reconciler.run_once = run_once
    thread.start()
    try:
        system.start_worker()
        assert system.wait(job["id"])["status"] == "finished"
        assert len(passes) >= 2  # the failed pass and the one that re-enqueued
    finally:
        thread.stop()
    assert not thread.is_alive()


def test_a_pending_entry_older_than_a_redis_restart_is_not_trusted(system, png_file):
    """Redis restarted from a save that kept the pending entry but not the message (a
    worker had fetched it): the reconciler enqueues the task again at once, not after the
    15 minutes an entry is trusted otherwise."""
    system.stop_worker()
    job = _base64_job(system, png_file)
    client = redis.Redis.from_url(system.settings.effective_redis_url)
    (queue_key,) = client.keys("appliance:pending:*")
    (entry,) = client.zrange(queue_key, 0, -1)
    client.delete("dramatiq:" + queue_key.decode().rsplit(":", 1)[1])  # the message is gone
    _age_ready_tasks(system)
    assert Reconciler(system.rt).run_once().requeued == 0  # control: the entry is trusted
    started = time.time() - client.info("server")["uptime_in_seconds"]
    client.zadd(queue_key, {entry: started - 1})  # as a save from before the start left it
    assert Reconciler(system.rt).run_once().requeued == 1
    system.start_worker()
    assert system.wait(job["id"])["status"] == "finished"


def test_a_reconciler_pass_seals_the_audit_records_appended_since_the_last(system, png_file):
    system.stop_worker()
    pending = "SELECT count(*) AS n FROM audit_pending"
    before = system.sql(pending)[0]["n"]  # the user and key the fixture made, say
    job = _base64_job(system, png_file)  # its creation appends job.created
    assert system.sql(pending)[0]["n"] == before + 1
    assert Reconciler(system.rt).run_once().audit_sealed == before + 1
    assert system.sql(pending)[0]["n"] == 0
    last = system.sql("SELECT event, subject FROM audit_log ORDER BY seq DESC LIMIT 1")
    assert last == [{"event": "job.created", "subject": f"job:{job['id']}"}]
    assert Reconciler(system.rt).run_once().audit_sealed == 0
