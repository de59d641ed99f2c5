"""A compromised engine controls everything under its job directory: whatever it leaves there
(symbolic links, hard links, FIFOs, device nodes, names outside the directory), the worker
takes back only regular files it reaches without following a link, and never writes through
a name the helper could have planted."""

from __future__ import annotations

import os
import stat
import sys

import msgspec
import pytest

from appliance.engines import Descriptor
from appliance.engines.sandbox import HelperPool, Limits, SandboxedEngine
from appliance.errors import PermanentError

# A helper whose engine plants what the request's options name, then answers as a real one
# would: nothing (the single output is output.<fmt>) or the names of several outputs.
PLANTER = r"""
import json, os, sys
for line in sys.stdin:
    req = json.loads(line)
    kind, secret = req["options"]["plant"], req["options"]["secret"]
    out = req["dst"]
    job = os.path.dirname(out)
    names = []
    if kind == "symlink":
        os.symlink(secret, out)
    elif kind == "symlinked_dir":
        os.symlink(os.path.dirname(secret), job + "/pages")
        names = ["pages/" + os.path.basename(secret)]
    elif kind == "fifo":
        os.mkfifo(out)
    elif kind == "hardlink":
        open(job + "/a.txt", "w").write("mine")
        os.link(job + "/a.txt", job + "/b.txt")
        names = ["a.txt"]
    elif kind == "outside":
        names = ["../" + os.path.basename(job) + "/../escape.txt"]
    elif kind == "absolute":
        names = [secret]
    elif kind == "directory":
        os.mkdir(out)
    print(json.dumps({"ok": True, "files": names}), flush=True)
"""


class Plant(msgspec.Struct):
    plant: str  # what the planter leaves (see PLANTER)
    secret: str  # a worker-side file it aims at


class Planted:
    descriptor = Descriptor(
        id="planter",
        conversions=frozenset({("txt", "txt")}),
        options=Plant,
        queue="light",
        version=lambda: "1",
        family="test",
    )


@pytest.fixture
def planter(work_root):
    pool = HelperPool(
        work_root / f"planter-{os.getpid()}",
        Limits(timeout_seconds=30),
        argv=[sys.executable, "-I", "-c", PLANTER],
    )
    yield SandboxedEngine(Planted(), pool)  # type: ignore[arg-type]
    pool.close()


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret" / "signing.key"
    path.parent.mkdir()
    path.write_text("the URL-signing key")
    return path


@pytest.mark.parametrize(
    "kind", ["symlink", "symlinked_dir", "fifo", "hardlink", "outside", "absolute", "directory"]
)
def test_nothing_but_a_plain_file_of_the_job_comes_back(
    planter, secret, tmp_path, kind, monkeypatch
):
    src = tmp_path / "in.txt"
    src.write_text("input")
    dst = tmp_path / "out" / "output.txt"
    dst.parent.mkdir()
    with pytest.raises(PermanentError) as info:
        planter.convert(
            src, dst, "txt", "txt", Plant(plant=kind, secret=str(secret)), lambda f: None
        )
    assert info.value.code == "CONVERSION_FAILED"
    assert list(dst.parent.iterdir()) == []  # nothing taken, not even a link
    assert secret.read_text() == "the URL-signing key"


def test_an_input_name_planted_before_the_input_is_never_written_through(
    planter, secret, tmp_path, monkeypatch
):
    """A helper still running from an earlier request watches its work directory and plants
    input.<fmt> -> a worker-side file in the next job directory before the worker puts the
    input there: the worker must neither copy into it nor change its mode."""
    helper = planter.pool.helper()
    made = helper.job_dir

    def job_dir_with_a_plant():
        job = made()
        os.symlink(secret, job / "input.txt")
        return job

    monkeypatch.setattr(helper, "job_dir", job_dir_with_a_plant)
    os.chmod(secret, 0o600)
    src = tmp_path / "evil.txt"
    src.write_text("overwritten by the worker")
    with pytest.raises(PermanentError):
        planter.convert(
            src, tmp_path / "o.txt", "txt", "txt", Plant(plant="symlink", secret="/x"), print
        )
    assert secret.read_text() == "the URL-signing key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_a_job_directory_is_not_the_helpers_to_write_until_its_inputs_are_in(planter, as_root):
    # ownership is only handed over when the worker runs as root
    job = planter.pool.helper().job_dir()
    info = job.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode) & 0o022) == (0, 0)


@pytest.mark.parametrize("kind", ["device", "fifo", "symlink", "hardlink", "regular"])
def test_take_output_accepts_only_a_regular_file_with_one_link(tmp_path, kind, as_root):
    from appliance.engines.sandbox import take_output

    job = tmp_path / "job"
    job.mkdir()
    produced = job / "out.bin"
    if kind == "device":  # making a device node needs root
        os.mknod(produced, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
    elif kind == "fifo":
        os.mkfifo(produced)
    elif kind == "symlink":
        os.symlink("/etc/hostname", produced)
    else:
        produced.write_bytes(b"bytes")
        if kind == "hardlink":
            os.link(produced, job / "twin.bin")
    dst = tmp_path / "dst.bin"
    if kind == "regular":
        take_output(job, "out.bin", dst)
        assert dst.read_bytes() == b"bytes" and not dst.is_symlink()
        assert dst.stat().st_ino != produced.stat().st_ino  # the worker's own copy
        return
    with pytest.raises(PermanentError):
        take_output(job, "out.bin", dst)
    assert not dst.exists() and not dst.is_symlink()


def test_take_output_keeps_a_multi_page_name_under_its_directory(tmp_path):
    from appliance.engines.sandbox import take_output

    job = tmp_path / "job"
    (job / "pages").mkdir(parents=True)
    (job / "pages" / "p1.png").write_bytes(b"page")
    take_output(job, "pages/p1.png", tmp_path / "p1.png")
    assert (tmp_path / "p1.png").read_bytes() == b"page"
    for bad in ("../job/pages/p1.png", "/etc/hostname", "pages/../../x", "", "."):
        with pytest.raises(PermanentError):
            take_output(job, bad, tmp_path / "x.png")
