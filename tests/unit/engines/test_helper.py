"""The helper's side of the pipe protocol (``helper.serve``), without a sandbox: a request
naming a path outside /job is refused before any engine sees it, errors keep their codes,
and the scratch is emptied but for what an engine keeps."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from appliance.engines import Descriptor, helper
from appliance.engines.helper import scrub, serve
from appliance.errors import PermanentError, RetryableError


class Recorder:
    """An engine that records what it was asked, and fails as told."""

    descriptor = Descriptor(
        id="rec",
        conversions=frozenset({("txt", "txt")}),
        options=msgspec.Struct,
        queue="light",
        version=lambda: "1",
        family="test",
    )

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail

    def convert(self, src, dst, src_format, dst_format, options, progress):
        self.calls.append((src, dst))
        self.asked = (src_format, dst_format, options)
        progress(0.5)
        if self.fail is not None:
            raise self.fail
        return [dst.with_name("page-1.txt"), dst.with_name("page-2.txt")]

    def combine(self, srcs, dst, dst_format, options, progress):
        self.calls.append((tuple(srcs), dst))
        self.asked = (None, dst_format, options)
        progress(1.0)


def _answers(engine: Recorder, **request: Any) -> list[dict[str, Any]]:
    line = {"engine": "rec", "src_format": "txt", "dst_format": "txt", "options": {}}
    out = io.StringIO()
    serve({"rec": engine}, io.StringIO(json.dumps(line | request) + "\n"), out)
    return [json.loads(answer) for answer in out.getvalue().splitlines()]


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "/job/../etc/passwd", "/jobs/x.txt", "/jo", "relative.txt", "/"],
)
def test_a_path_outside_the_job_directory_is_refused_before_the_engine_runs(path):
    engine = Recorder()
    for request in (
        {"src": path, "dst": "/job/a/out.txt"},
        {"src": "/job/a/in.txt", "dst": path},
        {"srcs": ["/job/a/in.txt", path], "dst": "/job/a/out.txt"},
    ):
        [answer] = _answers(engine, **request)
        assert answer["error"] == "INVALID_INPUT_FILE", (request, answer)
        assert "outside the work directory" in answer["message"]
    assert engine.calls == []


def test_paths_inside_reach_the_engine_and_its_extra_files_come_back_relative():
    engine = Recorder()
    *progress, answer = _answers(engine, src="/job/a/in.txt", dst="/job/a/out.txt")
    assert progress == [{"progress": 0.5}]
    assert engine.calls == [(Path("/job/a/in.txt"), Path("/job/a/out.txt"))]
    assert answer["ok"] is True and answer["files"] == ["page-1.txt", "page-2.txt"]
    assert 0 <= answer["cpu_seconds"] < 5  # this conversion's, not the process's
    assert engine.asked[:2] == ("txt", "txt") and isinstance(engine.asked[2], msgspec.Struct)
    engine.asked = None
    progress, answer = _answers(engine, srcs=["/job/a/0.txt", "/job/a/1.txt"], dst="/job/a/m.txt")
    assert progress == {"progress": 1.0}
    assert answer == {"ok": True, "files": [], "cpu_seconds": answer["cpu_seconds"]}
    assert engine.asked[1] == "txt" and isinstance(engine.asked[2], msgspec.Struct)
    assert engine.calls[-1] == ((Path("/job/a/0.txt"), Path("/job/a/1.txt")), Path("/job/a/m.txt"))


@pytest.mark.parametrize(
    ("fail", "expected"),
    [
        (PermanentError("bad input", code="INVALID_INPUT_FILE"), {"error": "INVALID_INPUT_FILE"}),
        (RetryableError("busy", code="ENGINE_BUSY"), {"error": "ENGINE_BUSY", "retry": True}),
        (MemoryError(), {"error": "ENGINE_LIMIT"}),
        (KeyError("internal detail"), {"error": "CONVERSION_FAILED"}),
    ],
)
def test_an_engines_failure_is_answered_with_its_code(fail, expected):
    [_, answer] = _answers(Recorder(fail), src="/job/a/in.txt", dst="/job/a/out.txt")
    assert {k: answer[k] for k in expected} == expected
    assert (
        answer["message"]
        == {
            "INVALID_INPUT_FILE": "bad input",
            "ENGINE_BUSY": "busy",
            "ENGINE_LIMIT": "The conversion needs more memory than the engine may use",
            "CONVERSION_FAILED": "The engine failed: KeyError",
        }[answer["error"]]
    )
    assert "internal detail" not in answer["message"]
    assert ("retry" in answer) == ("retry" in expected)


def test_options_the_engine_does_not_take_are_invalid_options():
    class Strict(msgspec.Struct, forbid_unknown_fields=True):
        pass

    engine = Recorder()
    engine.descriptor = Descriptor(**{**engine.descriptor.__dict__, "options": Strict})
    [answer] = _answers(engine, src="/job/a/in.txt", dst="/job/a/out.txt", options={"x": 1})
    assert answer["error"] == "INVALID_OPTIONS" and engine.calls == []
    assert answer["message"].startswith("Invalid option: ") and "x" in answer["message"]


def test_a_zip_bomb_is_refused_before_the_engine_inflates_it(tmp_path, monkeypatch):
    """The container check runs in the helper on every input, with the helper's limit."""
    monkeypatch.setattr(helper, "ROOT", tmp_path)
    bomb = tmp_path / "in.docx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", b"\0" * 200_000)  # inflates to 200 kB
    engine = Recorder()
    request = {"src": str(bomb), "dst": str(tmp_path / "out.txt"), "src_format": "docx"}
    line = {"engine": "rec", "dst_format": "txt", "options": {}} | request
    for limit, refused in ((100_000, True), (1_000_000, False)):
        out = io.StringIO()
        serve({"rec": engine}, io.StringIO(json.dumps(line) + "\n"), out, max_inflated=limit)
        answer = json.loads(out.getvalue().splitlines()[-1])
        assert (answer.get("error") == "ENGINE_LIMIT") == refused, answer
    assert len(engine.calls) == 1  # only under the larger limit


def test_scrub_removes_all_but_what_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a scrub gone astray empties this, not the checkout
    (tmp_path / "bystander").write_text("not in a scratch root")
    tmp, shm = tmp_path / "tmp", tmp_path / "shm"
    for root in (tmp, shm):
        root.mkdir()
        (root / "left.txt").write_text("a user's data")
        (root / "work").mkdir()
        (root / "work" / "page.txt").write_text("more")
        (root / "link").symlink_to(root / "left.txt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the scratch's")
    (tmp / "dir-link").symlink_to(elsewhere, target_is_directory=True)
    (tmp / "lo-profile-1").mkdir()
    (tmp / "lo-profile-1" / "registry.xcu").write_text("warm")
    scrub(["lo-profile-*"], [tmp, shm])
    assert sorted(p.name for p in tmp.iterdir()) == ["lo-profile-1"]
    assert (tmp / "lo-profile-1" / "registry.xcu").read_text() == "warm"
    assert list(shm.iterdir()) == []
    assert (tmp_path / "bystander").exists()
    assert (elsewhere / "keep.txt").exists()  # a link is removed, never followed


class Burner(Recorder):
    """Spends CPU time itself and in a child process it waits for."""

    def convert(self, src, dst, src_format, dst_format, options, progress):
        until = time.process_time() + 0.25
        while time.process_time() < until:
            pass
        burn = "import time\nt = time.process_time() + 0.25\nwhile time.process_time() < t: pass"
        subprocess.run([sys.executable, "-c", burn], check=True)


def _in_own_session(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()`` in a forked child that leads a session of its own, as the helper does in its
    sandbox: pytest's session also holds other tests' engines (xdist), whose CPU time a
    helper in it would count."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read)
            os.setsid()
            os.write(write, json.dumps(run()).encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, answer
    return json.loads(answer)  # type: ignore[no-any-return]


def test_a_conversions_cpu_time_counts_its_own_and_its_childrens():
    def burn() -> dict[str, Any]:
        [answer] = _answers(Burner(), src="/job/a/in.txt", dst="/job/a/out.txt")
        return answer

    answer = _in_own_session(burn)
    assert 0.45 <= answer["cpu_seconds"] < 3, answer  # 0.25 s here, 0.25 s in the child


class WarmBurner(Recorder):
    """Spends CPU time in a process of its session that lives on (a warm LibreOffice)."""

    def __init__(self, ready: Path) -> None:
        super().__init__()
        self.ready = ready
        self.warm: subprocess.Popen[bytes] | None = None

    def convert(self, src, dst, src_format, dst_format, options, progress):
        burn = (
            "import sys, time\nt = time.process_time() + 0.3\n"
            "while time.process_time() < t: pass\n"
            "open(sys.argv[1], 'w').close()\ntime.sleep(60)"
        )
        self.warm = subprocess.Popen([sys.executable, "-c", burn, str(self.ready)])
        while not self.ready.exists():
            time.sleep(0.01)


def test_cpu_time_of_a_process_that_stays_in_the_session_is_counted(tmp_path):
    def burn() -> dict[str, Any]:
        engine = WarmBurner(tmp_path / "burnt")
        try:
            [answer] = _answers(engine, src="/job/a/in.txt", dst="/job/a/out.txt")
        finally:
            assert engine.warm is not None
            engine.warm.kill()
            engine.warm.wait()
        return answer

    answer = _in_own_session(burn)
    # its session's processes only: what other processes of the host burn is not counted.
    # 0.3 s burnt, read from /proc in clock ticks (sampled, 10 ms each): a little may be lost
    assert 0.25 <= answer["cpu_seconds"] < 1.5, answer
