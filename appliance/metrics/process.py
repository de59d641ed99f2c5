"""Multiprocess set-up and the text every ``/metrics`` answers with.

``prepare`` runs in the command that starts a process group (``appliance api``, ``appliance
worker``, ``appliance up``), before the group's processes exist: it empties the group's
directory and names it in ``PROMETHEUS_MULTIPROC_DIR``, which prometheus-client reads when it
is first imported in each child. Files of processes that ended stay (their counts still
count) until the group starts again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from appliance.settings import Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def group_dir(settings: Settings, group: str) -> Path:
    return settings.effective_metrics_dir / group


def prepare(settings: Settings, group: str, env: dict[str, str] | os._Environ[str]) -> Path:
    """Empty ``group``'s metric directory and point ``env`` (the children's environment) at
    it."""
    path = group_dir(settings, group)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    env[ENV] = str(path)
    # The _created series only exist in single-process mode; keep both modes alike.
    env["PROMETHEUS_DISABLE_CREATED_SERIES"] = "true"
    return path


def exposition(extra: object | None = None) -> bytes:
    """The group's samples (all its processes when in multiprocess mode), plus an optional
    collector of values computed now."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    if os.environ.get(ENV):
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    text = generate_latest(registry)
    if extra is not None:
        once = CollectorRegistry(auto_describe=False)
        once.register(extra)  # type: ignore[arg-type]
        text += generate_latest(once)
    return text
