"""The enabled engines: this list is the appliance's feature set. One line per engine."""

from __future__ import annotations

from appliance.engines import Engine
from appliance.engines.images import ImageEngine


def enabled_engines() -> list[Engine]:
    return [
        ImageEngine(),
    ]
