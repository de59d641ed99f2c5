"""A test engine that leaves what it is given in the sandbox's scratch (/tmp, /dev/shm), as a
careless tool would, and reports what it finds there: run in a real helper
(``appliance.engines.helper.run``) by test_sandbox.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgspec

from appliance.engines import Descriptor


class Leak(msgspec.Struct):
    secret: str = ""  # left in the scratch when given


class LeakyEngine:
    descriptor = Descriptor(
        id="leaky",
        conversions=frozenset({("txt", "txt")}),
        options=Leak,
        queue="light",
        version=lambda: "1",
        family="test",
        keeps=("kept-*",),
    )

    def convert(
        self, src: Path, dst: Path, src_format: str, dst_format: str, options: Any, progress: Any
    ) -> None:
        if options.secret:
            Path("/tmp/left-behind.txt").write_text(options.secret)
            Path("/tmp/work").mkdir()
            Path("/tmp/work/page-1.txt").write_text(options.secret)
            Path("/dev/shm/shared").write_text(options.secret)
            Path("/tmp/kept-profile").write_text("warm state")
        seen = sorted(os.listdir("/tmp")) + [f"shm/{n}" for n in sorted(os.listdir("/dev/shm"))]
        dst.write_text(json.dumps(seen))
