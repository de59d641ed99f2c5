"""A sandboxed conversion reports the CPU time it used (usage metering): the helper's own, and
that of the processes it keeps (a warm LibreOffice), summed per task by ``cputime``."""

from __future__ import annotations

import os
import time

import pyvips

from appliance.engines import cputime
from appliance.engines.images import ImageEngine, ImageOptions
from appliance.engines.markup import MarkupOptions, PandocEngine
from appliance.engines.office import OfficeEngine, OfficeOptions
from appliance.engines.sandbox import SandboxedEngine


def test_a_conversion_reports_the_cpu_seconds_its_helper_used(pool, tmp_path):
    src = tmp_path / "in.png"
    pyvips.Image.xyz(3000, 2000).extract_band(0).cast("uchar").write_to_file(str(src))
    engine = SandboxedEngine(ImageEngine(), pool)
    engine.convert(src, tmp_path / "warm.webp", "png", "webp", ImageOptions(), lambda _: None)
    runs = []
    for i in range(2):
        start = time.monotonic()
        with cputime.counting() as spent:
            dst = tmp_path / f"out{i}.webp"
            engine.convert(src, dst, "png", "webp", ImageOptions(), lambda _: None)
        runs.append((spent.seconds, time.monotonic() - start))
    for seconds, wall in runs:
        # encoding 6 MP to WebP takes real CPU, and no more than the cores had meanwhile
        assert 0.02 < seconds <= wall * (os.cpu_count() or 1) + 0.02
    with cputime.counting() as outside:  # runs outside a task's block count nowhere
        pass
    assert outside.seconds == 0


def test_two_runs_of_one_task_add_up(pool, tmp_path):
    src = tmp_path / "in.png"
    pyvips.Image.xyz(2000, 2000).extract_band(0).cast("uchar").write_to_file(str(src))
    engine = SandboxedEngine(ImageEngine(), pool)
    with cputime.counting() as first:
        engine.convert(src, tmp_path / "a.webp", "png", "webp", ImageOptions(), lambda _: None)
    with cputime.counting() as both:
        engine.convert(src, tmp_path / "b.webp", "png", "webp", ImageOptions(), lambda _: None)
        engine.convert(src, tmp_path / "c.webp", "png", "webp", ImageOptions(), lambda _: None)
    assert both.seconds > first.seconds * 1.3


def test_the_cpu_of_the_warm_libreoffice_a_helper_keeps_is_counted(pool, tmp_path):
    """The helper only drives LibreOffice over UNO (a few ms of its own CPU); the work is
    done in soffice, a process of the helper's session that outlives the conversion."""
    md = tmp_path / "in.md"
    md.write_text("# Report\n\n" + "A sentence of the report, with some words. " * 400)
    docx = tmp_path / "in.docx"
    SandboxedEngine(PandocEngine(), pool).convert(
        md, docx, "md", "docx", MarkupOptions(), lambda _: None
    )
    office = SandboxedEngine(OfficeEngine(), pool)
    office.convert(docx, tmp_path / "warm.pdf", "docx", "pdf", OfficeOptions(), lambda _: None)
    with cputime.counting() as spent:
        office.convert(docx, tmp_path / "out.pdf", "docx", "pdf", OfficeOptions(), lambda _: None)
    assert spent.seconds > 0.05
