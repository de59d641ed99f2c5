"""Conversion engines: plugins with a descriptor, listed in ``enabled.py``.

An engine declares the format pairs it converts, an options schema (a msgspec Struct using
CloudConvert's option names), its queue class, its version, and the family and Debian packages
a worker host installs for it (the pyinfra deploy reads those from here). ``registry.Registry``
builds the format graph from the enabled engines and routes conversions, over several hops if
needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

QueueClass = Literal["light", "office", "media"]
QUEUE_CLASSES: tuple[QueueClass, ...] = ("light", "office", "media")

Progress = Callable[[float], None]  # fraction done, 0.0-1.0

# Fonts of the engines that lay out pages (LibreOffice, calibre), installed with them: the
# metric-compatible stand-ins for the fonts documents name most (Liberation for Arial, Times
# New Roman and Courier New; Carlito for Calibri; Caladea for Cambria), so text keeps its line
# and page breaks, and Noto, CJK included, so no script falls back to empty boxes. fontconfig
# maps the names (its 30-metric-aliases rules); the sandbox sees /usr/share/fonts, /etc/fonts
# and the font cache read-only (bwrap.py).
LAYOUT_FONTS = (
    "fonts-dejavu-core",
    "fonts-liberation2",
    "fonts-crosextra-carlito",
    "fonts-crosextra-caladea",
    "fonts-noto-core",
    "fonts-noto-cjk",
)


@dataclass(frozen=True)
class Descriptor:
    id: str
    conversions: frozenset[tuple[str, str]]
    options: type[msgspec.Struct]
    queue: QueueClass
    version: Callable[[], str]
    # The engine family an operator lists in a worker host's ``engine_families`` (images, pdf,
    # office, ...): the deploy installs the family's packages there and runs the heaviest of
    # its engines' queues. The names are the inventories' vocabulary: keep them stable.
    family: str
    cost: float = 1.0  # relative price of one run, for choosing among routes
    # Per-pair prices where one differs from ``cost`` (e.g. a lossy target costs a little more,
    # so routes through the engine prefer a faithful intermediate format).
    pair_costs: Mapping[tuple[str, str], float] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # programs that must be on PATH (checked by `doctor`)
    # Debian packages a worker host needs for this engine, installed by the deploy with its
    # family (the programs in ``requires`` and what they load); engines on wheels need none.
    packages: tuple[str, ...] = ()
    # Pairs a route may take only as its last hop: their output is a poor source for further
    # hops (a whole video turned into a gif, only for another engine to read its first frame).
    last_only: frozenset[tuple[str, str]] = frozenset()
    # The engine runs its work in a warm process of its own that it restarts on its own
    # schedule (LibreOffice's listener): its conversions do not count toward the sandboxed
    # helper's replacement, which would restart that process too, at the helper's pace.
    recycles_itself: bool = False
    # Names (glob patterns) in the sandbox's /tmp that the engine keeps from one conversion to
    # the next (a warm process's profile). Everything else there and in /dev/shm is removed
    # after every conversion: the next one may be another user's.
    keeps: tuple[str, ...] = ()


class Engine(Protocol):
    descriptor: Descriptor

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: Any,
        progress: Progress,
    ) -> list[Path] | None:
        """Convert ``src`` (already checked to be ``src_format``) into ``dst``.

        An engine that makes several files (one per PDF page, say) writes them next to ``dst``
        and returns their paths in order; otherwise it writes ``dst`` and returns None.
        Raises ``PermanentError`` when the input cannot be converted.
        """


class Combiner(Engine, Protocol):
    """An engine that also makes one output from several inputs (merge)."""

    def combine(
        self, srcs: list[Path], dst: Path, dst_format: str, options: Any, progress: Progress
    ) -> list[Path] | None:
        """Combine ``srcs`` in order into ``dst``; the return value is as for ``convert``."""
