"""Structured logs: one JSON object per line on stdout (journald keeps it), carrying the
request id and the job and task ids of whatever the line is about.

The ids live in context variables: the API's middleware sets ``request_id`` for each request
(from ``X-Request-ID`` or a new one), the dispatcher copies it into the Dramatiq message, and
the worker sets it again, with ``job_id`` and ``task_id``, while it runs the task. Context
variables follow asyncio tasks and ``asyncio.to_thread``, so no call needs to pass them on.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("job_id", default=None)
task_id: ContextVar[str | None] = ContextVar("task_id", default=None)

_IDS = (("request_id", request_id), ("job_id", job_id), ("task_id", task_id))
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", request_id?, job_id?, task_id?, exc?}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, var in _IDS:
            value = var.get()
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, fmt: str) -> None:
    """Log at ``level`` in ``fmt`` (``json`` or ``text``) on stdout.

    Handlers someone else installed (Dramatiq's worker processes log through a pipe to their
    parent) are kept and only get our formatter."""
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stdout))
    for handler in root.handlers:
        handler.setFormatter(formatter)
