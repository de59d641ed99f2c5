"""Checks on the operator's machine before any host is touched: the monitoring files the
deploy ships (rule files, Grafana provisioning and dashboards) parse and fit CONTRACTS.md."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

MONITORING = Path(__file__).resolve().parents[3] / "monitoring"


class CheckError(ValueError):
    """A file the deploy would ship is broken."""


def rule_files() -> list[Path]:
    rules = sorted((MONITORING / "prometheus" / "rules").glob("*.yml"))
    for path in rules:
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
            raise CheckError(f"{path}: a Prometheus rule file needs a `groups` list")
    return rules


def grafana_files() -> dict[str, list[Path]]:
    """Provisioning (datasources, dashboard providers) and dashboard JSON, each checked."""
    prov = MONITORING / "grafana" / "provisioning"
    found = {
        "datasources": sorted((prov / "datasources").glob("*.yml")),
        "dashboards": sorted((prov / "dashboards").glob("*.yml")),
        "dashboard_json": sorted((MONITORING / "grafana" / "dashboards").glob("*.json")),
    }
    for path in found["datasources"] + found["dashboards"]:
        if not isinstance(yaml.safe_load(path.read_text()), dict):
            raise CheckError(f"{path}: not a YAML mapping")
    uids: set[str] = set()
    for path in found["dashboard_json"]:
        try:
            uid = json.loads(path.read_text()).get("uid")
        except json.JSONDecodeError as exc:
            raise CheckError(f"{path}: {exc}") from None
        if not uid or uid in uids:
            raise CheckError(f"{path}: a dashboard needs its own stable uid")
        uids.add(uid)
    return found
