"""The SLO rules: the committed file is the generator's output at the default objectives,
objectives change the thresholds, and every alert's runbook_url names a section of
monitoring/RUNBOOK.md."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from appliance.metrics import slo

ROOT = Path(__file__).parents[3]
MONITORING = ROOT / "monitoring"
RULES = sorted((MONITORING / "prometheus" / "rules").glob("*.yml"))
RUNBOOK = MONITORING / "RUNBOOK.md"


def alerts(doc: dict) -> dict[str, dict]:
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_committed_slo_rules_match_their_generator():
    committed = (MONITORING / "prometheus" / "rules" / "slo.yml").read_text()
    assert committed == slo.render(), "run: python -m appliance.metrics.slo > .../slo.yml"


def test_objectives_set_the_burn_thresholds(tmp_path):
    doc = slo.rules({"availability": 0.99, "latency": 0.9})
    page = alerts(doc)["ApplianceAvailabilityBudgetBurn"]["expr"]
    # 14.4 x a 1% budget, 6 x it
    assert '1h{slo="availability"} > 0.144' in page and '30m{slo="availability"} > 0.06' in page
    ticket = alerts(doc)["ApplianceLatencyBudgetSlowBurn"]["expr"]
    assert '3d{slo="latency"} > 0.1 and' in ticket
    assert "vector(0.999)" in str(doc)  # jobs kept its default
    path = tmp_path / "slo.yml"
    path.write_text(slo.render({"availability": 0.99}))
    res = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("bad", [{"availabilty": 0.99}, {"latency": 1.0}, {"jobs": 0}])
def test_unknown_or_impossible_objectives_are_refused(bad):
    with pytest.raises(ValueError, match=r"availabilty|between 0 and 1"):
        slo.rules(bad)


def runbook_anchors() -> set[str]:
    """GitHub's anchors of the runbook's headings (lower case, spaces to dashes)."""
    headings = re.findall(r"^#+ (.+)$", RUNBOOK.read_text(), flags=re.M)
    return {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_alert_links_its_own_runbook_section():
    anchors = runbook_anchors()
    for path in RULES:
        for name, rule in alerts(yaml.safe_load(path.read_text())).items():
            url = rule["annotations"].get("runbook_url", "")
            assert url == f"{slo.RUNBOOK}#{name.lower()}", (path.name, name)
            assert name.lower() in anchors, f"{name}: no section in {RUNBOOK}"


def test_the_runbooks_panel_references_name_real_panels():
    """*Italic* names in the runbook are panel titles of the committed dashboards."""
    titles = {
        panel["title"]
        for path in (MONITORING / "grafana" / "dashboards").glob("*.json")
        for panel in json.loads(path.read_text())["panels"]
    }
    named = re.findall(r"(?<![*\w])\*([^*]+?)\*(?![*\w])", RUNBOOK.read_text())
    assert len(named) > 20
    assert {" ".join(n.split()) for n in named} - titles == set()
