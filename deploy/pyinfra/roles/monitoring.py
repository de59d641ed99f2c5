"""monitoring: Prometheus scraping every target (job names from CONTRACTS.md; MinIO with its
metrics user's bearer token) with the alert rules from monitoring/prometheus/rules/ (slo.yml
rendered with the fleet's objectives, every runbook_url pointing at the fleet's runbook),
checked by promtool before each reload; Grafana from its APT repository with the provisioned
datasource and dashboards from monitoring/grafana/. Both listen on loopback only: operators
reach them through an SSH tunnel.

Where Grafana cannot be installed (the lab: its APT repository is unreachable there), group
data sets ``grafana: False`` with a ``grafana_skip_reason``; the deploy says so and still
checks the provisioning and dashboard files (fleet/checks.py)."""

from __future__ import annotations

import logging
import re

from pyinfra.operations import apt, files, server

from appliance.metrics import slo
from fleet import minio
from fleet.checks import grafana_files, rule_files
from fleet.model import Fleet, HostSpec
from roles.common import put, put_text, restart_if

log = logging.getLogger("appliance.deploy")
RULES_DIR = "/etc/prometheus/rules/appliance"
MINIO_TOKEN_FILE = "/etc/prometheus/minio.token"  # noqa: S105 - a path
GRAFANA_KEY_URL = "https://apt.grafana.com/gpg.key"
GRAFANA_REPO = "deb [signed-by=/etc/apt/keyrings/grafana.asc] https://apt.grafana.com stable main"
GRAFANA_DROPIN = "[Service]\nEnvironmentFile=/etc/grafana/appliance.env\n"


def prometheus_context(fleet: Fleet) -> dict[str, object]:
    return {
        "fleet_name": fleet.get("fleet_name"),
        "scrape_interval": "15s",
        "scrape_targets": fleet.scrape_targets(),
        "minio_token_file": MINIO_TOKEN_FILE,
    }


def rule_texts(fleet: Fleet, me: HostSpec | None = None) -> dict[str, str]:
    """Each rule file's name and text as this fleet installs it."""
    texts = {}
    scale = float(fleet.get("alert_for_scale", me))
    for path in rule_files():
        if path.name == "slo.yml":
            text = slo.render(fleet.get("slo_objectives", me))
        else:
            text = path.read_text()
        text = text.replace(f"{slo.RUNBOOK}#", f"{fleet.get('runbook_url', me)}#")
        texts[path.name] = scaled_holds(text, scale)
    return texts


_HOLD = re.compile(r"^(\s+for: )(\d+)([smh])$", re.M)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def scaled_holds(text: str, scale: float) -> str:
    """A rule file's every ``for: <n><unit>`` times ``scale``, in whole seconds (1 s at
    least); the text unchanged when the scale is 1."""
    if not scale > 0:
        raise ValueError(f"alert_for_scale must be above 0, not {scale}")
    if scale == 1:
        return text

    def scaled(m: re.Match[str]) -> str:
        seconds = int(m[2]) * _UNIT_SECONDS[m[3]]
        return f"{m[1]}{max(1, round(seconds * scale))}s"

    return _HOLD.sub(scaled, text)


def apply(fleet: Fleet, me: HostSpec) -> None:
    apt.packages(name="Prometheus", packages=["prometheus"], no_recommends=True)
    files.directory(name="Rules dir", path=RULES_DIR)
    rules = [put_text(text, f"{RULES_DIR}/{name}") for name, text in rule_texts(fleet, me).items()]
    config = put(
        "pyinfra/templates/prometheus.yml.j2",
        "/etc/prometheus/prometheus.yml",
        **prometheus_context(fleet),
    )
    args = put(
        "pyinfra/templates/prometheus.default.j2",
        "/etc/default/prometheus",
        retention=fleet.get("prometheus_retention", me),
    )
    changes = [config, args, *rules]
    if fleet.role("storage"):
        token = minio.metrics_token(fleet.secrets["minio_prometheus_password"])
        changes.append(put_text(token, MINIO_TOKEN_FILE, mode="640", group="prometheus"))
    server.shell(
        name="promtool check config (and rules)",
        commands=["promtool check config /etc/prometheus/prometheus.yml"],
        _if=lambda: any(c.did_change() for c in changes),
    )
    restart_if("prometheus", *changes)
    if fleet.get("grafana", me):
        grafana(fleet, me)
    else:
        log.warning(
            "Grafana skipped on %s: %s. Its provisioning and %d dashboards were checked.",
            me.name,
            fleet.get("grafana_skip_reason", me) or "grafana: False in group data",
            len(grafana_files()["dashboard_json"]),
        )


def grafana(fleet: Fleet, me: HostSpec) -> None:
    files.download(
        name="Grafana APT key", src=GRAFANA_KEY_URL, dest="/etc/apt/keyrings/grafana.asc"
    )
    repo = put_text(GRAFANA_REPO + "\n", "/etc/apt/sources.list.d/grafana.list")
    apt.update(name="APT lists with Grafana's repository", _if=repo.did_change)
    apt.packages(name="Grafana", packages=["grafana"])
    found = grafana_files()
    changes = [
        put_text(
            path.read_text(),
            f"/etc/grafana/provisioning/{kind}/{path.name}",
            group="grafana",
            mode="640",
        )
        for kind in ("datasources", "dashboards")
        for path in found[kind]
    ]
    changes += [
        put_text(
            path.read_text(),
            f"/var/lib/grafana/dashboards/appliance/{path.name}",
            user="grafana",
            group="grafana",
        )
        for path in found["dashboard_json"]
    ]
    changes.append(
        put(
            "pyinfra/templates/grafana.default.j2",
            "/etc/grafana/appliance.env",
            mode="640",
            group="grafana",
            admin_password=fleet.secrets["grafana_admin_password"],
        )
    )
    changes.append(
        put_text(GRAFANA_DROPIN, "/etc/systemd/system/grafana-server.service.d/appliance.conf")
    )
    restart_if("grafana-server", *changes)
