"""Fault drills under steady load on the lab fleet (tests/deploy/fleet.py): each fault is
made on a real host while clients call the API through the lb, and each drill records what
the clients saw (bench/out/drills.json) before checking what they must see.

Faults: the lb's nginx restarted; Redis restarted and then dead for a minute (then dead
again, without load, until its alerts fire); a worker host powered off mid-conversion (kept
off until its alert fires); the S3 store unreachable for half a minute, and then until its
alert fires; a worker host's job area full for half a minute; the Postgres primary killed
(kept down until its alerts fire), then a planned switchover back; the standby's replay
paused until the replication-lag alert fires. Alerts are read from the lab's
Prometheus, where every alert's ``for`` is a quarter of production's (the lab's
``alert_for_scale``: ApplianceTargetDown fires after 30 s of a target down, not 2 minutes);
each drill's client-visible outage (load.outage) goes to drills.json with what the clients
saw. The database is read on whichever db host is the primary at the time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.alerts import alerts, wait_for
from tests.deploy.fleet import Fleet
from tests.deploy.load import (
    LOAD_CLIENTS,
    Client,
    count_in_db,
    explain,
    failures,
    jobs_by_tag,
    record_seen,
    seen,
    timeline,
    under_load,
    unfinished,
)

pytestmark = pytest.mark.timeout(900)

# Seconds every accepted job gets to finish after a fault is over: a lapsed lease (60 s) and
# a reconciler pass or two (every 10 s) with room to spare.
FINISH_SECONDS = 150
# ... and after a worker host dies: the messages it had fetched and not started (Dramatiq
# prefetches twice its threads) go back on the queue once the broker's maintenance finds it
# dead (its heartbeat 60 s old, then within the 2 s the maintenance runs in); 68-72 s in the
# lab, four runs.
WORKER_LOST_SECONDS = 240
# ApplianceTargetDown's `for` (2 minutes in production), a scrape and a rule evaluation
# (15 s each), and slack
TARGET_DOWN_SECONDS = 200


def all_made_once(fleet: Fleet, made: list[str]) -> None:
    """Each client's jobs (by its tag) in the database are those it was answered with."""
    answered = jobs_by_tag(made)
    assert count_in_db(fleet, list(answered)) == {tag: len(ids) for tag, ids in answered.items()}


def test_clients_that_retry_see_no_failure_when_the_lb_s_nginx_restarts(fleet):
    how = Client(retry_for=30)

    fault: list[float] = []

    def restart() -> None:
        fault.append(time.monotonic())
        fleet.lab.run("h1", "systemctl restart nginx")
        time.sleep(5)

    made: list[str] = []
    results = under_load(fleet, restart, made, how)
    record_seen("lb nginx restart", results, how, fault[0])
    assert len(results) > 10 * LOAD_CLIENTS, timeline(results)
    assert failures(results) == [], explain(fleet, results)
    all_made_once(fleet, made)


def test_no_accepted_job_is_lost_when_redis_restarts_and_dies_for_a_minute(fleet):
    """Clients that do not retry see success or 503 with Retry-After, nothing else; every
    job accepted before, during or after finishes (the reconciler enqueues again what the
    dead Redis lost), and sync waits answer. After the load Redis dies again, with no
    load, until its alerts fire (the time to fire measured alone), and they clear once it
    is back."""
    how = Client(converts=True, sync_waits=True)
    back: list[float] = []

    fault: list[float] = []

    def outage() -> None:
        fault.append(time.monotonic())
        fleet.lab.run("h2", "systemctl restart redis-server")
        time.sleep(10)
        fleet.lab.run("h2", "systemctl kill --signal=SIGKILL redis-server;"
                            " systemctl stop redis-server")  # fmt: skip
        time.sleep(60)
        fleet.lab.run("h2", "systemctl start redis-server")
        back.append(time.monotonic())
        time.sleep(20)

    made: list[str] = []
    try:
        results = under_load(fleet, outage, made, how)
    finally:
        fleet.lab.run("h2", "systemctl start redis-server")
    record_seen("redis restart, then dead 60 s", results, how, fault[0])
    started = time.monotonic()
    assert unfinished(fleet, made, FINISH_SECONDS) == {}
    finished = time.monotonic() - started
    all_made_once(fleet, made)
    assert failures(results, allowed=(503,)) == [], explain(fleet, results, allowed=(503,))
    after = [r for r in results if r[4] > back[0] + 5]
    assert failures(after) == [], explain(fleet, after)
    assert len(after) > 2 * LOAD_CLIENTS, timeline(results)
    fired, cleared = redis_alerts_fire_and_clear(fleet)
    print(f"redis drill: every job finished {finished:.0f} s after the load; dead again with no"
          f" load, its alerts fired after {fired}, cleared {cleared} after its start")  # fmt: skip


def redis_alerts(port: int, state: str | None = None) -> set[str]:
    """The targets the Redis-down alerts name: ApplianceRedisDown (its exporter's
    ``redis_up``, job redis) and ApplianceDependencyUnreachable for redis (the api and worker
    hosts' own readiness checks)."""
    down = alerts(port, "ApplianceRedisDown", state)
    return down | alerts(port, "ApplianceDependencyUnreachable", state, dependency="redis")


def redis_alerts_fire_and_clear(fleet: Fleet) -> tuple[dict[str, int], dict[str, int]]:
    """Redis dead (no load) until its alerts fire, for every job that watches it, then
    started: the seconds, by job, until each fired and until each cleared (their ``for``:
    2 minutes, and 1 for the readiness checks, in production)."""
    jobs = {"redis", "appliance-api", "appliance-worker"}

    def by_job(port: int, state: str | None = None) -> set[str]:
        return {target.split()[0] for target in redis_alerts(port, state)}

    fired: dict[str, int] = {}
    cleared: dict[str, int] = {}
    with fleet.lab.tunnel("h1", 9090) as port:
        wait_for(lambda: redis_alerts(port) == set(), 90)  # the minute's alerts have cleared
        killed = time.monotonic()
        fleet.lab.run("h2", "systemctl kill --signal=SIGKILL redis-server;"
                            " systemctl stop redis-server")  # fmt: skip
        try:

            def all_fired() -> bool:
                for job in by_job(port, "firing") - set(fired):
                    fired[job] = round(time.monotonic() - killed)
                return set(fired) >= jobs

            # ApplianceRedisDown's `for`, a scrape and an evaluation, and slack
            wait_for(all_fired, TARGET_DOWN_SECONDS)
        finally:
            fleet.lab.run("h2", "systemctl start redis-server")
        back = time.monotonic()

        def all_cleared() -> bool:
            for job in jobs - by_job(port) - set(cleared):
                cleared[job] = round(time.monotonic() - back)
            return set(cleared) >= jobs

        wait_for(all_cleared, 120)
    return fired, cleared


def processing(fleet: Fleet) -> int:
    query = "SELECT count(*) FROM tasks WHERE status = 'processing'"
    command = f'cd / && runuser -u postgres -- psql -d appliance -Atc "{query}"'
    out = fleet.lab.run(fleet.db_primary(), command)
    return int(out.stdout)


def test_a_worker_host_powered_off_mid_conversion_has_its_tasks_finished_elsewhere(fleet):
    """h5 dies with conversions running (seconds each; each client waits for its job on
    the sync API, so the two worker hosts' four threads are about as busy as the clients):
    h4 runs them again once their lease lapses."""
    how = Client(converts=True, sync_waits=True, side=4000)
    took: list[float] = []
    made: list[str] = []
    killed: list[float] = []

    def power_off() -> None:
        deadline = time.monotonic() + 60
        # 2 threads a worker host: 3 at work means h5 has one at least
        while processing(fleet) < 3:
            assert time.monotonic() < deadline, "the workers never got busy"
            time.sleep(0.5)
        killed.append(time.monotonic())
        fleet.lab.kill("h5")
        assert unfinished(fleet, list(made), WORKER_LOST_SECONDS) == {}
        took.append(time.monotonic() - killed[0])

    h5 = fleet.lab.ip("h5")

    def h5_down(port: int, state: str | None = None) -> set[str]:
        return alerts(port, "ApplianceTargetDown", state, on=h5)

    with fleet.lab.tunnel("h1", 9090) as port:
        try:
            results = under_load(fleet, power_off, made, how)
            record_seen("worker host powered off", results, how, killed[0])
            assert failures(results) == [], explain(fleet, results)
            assert unfinished(fleet, made, FINISH_SECONDS) == {}
            # its `for`, a scrape and an evaluation (15 s each), counted from the kill
            firing = {"appliance-worker", "node"}
            wait_for(lambda: {t.split()[0] for t in h5_down(port, "firing")} >= firing,
                     TARGET_DOWN_SECONDS - (time.monotonic() - killed[0]))  # fmt: skip
            fired = time.monotonic() - killed[0]
        finally:
            fleet.lab.boot("h5")
        cleared = wait_for(lambda: h5_down(port) == set(), 240)
    all_made_once(fleet, made)
    print(
        f"worker drill: every job finished {took[0]:.0f} s after h5 died; its"
        f" ApplianceTargetDown fired {fired:.0f} s after, cleared {cleared:.0f} s after boot"
    )


def s3_rule(fleet: Fleet, verb: str) -> str:
    """An iptables rule in the lab's namespace that drops what the hosts send to the S3
    store (the harness's server, relayed at the bridge address)."""
    spec = json.loads(Path(fleet.env["APPLIANCE_LAB_FLEET"]).read_text())
    ip, port = spec["data"]["s3_external"]["endpoint"].rsplit(":", 1)
    return (f"ip netns exec {fleet.lab.netns} iptables {verb} INPUT -p tcp -d {ip}"
            f" --dport {port} -j DROP")  # fmt: skip


def test_storage_unreachable_for_half_a_minute_answers_503_and_loses_nothing(fleet):
    """Job creations that carry a file are answered 503 with Retry-After within seconds,
    nothing of them kept, so clients that send them again (same Idempotency-Key) see no
    failure and each job is made once; every job accepted finishes once the store is back.
    (Before: the S3 client waited minutes, the lb answered 504 and the job was made anyway.)"""
    # No sync waits: a client waiting for a conversion that waits for the store would send
    # nothing while the store is away.
    how = Client(converts=True, retry_for=60)
    made: list[str] = []

    fault: list[float] = []

    def outage() -> None:
        fault.append(time.monotonic())
        subprocess.run(s3_rule(fleet, "-I"), shell=True, check=True)
        try:
            time.sleep(30)
        finally:
            subprocess.run(s3_rule(fleet, "-D"), shell=True, check=True)
        time.sleep(20)

    results = under_load(fleet, outage, made, how)
    record_seen("storage unreachable 30 s", results, how, fault[0])
    assert unfinished(fleet, made, FINISH_SECONDS) == {}
    all_made_once(fleet, made)
    assert failures(results) == [], explain(fleet, results)
    refused = {r[3] for r in how.retried if r[1] == "POST"}
    assert 503 in refused, seen(how.retried)
    # Never a wait for the lb's read timeout (504), nor a 503 that does not say when to come
    # back, nor the lb's 502 (its upstream emptied by counting the app's 503s as failures).
    assert {r[3] for r in how.retried} <= {503}, seen(how.retried)


def storage_alerts(port: int, state: str | None = None) -> set[str]:
    return alerts(port, "ApplianceDependencyUnreachable", state, dependency="storage")


def test_the_storage_alert_fires_while_the_store_is_unreachable_and_clears_after(fleet):
    """No exporter watches the lab's store (an external S3 has none either): the api and
    worker hosts' own readiness checks, scraped as ``appliance_dependency_up``, say it is
    gone. The alert fires after its `for` and clears once the store is back."""
    with fleet.lab.tunnel("h1", 9090) as port:
        wait_for(lambda: storage_alerts(port) == set(), 60)  # the last drill's has cleared
        subprocess.run(s3_rule(fleet, "-I"), shell=True, check=True)
        try:
            # its `for`, a scrape (15 s) and an evaluation (15 s), and the probe's 5 s
            jobs = {"appliance-api", "appliance-worker"}
            fired = wait_for(
                lambda: {t.split()[0] for t in storage_alerts(port, "firing")} == jobs, 180
            )
            firing = storage_alerts(port, "firing")
        finally:
            subprocess.run(s3_rule(fleet, "-D"), shell=True, check=True)
        cleared = wait_for(lambda: storage_alerts(port) == set(), 120)
    print(f"storage alert: firing {fired:.0f} s after the store went away, on {sorted(firing)};"
          f" cleared {cleared:.0f} s after it came back")  # fmt: skip
    assert {target.split()[0] for target in firing} == jobs


# The worker's job area on a worker host: each conversion's temporary directory (its input
# downloaded, its output before it is stored) is made here (Runtime.work_root); the engines'
# own /job is a tmpfs inside their sandbox, the same size on every host.
JOB_AREA = "/var/lib/appliance/work"


@contextlib.contextmanager
def volume_at(fleet: Fleet, name: str, path: str, mib: int) -> Iterator[None]:
    """A fresh ext4 volume of ``mib`` MiB mounted at ``path`` on host ``name`` (a loop
    device of the machine, mounted in the host's mount namespace, from which the services'
    own namespaces receive it), owned by the app's user: a data volume of its own that a
    test can fill, and which node_exporter reports like any disk. Unmounted and detached
    after (the host's directory under it, made if missing, was left as it was)."""
    image = Path(tempfile.mkdtemp(prefix="lab-volume-")) / "volume.img"
    subprocess.run(["truncate", "-s", f"{mib}M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(image)], check=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    device = os.stat(loop).st_rdev
    pid = fleet.lab.host(name).init_pid()
    # its pid namespace too: mount(8) and umount(8) read /proc/self/mountinfo
    enter = ["nsenter", "-t", str(pid), "-m", "-p", "--"]
    node = f"/dev/lab-{Path(loop).name}"
    try:
        assert pid is not None, f"{name} is not running"
        # (the worker makes it at its first conversion)
        fleet.lab.run(name, f"install -d -o appliance -g appliance -m 750 {path}")
        subprocess.run([*enter, "mknod", node, "b", str(os.major(device)),
                        str(os.minor(device))], check=True)  # fmt: skip
        subprocess.run([*enter, "mount", node, path], check=True)
        fleet.lab.run(name, f"chown appliance:appliance {path} && chmod 750 {path}")
        yield
    finally:
        subprocess.run([*enter, "umount", "-l", path], check=False)
        subprocess.run([*enter, "rm", "-f", node], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)
        shutil.rmtree(image.parent, ignore_errors=True)


def fill(fleet: Fleet, name: str, path: str, file: str, up_to: float | None = None) -> None:
    """Fills the filesystem at ``path`` on ``name`` with ``file`` (in it): to the fraction
    ``up_to`` of its size, or to the last block."""
    if up_to is None:  # each dd ends at ENOSPC; the second takes what the first's left
        dd = f"dd if=/dev/zero of={path}/{file} status=none oflag=append conv=notrunc"
        left = f"$(df -B1 --output=avail {path} | tail -1)"
        fleet.lab.run(name, f"{dd} bs=1M; sync; {dd} bs=4k; sync; test {left} -lt 65536")
        return
    fleet.lab.run(name, f"set -- $(df -B1 --output=size,used {path} | tail -1);"
                        f" fallocate -l $(( ${{1}} * {int(up_to * 100)} / 100 - ${{2}} ))"
                        f" {path}/{file}")  # fmt: skip


def worker_state(fleet: Fleet, name: str) -> str:
    """The light worker's main process and restart count on ``name``: the same string while
    the process lived on."""
    return fleet.lab.run(name, "systemctl show -p MainPID -p NRestarts --value"
                               " appliance-worker@light").stdout  # fmt: skip


def converted(port: int, ip: str) -> float:
    """Conversions the worker host at ``ip`` finished, as Prometheus scraped them last."""
    query = ('sum(appliance_tasks_ended_total{job="appliance-worker",operation="convert",'
             f'status="finished",instance=~"{ip}:.*"}})')  # fmt: skip
    reply = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query},
                      timeout=15)  # fmt: skip
    found = reply.raise_for_status().json()["data"]["result"]
    return float(found[0]["value"][1]) if found else 0.0


# ApplianceStorageAlmostFull's `for` in the lab (10 minutes in production), two scrapes and an
# evaluation (15 s each), and slack
STORAGE_FULL_SECONDS = 300


@pytest.mark.timeout(1500)
def test_a_worker_host_s_full_disk_fails_its_tasks_retryably_and_loses_nothing(fleet):
    """h5's job area (a volume of its own here) fills up with conversions running: its tasks
    fail with NO_SPACE, a retryable fault, and run again (on h4, or on h5 once there is
    room); h5 hands tasks back while it is full rather than spend their attempts; the worker
    process lives on and converts again once the space is freed; every accepted job
    finishes, and clients that do not retry see no failure. The volume is 90% full from
    before the load to the end (little room for the conversions): ApplianceStorageAlmostFull
    fires for it on h5 and clears once the files are gone."""
    how = Client(converts=True, sync_waits=True)
    h5 = fleet.lab.ip("h5")
    made: list[str] = []
    filled: list[float] = []
    freed: list[float] = []
    done: list[float] = []

    since = ""  # h5's clock as the load starts

    def journal() -> str:
        return fleet.lab.run("h5", f"journalctl -q -u appliance-worker@light"
                                   f" --since @{since} -o cat").stdout  # fmt: skip

    def full_for_half_a_minute(port: int) -> None:
        time.sleep(5)  # conversions under way on both worker hosts
        filled.append(time.monotonic())
        fill(fleet, "h5", JOB_AREA, "full")
        time.sleep(30)
        # and on until one of h5's tasks has met the full disk: the queue's messages go to
        # either worker host, and a whole run once saw 30 s pass with none taken by h5
        deadline = time.monotonic() + 120
        while "disk is full" not in journal() and time.monotonic() < deadline:
            time.sleep(3)
        fleet.lab.run("h5", f"rm -f {JOB_AREA}/full")
        freed.append(time.monotonic())
        done.append(converted(port, h5))
        time.sleep(40)

    def almost_full(port: int, state: str | None = None) -> set[str]:
        return alerts(port, "ApplianceStorageAlmostFull", state, on=h5, mountpoint=JOB_AREA)

    with fleet.lab.tunnel("h1", 9090) as port, volume_at(fleet, "h5", JOB_AREA, 128):
        try:
            fill(fleet, "h5", JOB_AREA, "almost", up_to=0.9)
            over = time.monotonic()
            since = fleet.lab.run("h5", "date +%s").stdout.strip()
            before = worker_state(fleet, "h5")
            results = under_load(fleet, lambda: full_for_half_a_minute(port), made, how)
            record_seen("worker host's disk full 30 s", results, how, filled[0])
            assert failures(results) == [], explain(fleet, results)
            started = time.monotonic()
            left = unfinished(fleet, made, FINISH_SECONDS)
            finished = time.monotonic() - started
            all_made_once(fleet, made)
            lines = journal()
            no_space = lines.count("disk is full")
            assert no_space > 0, lines[-3000:]
            assert worker_state(fleet, "h5") == before  # the same process, not restarted
            # h5 converted again after the space came back (Prometheus scrapes every 15 s)
            wait_for(lambda: converted(port, h5) > done[0], 60)
            # its `for` (2.5 minutes in the lab) from the 90% fill, a scrape and an evaluation
            within = STORAGE_FULL_SECONDS - (time.monotonic() - over)
            wait_for(lambda: almost_full(port, "firing") != set(), within)
            fired = time.monotonic() - over
        finally:
            fleet.lab.run("h5", f"rm -f {JOB_AREA}/full {JOB_AREA}/almost", check=False)
        cleared = wait_for(lambda: almost_full(port) == set(), 120)
    print(
        f"full disk drill: {no_space} NO_SPACE retries on h5 while full; jobs not finished"
        f" {left} {finished:.0f} s after the load; ApplianceStorageAlmostFull fired {fired:.0f} s"
        f" after the 90% fill, cleared {cleared:.0f} s after the files went"
    )
    # (checked last, so that a failure here still prints the drill's figures)
    assert left == {}, failed_tasks(fleet, made)


def failed_tasks(fleet: Fleet, made: list[str]) -> str:
    """The failed tasks of the jobs of ``made``: code, attempts and message, by count."""
    ids = ",".join(f"'{line.split()[1]}'" for line in made)
    query = ("cd / && runuser -u postgres -- psql -d appliance -At -c \"SELECT count(*), code,"
             f" attempts, message FROM tasks WHERE job_id IN ({ids}) AND status = 'error'"
             ' GROUP BY 2, 3, 4"')  # fmt: skip
    return fleet.lab.run(fleet.db_primary(), query).stdout


# pg_auto_failover's timings on the fleet (roles/db.py MONITOR_SETTINGS): a primary that
# stops answering is unhealthy after 10 s, its standby promoted then, and takes writes once
# the old primary must have stopped (primary_demote_timeout, 15 s); the bar is a minute.
FAILOVER_SECONDS = 60
# A 503 is fine up to this long after the new primary takes writes: the pools drop their dead
# connections and reach the new primary through the multi-host URL (tries at most 2 s apart,
# db.RECONNECT_MAX_DELAY), and a request may have waited the pool's 5 s for a connection.
AFTER_PROMOTION_SECONDS = 10
DB_HOSTS = ("h4", "h6")
PG_UNIT = "pgautofailover@node"


def reported_state(fleet: Fleet, name: str) -> str:
    """db host ``name``'s state as pg_auto_failover's monitor (h1, port 5431) has it from its
    keeper: "primary", "secondary", "wait_primary" (a primary with no standby, writes
    committed without one), "stop_replication" (promoted, writes held until the old primary
    must have stopped: primary_demote_timeout), ..."""
    sql = f"SELECT reportedstate FROM pgautofailover.node WHERE nodename = '{name}'"
    ask = f'cd / && runuser -u postgres -- psql -p 5431 -d pg_auto_failover -XAtc "{sql}"'
    return fleet.lab.run("h1", ask, timeout=30).stdout.strip()


def outputs_once(fleet: Fleet, made: list[str]) -> str:
    """The convert tasks of ``made`` not finished with exactly one output file (a task run
    twice whose two runs both got in would hold two), one line each; empty when none."""
    ids = ",".join(f"'{line.split()[1]}'" for line in made)
    query = (
        "SELECT t.id, t.status, t.attempts, (SELECT count(*) FROM task_files f"
        " WHERE f.task_id = t.id) AS outputs FROM tasks t"
        f" WHERE t.job_id IN ({ids}) AND t.operation = 'convert'"
    )
    odd = f"SELECT * FROM ({query}) q WHERE status <> 'finished' OR outputs <> 1"
    command = f'cd / && runuser -u postgres -- psql -d appliance -AtF " " -c "{odd}"'
    return fleet.lab.run(fleet.db_primary(), command).stdout.strip()


def failed_outside(results: list, start: float, end: float) -> list:
    """Answers other than success outside [start, end] (monotonic), and anything but a 503
    with Retry-After inside it."""
    return [r for r in failures(results) if not (r[3] == 503 and start <= r[0] <= end)]


@pytest.mark.timeout(1500)
def test_the_database_fails_over_when_its_primary_is_killed_and_switches_back_under_load(fleet):
    """kill -9 of the primary's Postgres (every process of its pg_auto_failover node, kept
    down) while clients make and convert jobs: the standby takes writes within a minute;
    clients see only 503 with Retry-After, between the kill and shortly after the new
    primary takes writes, and get every request through by sending it again (a creation
    with its Idempotency-Key: one in flight at the kill may have committed, its answer lost
    with the primary; a client that did not resend it would have been told 503 for a job
    that exists, seen in a run); every job is in the database once and finishes with one
    output. AppliancePostgresDown (the dead node) and
    AppliancePostgresNoStandby fire while it is down and clear once it is back as a standby.
    Then a planned switchover (``scripts/deploy switchover``) under the same load hands the
    primary back, with the same guarantees."""
    how = Client(converts=True, retry_for=60)
    old = fleet.db_primary()
    (new,) = (h for h in DB_HOSTS if h != old)
    assert fleet.in_recovery(new) == "t", f"{new} is not a standby before the drill"
    killed: list[float] = []
    promoted: list[float] = []
    writing: list[float] = []

    def kill_primary() -> None:
        # masked first, so systemd's Restart= cannot start it again between kill and stop
        killed.append(time.monotonic())
        fleet.lab.run(old, f"systemctl mask --runtime {PG_UNIT};"
                           f" systemctl kill --signal=SIGKILL {PG_UNIT};"
                           f" systemctl stop {PG_UNIT}")  # fmt: skip
        while fleet.in_recovery(new) != "f":
            assert time.monotonic() - killed[0] < FAILOVER_SECONDS, "no promotion in a minute"
            time.sleep(0.5)
        promoted.append(time.monotonic())
        # promoted, its writes are held until the old primary must have demoted itself
        while reported_state(fleet, new) not in ("wait_primary", "primary"):
            assert time.monotonic() - killed[0] < FAILOVER_SECONDS, "no writes in a minute"
            time.sleep(0.5)
        writing.append(time.monotonic())
        time.sleep(30)  # load on the new primary

    made: list[str] = []
    h_old = fleet.lab.ip(old)
    try:
        results = under_load(fleet, kill_primary, made, how)
        failover = writing[0] - killed[0]
        record_seen("postgres primary killed", results, how, killed[0],
                    promoted_seconds=promoted[0] - killed[0],
                    failover_seconds=failover)  # fmt: skip
        window = (killed[0], writing[0] + AFTER_PROMOTION_SECONDS)
        assert failures(results) == [], explain(fleet, results)
        bad = failed_outside(how.retried, *window)
        assert bad == [], explain(fleet, bad)
        assert len([r for r in results if r[0] > window[1]]) > 2 * LOAD_CLIENTS, timeline(results)
        assert unfinished(fleet, made, FINISH_SECONDS) == {}
        all_made_once(fleet, made)
        assert outputs_once(fleet, made) == ""

        def pg_alerts(port: int, state: str | None = None) -> set[str]:
            down = alerts(port, "AppliancePostgresDown", state, on=h_old)
            return down | alerts(port, "AppliancePostgresNoStandby", state)

        with fleet.lab.tunnel("h1", 9090) as port:
            # AppliancePostgresDown's `for` from the kill, a scrape and an evaluation
            wait_for(lambda: len(pg_alerts(port, "firing")) == 2,
                     TARGET_DOWN_SECONDS - (time.monotonic() - killed[0]))  # fmt: skip
            fired = time.monotonic() - killed[0]
            fleet.lab.run(old, f"systemctl unmask --runtime {PG_UNIT}; systemctl start {PG_UNIT}")
            # a standby again (pg_rewind, then streaming), one the monitor can switch over to
            rejoined = wait_for(lambda: reported_state(fleet, old) == "secondary", 180)
            assert fleet.in_recovery(old) == "t"
            cleared = wait_for(lambda: pg_alerts(port) == set(), 180)
    finally:
        fleet.lab.run(old, f"systemctl unmask --runtime {PG_UNIT}; systemctl start {PG_UNIT}")
    print(
        f"postgres drill: {new} promoted {promoted[0] - killed[0]:.1f} s and took writes"
        f" {failover:.1f} s after {old}'s Postgres was killed;"
        f" its alerts fired {fired:.0f} s after; {old} a standby again {rejoined:.0f} s after"
        f" its start, alerts cleared {cleared:.0f} s after that"
    )

    # the planned switchover, under the same load, gives the primary back to the first host
    handed: list[float] = []

    def switchover() -> None:
        handed.append(time.monotonic())
        fleet.deploy(command=("switchover",))
        handed.append(time.monotonic())
        time.sleep(20)

    made, how = [], Client(converts=True, retry_for=60)
    results = under_load(fleet, switchover, made, how)
    record_seen("postgres switchover", results, how, handed[0],
                switchover_seconds=handed[1] - handed[0])  # fmt: skip
    assert fleet.db_primary() == old and fleet.in_recovery(new) == "t"
    assert failures(results) == [], explain(fleet, results)
    bad = failed_outside(how.retried, handed[0], handed[1] + AFTER_PROMOTION_SECONDS)
    assert bad == [], explain(fleet, bad)
    assert unfinished(fleet, made, FINISH_SECONDS) == {}
    all_made_once(fleet, made)
    assert outputs_once(fleet, made) == ""


# AppliancePostgresReplicationLag: replay more than 30 s behind for its `for` (5 minutes in
# production, 75 s in the lab), with scrapes and evaluations (15 s each) and slack
LAG_FIRES_SECONDS = 240


def test_a_standby_that_falls_behind_raises_the_lag_alert_and_clears_it_after(fleet):
    """WAL replay paused on the standby (``pg_wal_replay_pause()``: it still receives and
    flushes the primary's WAL, so synchronous commits go on) while clients make jobs: its
    replay falls behind, AppliancePostgresReplicationLag fires for it and clients see no
    failure (a job's status is read on the primary when the standby lacks it; a list may
    be behind by the lag). Replay resumed, the standby catches up and the alert clears."""
    primary = fleet.db_primary()
    (standby,) = (h for h in DB_HOSTS if h != primary)
    ip = fleet.lab.ip(standby)
    psql = "cd / && runuser -u postgres -- psql -XAtc"

    def lag_alert(port: int, state: str | None = None) -> set[str]:
        return alerts(port, "AppliancePostgresReplicationLag", state, on=ip)

    fired: list[float] = []
    made: list[str] = []
    with fleet.lab.tunnel("h1", 9090) as port:
        assert lag_alert(port) == set()

        def fall_behind() -> None:
            fleet.lab.run(standby, f"{psql} 'SELECT pg_wal_replay_pause()'")
            try:
                fired.append(
                    wait_for(lambda: lag_alert(port, "firing") != set(), LAG_FIRES_SECONDS)
                )
            finally:
                fleet.lab.run(standby, f"{psql} 'SELECT pg_wal_replay_resume()'")

        results = under_load(fleet, fall_behind, made)
        cleared = wait_for(lambda: lag_alert(port) == set(), 120)
    assert failures(results) == [], explain(fleet, results)
    all_made_once(fleet, made)
    assert fleet.in_recovery(standby) == "t"
    print(
        f"replication lag: alert fired {fired[0]:.0f} s after replay was paused on {standby},"
        f" cleared {cleared:.0f} s after it resumed"
    )
