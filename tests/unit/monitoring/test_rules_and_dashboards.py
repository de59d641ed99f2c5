"""The alert rules pass promtool's checks and unit tests; the dashboards are valid JSON with
unique, stable uids, match their generator, and use only metrics the appliance defines."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import yaml

import appliance.metrics  # noqa: F401  (defines the catalogue in the default registry)
from appliance.metrics.scrape import Snapshot

ROOT = Path(__file__).parents[3]
MONITORING = ROOT / "monitoring"
RULES = sorted((MONITORING / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((MONITORING / "prometheus" / "tests").glob("*.yml"))
BOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
STABLE_UIDS = {
    "appliance-service-level",
    "appliance-overview",
    "appliance-engines",
    "appliance-infrastructure",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_rule_files():
    assert RULES
    res = promtool("check", "rules", *map(str, RULES))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_rule_unit_tests_pass():
    assert RULE_TESTS
    res = promtool("test", "rules", *map(str, RULE_TESTS))
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_alert_has_a_promtool_test():
    alerts = {
        r["alert"]
        for path in RULES
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for t in yaml.safe_load(path.read_text())["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - tested == set()


def test_dashboards_are_valid_json_with_the_stable_unique_uids():
    boards = [json.loads(p.read_text()) for p in BOARDS]
    uids = [b["uid"] for b in boards]
    assert sorted(uids) == sorted(STABLE_UIDS)
    for path, board in zip(BOARDS, boards, strict=True):
        assert path.stem == board["uid"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)) and all(p["targets"] for p in board["panels"])


def test_dashboards_use_the_provisioned_datasource():
    provisioned = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/appliance.yml").read_text()
    )["datasources"][0]
    assert provisioned["uid"] == "prometheus" and provisioned["url"] == "http://127.0.0.1:9090"
    providers = yaml.safe_load(
        (MONITORING / "grafana/provisioning/dashboards/appliance.yml").read_text()
    )["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/appliance"
    for path in BOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == provisioned["uid"], path.name


def test_committed_dashboards_match_their_generator():
    spec = importlib.util.spec_from_file_location("build", MONITORING / "grafana" / "build.py")
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    rendered = build.render()
    assert sorted(rendered) == [p.name for p in BOARDS]
    for path in BOARDS:
        assert path.read_text() == rendered[path.name], f"run monitoring/grafana/build.py ({path})"


def defined_names() -> set[str]:
    from prometheus_client import REGISTRY

    names = {m.name for m in REGISTRY.collect()}
    snapshot = Snapshot(
        queues={"light": (0, 0, 0.0, 0)}, storage=(0, 0), top_users={}, reachable={"redis": True}
    )
    return names | {m.name for m in snapshot.collect()}


def test_dashboards_and_rules_name_only_metrics_the_appliance_defines():
    used = set()
    for path in [*BOARDS, *RULES]:
        used |= set(re.findall(r"\bappliance_[a-z_]+", path.read_text()))
    used = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in used}
    assert used - defined_names() == set()
