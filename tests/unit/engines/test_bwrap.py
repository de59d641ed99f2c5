"""The helper's bubblewrap command line and its scratch cleaning, without starting bwrap."""

from __future__ import annotations

import sys

from appliance.engines import bwrap
from appliance.engines.helper import scrub


def _box() -> bwrap.Box:
    return bwrap.Box(uid=bwrap.NOBODY, processes=64, tmp_bytes=1 << 20, job_bytes=2 << 20)


def test_code_installed_below_tmp_is_bound_after_the_tmp_mount(monkeypatch):
    """bwrap applies its arguments in order: a bind made before the /tmp tmpfs is hidden."""
    monkeypatch.setattr(sys, "prefix", "/tmp/venv")
    argv = bwrap.sandbox_argv(["python"], _box())
    mounts = [i for i, a in enumerate(argv) if a == "--tmpfs" and argv[i + 1] == "/tmp"]
    assert len(mounts) == 1 and argv.index("/tmp/venv") > mounts[0]


def test_tmp_and_job_are_tmpfs_of_the_sizes_given():
    argv = bwrap.sandbox_argv(["python"], _box())
    sizes = {argv[i + 3]: argv[i + 1] for i, a in enumerate(argv) if a == "--size"}
    assert sizes["/tmp"] == str(1 << 20) and sizes["/job"] == str(2 << 20)


def test_scrub_empties_the_scratch_but_what_is_kept_and_never_follows_a_link(tmp_path):
    scratch, shm, outside = tmp_path / "tmp", tmp_path / "shm", tmp_path / "outside"
    for d in (scratch, shm, outside):
        d.mkdir()
    (outside / "worker-file").write_text("not the helper's")
    (scratch / "left.txt").write_text("a user's data")
    (scratch / "pages").mkdir()
    (scratch / "pages" / "1.png").write_bytes(b"x")
    (scratch / "link").symlink_to(outside)
    (scratch / "lo-profile-1").mkdir()
    (shm / "segment").write_bytes(b"x")
    scrub(("lo-profile-*",), roots=(scratch, shm))
    assert [p.name for p in scratch.iterdir()] == ["lo-profile-1"]
    assert list(shm.iterdir()) == []
    assert (outside / "worker-file").exists()
