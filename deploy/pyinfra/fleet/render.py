"""Template rendering shared by the roles and the unit tests: one jinja2 environment over
``deploy/`` (``systemd/``, ``nginx/``, ``pyinfra/templates/``), strict about missing values."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import jinja2

DEPLOY = Path(__file__).resolve().parents[2]


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(DEPLOY)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # config files, not HTML  # noqa: S701
    )


def render(template: str, **context: Any) -> str:
    """``template`` is a path under deploy/, e.g. ``systemd/appliance-api.service.j2``."""
    return _env().get_template(template).render(**context)


def as_file(text: str) -> io.StringIO:
    """Content for pyinfra's files.put (compared by hash, so an unchanged file is a no-op)."""
    return io.StringIO(text)
