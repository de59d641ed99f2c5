"""Engine helpers run in a real bubblewrap sandbox: no network, no host files, nobody, no
capabilities, resource limits, and a wall-clock timeout that kills them."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import pyvips

from appliance.engines.bwrap import UID_SLOTS, package_root
from appliance.engines.images import ImageEngine, ImageOptions
from appliance.engines.sandbox import (
    EngineCrashed,
    EngineTimeout,
    Helper,
    HelperPool,
    Limits,
    SandboxedEngine,
)
from appliance.errors import PermanentError
from tests.integration.engines.leaky import Leak, LeakyEngine

PROBE = r"""
import json, os, socket, sys
request = json.loads(sys.stdin.readline())
facts = {"uid": os.getuid(), "cwd": os.getcwd()}
facts["capeff"] = open("/proc/self/status").read().split("CapEff:")[1].split()[0]
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    facts["network"] = "open"
except OSError as exc:
    facts["network"] = type(exc).__name__
facts["host_file_visible"] = os.path.exists(sys.argv[2])
open(request["dir"] + "/written", "w").write("ok")
try:
    open("/job/planted", "w")
    facts["job_root_writable"] = True
except OSError:
    facts["job_root_writable"] = False
try:
    open(sys.argv[3], "w")
    facts["app_writable"] = True
except OSError:
    facts["app_writable"] = False
try:
    block = bytearray(3 << 30)
    facts["allocated_3g"] = True
except MemoryError:
    facts["allocated_3g"] = False
print(json.dumps({"error": "FACTS", "message": json.dumps(facts)}), flush=True)
"""


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def test_helper_has_no_network_no_host_files_no_privileges_and_limited_memory(
    work_root, tmp_path, listener
):
    secret = tmp_path / "secret.txt"
    secret.write_text("database password")
    app_file = Path(__file__).resolve()
    helper = Helper(
        work_root / f"probe-{os.getpid()}",
        Limits(memory_bytes=2 << 30),
        argv=[sys.executable, "-I", "-c", PROBE, str(listener), str(secret), str(app_file)],
    )
    job = helper.job_dir()
    helper.hand_over(job)
    with pytest.raises(PermanentError) as info:
        helper.call({"dir": f"/job/{job.name}"}, lambda f: None)
    facts = json.loads(info.value.message)
    uid = helper.uid.uid
    helper.stop()
    if os.geteuid() == 0:  # a uid of its own, from the helper range
        assert Limits().uid_base <= facts["uid"] == uid < Limits().uid_base + UID_SLOTS
    else:
        assert facts["uid"] == os.geteuid()
    assert facts["capeff"] == "0000000000000000"
    assert facts["network"] in ("ConnectionRefusedError", "OSError")  # own empty netns
    assert facts["host_file_visible"] is False
    assert facts["app_writable"] is False
    assert facts["allocated_3g"] is False  # 24 GB machine, 2 GiB limit
    assert (job / "written").read_text() == "ok"
    assert facts["job_root_writable"] is (os.geteuid() != 0)  # only its job directory
    assert facts["cwd"] == "/job"


def test_a_hung_engine_is_killed_at_its_timeout(work_root):
    hang = "import sys, time; sys.stdin.readline(); time.sleep(600)"
    helper = Helper(
        work_root / f"hang-{os.getpid()}",
        Limits(timeout_seconds=1.0),
        argv=[sys.executable, "-I", "-c", hang],
    )
    helper.job_dir()
    pid = helper.proc.pid
    start = time.monotonic()
    with pytest.raises(EngineTimeout) as info:
        helper.call({}, lambda f: None)
    assert info.value.code == "ENGINE_TIMEOUT"
    assert time.monotonic() - start < 5
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone


def test_a_crashing_engine_is_reported_and_replaced(work_root):
    crash = "import os, sys; sys.stdin.readline(); os.kill(os.getpid(), 11)"
    helper = Helper(
        work_root / f"crash-{os.getpid()}", Limits(), argv=[sys.executable, "-I", "-c", crash]
    )
    helper.job_dir()
    first = helper.proc.pid
    with pytest.raises(EngineCrashed, match="ended unexpectedly"):
        helper.call({}, lambda f: None)
    helper.job_dir()  # a new helper is started for the next job
    assert helper.proc.pid != first
    helper.stop()


@pytest.fixture
def pool(work_root):
    pool = HelperPool(work_root / f"pool-{os.getpid()}", Limits(restart_after=3))
    yield pool
    pool.close()


def test_images_convert_in_the_warm_sandboxed_helper(pool, tmp_path):
    src = tmp_path / "in.png"
    pyvips.Image.xyz(300, 200).extract_band(0).cast("uchar").write_to_file(str(src))
    engine = SandboxedEngine(ImageEngine(), pool)
    pids, seen = [], []
    for i in range(4):
        dst = tmp_path / f"out{i}.webp"
        engine.convert(src, dst, "png", "webp", ImageOptions(width=150), seen.append)
        assert pyvips.Image.new_from_file(str(dst)).width == 150
        pids.append(pool.helper().proc.pid)
    assert pids[0] == pids[1] == pids[2] != pids[3]  # warm, and replaced after 3 runs
    assert seen and all(0 <= f <= 1 for f in seen)
    assert src.exists()  # the worker's copy of the input is untouched


def test_engine_errors_come_back_with_their_code(pool, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    with pytest.raises(PermanentError) as info:
        SandboxedEngine(ImageEngine(), pool).convert(
            bad, tmp_path / "o.jpg", "png", "jpg", ImageOptions(), lambda f: None
        )
    assert info.value.code == "INVALID_INPUT_FILE"


def test_more_threads_than_helpers_all_convert_through_the_bounded_pool(work_root, tmp_path):
    """Four threads, two helpers: every conversion is done, by two helper processes only."""
    pool = HelperPool(work_root / f"bounded-{os.getpid()}", Limits(), size=2)
    src = tmp_path / "in.png"
    pyvips.Image.black(64, 64).write_to_file(str(src))
    engine = SandboxedEngine(ImageEngine(), pool)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for k in range(3):
                dst = tmp_path / f"t{i}-{k}.gif"
                engine.convert(src, dst, "png", "gif", ImageOptions(), lambda f: None)
                assert pyvips.Image.new_from_file(str(dst)).width == 64
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and not any(t.is_alive() for t in threads)
        started = [h for h in pool._all if h.proc is not None]
        assert len(pool._all) == 2 and len(started) == 2
        assert sum(h.served for h in pool._all) == 12
    finally:
        pool.close()


def test_doctor_reports_every_engine_usable_and_the_sandbox_working():
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "doctor"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(
        line.startswith("ok") and "sandbox" in line and "no network" in line for line in lines
    )
    for engine in ("vips", "rsvg", "pandoc", "ffmpeg"):
        assert any(line.startswith("ok") and f" {engine} " in line for line in lines), lines


def _facts(helper: Helper, request: dict | None = None) -> dict:
    """Start ``helper`` (a probe that answers with an error whose message is its facts)."""
    job = helper.job_dir()
    helper.hand_over(job)
    with pytest.raises(PermanentError) as info:
        helper.call({"dir": f"/job/{job.name}", **(request or {})}, lambda f: None)
    assert info.value.code == "FACTS", info.value
    return json.loads(info.value.message)  # type: ignore[no-any-return]


NESTED = r"""
import ctypes, json, subprocess, sys
sys.stdin.readline()
libc = ctypes.CDLL(None, use_errno=True)
facts = {}
argv = ["unshare", "--user", "--map-root-user", "true"]
done = subprocess.run(argv, capture_output=True, text=True)
facts["unshare_cmd"] = [done.returncode, done.stderr.strip()]
for name, args in (("unshare", (0x10000000,)), ("keyctl", (0, -3, 0)), ("ptrace", (12, 1, 0, 0))):
    nr = {"unshare": 272, "keyctl": 250, "ptrace": 101}[name]
    ctypes.set_errno(0)
    facts[name] = [libc.syscall(nr, *args), ctypes.get_errno()]
print(json.dumps({"error": "FACTS", "message": json.dumps(facts)}), flush=True)
"""


def test_no_nested_user_namespace_keyring_or_ptrace_inside_the_helper(work_root):
    """The usual first steps of a kernel exploit fail with EPERM (the seccomp filter)."""
    helper = Helper(
        work_root / f"nested-{os.getpid()}", Limits(), argv=[sys.executable, "-I", "-c", NESTED]
    )
    try:
        facts = _facts(helper)
    finally:
        helper.close()
    code, message = facts["unshare_cmd"]
    assert code != 0 and "Operation not permitted" in message, message
    assert facts["unshare"] == facts["keyctl"] == facts["ptrace"] == [-1, errno.EPERM]


FORK_BOMB = r"""
import json, os, signal, sys
attempts = int(sys.argv[1])
sys.stdin.readline()
made, error = 0, None
for _ in range(attempts):
    try:
        pid = os.fork()
    except OSError as exc:
        error = exc.errno
        break
    if pid == 0:
        signal.pause()  # held until the sandbox ends
        os._exit(0)
    made += 1
facts = {"made": made, "errno": error}
print(json.dumps({"error": "FACTS", "message": json.dumps(facts)}), flush=True)
sys.stdin.readline()  # keeps its processes while the test looks at another helper
"""


def test_a_fork_bomb_stops_at_the_helpers_process_limit_and_starves_no_other_helper(
    work_root, as_root
):  # helpers have uids of their own only when the worker runs as root
    limits = Limits(processes=48)

    def bomb(name: str, attempts: int) -> Helper:
        argv = [sys.executable, "-I", "-c", FORK_BOMB, str(attempts)]
        return Helper(work_root / f"{name}-{os.getpid()}", limits, argv=argv)

    first, second = bomb("bomb", 400), bomb("neighbour", 20)
    try:
        held = _facts(first)  # holds its processes from here on
        beside = _facts(second)
    finally:
        first.close()
        second.close()
    assert held["errno"] == errno.EAGAIN and held["made"] < 48, held
    assert beside == {"made": 20, "errno": None}  # its own uid, its own count
    assert first.uid.uid != second.uid.uid


FILL = r"""
import errno, json, os, sys
request = json.loads(sys.stdin.readline())
facts = {}
for name, where in (("tmp", "/tmp"), ("job", request["dir"]), ("shm", "/dev/shm")):
    fd = os.open(where + "/fill", os.O_WRONLY | os.O_CREAT, 0o600)
    written, error, chunk = 0, None, b"x" * (1 << 20)
    try:
        while written < int(sys.argv[1]):
            written += os.write(fd, chunk)
    except OSError as exc:
        error = exc.errno
    os.close(fd)
    os.unlink(where + "/fill")
    facts[name] = [written, error]
print(json.dumps({"error": "FACTS", "message": json.dumps(facts)}), flush=True)
"""


def test_a_helper_writing_without_end_meets_a_full_disk_of_its_own_size(work_root):
    """/tmp and /job are tmpfs of the configured size: ENOSPC there, not a full host disk."""
    limits = Limits(tmp_bytes=8 << 20, job_bytes=12 << 20)
    helper = Helper(
        work_root / f"fill-{os.getpid()}",
        limits,
        argv=[sys.executable, "-I", "-c", FILL, str(300 << 20)],
    )
    try:
        facts = _facts(helper)
    finally:
        helper.close()
    assert facts["tmp"][1] == errno.ENOSPC and facts["tmp"][0] <= 8 << 20, facts
    assert facts["job"][1] == errno.ENOSPC and facts["job"][0] <= 12 << 20, facts
    assert facts["shm"][1] == errno.ENOSPC, facts  # /dev/shm was bounded already


def test_an_image_engine_filling_its_job_area_fails_with_a_clean_error(work_root, tmp_path):
    """A small PNG that decodes to 108 MB of pixels, asked for as uncompressed TIFF."""
    src = tmp_path / "plain.png"
    pyvips.Image.black(6000, 6000, bands=3).write_to_file(str(src))
    pool = HelperPool(work_root / f"fulljob-{os.getpid()}", Limits(job_bytes=16 << 20))
    try:
        with pytest.raises(PermanentError) as info:
            SandboxedEngine(ImageEngine(), pool).convert(
                src, tmp_path / "o.tiff", "png", "tiff", ImageOptions(), lambda f: None
            )
        assert info.value.code in ("INVALID_INPUT_FILE", "CONVERSION_FAILED"), info.value
        # the helper is still there and converts the next file
        small = tmp_path / "small.png"
        pyvips.Image.black(64, 64).write_to_file(str(small))
        SandboxedEngine(ImageEngine(), pool).convert(
            small, tmp_path / "o.gif", "png", "gif", ImageOptions(), lambda f: None
        )
        assert pyvips.Image.new_from_file(str(tmp_path / "o.gif")).width == 64
    finally:
        pool.close()


def _leaky_pool(work_root) -> HelperPool:
    start = (
        f"import sys; sys.path.insert(0, {str(package_root())!r}); "
        "from appliance.engines import helper; "
        "from tests.integration.engines.leaky import LeakyEngine; helper.run([LeakyEngine()])"
    )
    return HelperPool(
        work_root / f"leaky-{os.getpid()}", Limits(), argv=[sys.executable, "-I", "-c", start]
    )


def _code_in_tmp() -> set[str]:
    """What the sandbox binds into its /tmp itself: the application's code, when it lives in a
    checkout under /tmp (a mount point the emptying rightly leaves alone)."""
    parts = package_root().parts
    return {parts[2]} if len(parts) > 2 and parts[1] == "tmp" else set()


def test_nothing_a_conversion_leaves_in_the_scratch_reaches_the_next_one(work_root, tmp_path):
    """One user's conversion leaves files in /tmp and /dev/shm; the next conversion in the
    same warm helper (another user's) finds only what the engine declared it keeps."""
    pool = _leaky_pool(work_root)
    engine = SandboxedEngine(LeakyEngine(), pool)
    src = tmp_path / "in.txt"
    src.write_text("input")
    pids = []
    try:
        engine.convert(src, tmp_path / "a.txt", "txt", "txt", Leak(secret="A's data"), print)
        pids.append(pool.helper().proc.pid)
        engine.convert(src, tmp_path / "b.txt", "txt", "txt", Leak(), print)
        pids.append(pool.helper().proc.pid)
    finally:
        pool.close()
    assert "left-behind.txt" in json.loads((tmp_path / "a.txt").read_text())  # it did leave
    found = set(json.loads((tmp_path / "b.txt").read_text())) - _code_in_tmp()
    assert found == {"kept-profile"}
    assert pids[0] == pids[1]  # one warm helper served both


def test_the_real_helper_empties_its_scratch_after_a_conversion(pool, tmp_path):
    """The helper as workers run it (every enabled engine): a file left in its /tmp is gone
    once the next conversion is answered."""
    src = tmp_path / "in.png"
    pyvips.Image.black(32, 32).write_to_file(str(src))
    engine = SandboxedEngine(ImageEngine(), pool)
    engine.convert(src, tmp_path / "o1.gif", "png", "gif", ImageOptions(), lambda f: None)
    scratch = pool.helper().workdir / ".." / "tmp"  # the sandbox's /tmp, from the worker
    (scratch / "left-behind.txt").write_text("a user's data")
    uid = pool.helper().uid.uid
    os.chown(scratch / "left-behind.txt", uid, uid)  # as if a tool in the helper made it
    engine.convert(src, tmp_path / "o2.gif", "png", "gif", ImageOptions(), lambda f: None)
    assert set(os.listdir(scratch)) - _code_in_tmp() == set()


def test_an_input_larger_than_the_job_area_is_an_engine_limit_not_a_full_disk(work_root, tmp_path):
    """The worker copies the input into the helper's /job (a tmpfs of engine_job_mb): an
    input that does not fit fails with ENGINE_LIMIT, for good (every worker's is the same),
    never as the host disk's ENOSPC, which the runner retries as NO_SPACE."""
    src = tmp_path / "big.png"
    src.write_bytes(os.urandom(20 << 20))  # 20 MiB into a 16 MiB area (the content is moot)
    pool = HelperPool(work_root / f"bigin-{os.getpid()}", Limits(job_bytes=16 << 20))
    try:
        with pytest.raises(PermanentError) as info:
            SandboxedEngine(ImageEngine(), pool).convert(
                src, tmp_path / "o.webp", "png", "webp", ImageOptions(), lambda f: None
            )
        assert info.value.code == "ENGINE_LIMIT" and "APPLIANCE_ENGINE_JOB_MB" in str(info.value)
        assert info.value.__suppress_context__  # the runner sees no ENOSPC behind it
    finally:
        pool.close()
