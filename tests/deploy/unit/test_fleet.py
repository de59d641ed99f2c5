"""The fleet model: roles to addresses, the app's URLs, Prometheus targets, firewall ports."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from fleet.defaults import DEFAULTS, active_queues, engine_packages
from fleet.model import Fleet, FleetError, HostSpec

from tests.deploy.unit.conftest import make_fleet

CONTRACT_JOBS = {
    "appliance-api",
    "appliance-worker",
    "node",
    "postgres",
    "redis",
    "nginx",
    "minio",
    "prometheus",
}


def test_the_lab_layout_is_a_valid_fleet(fleet):
    fleet.validate()
    assert fleet.db_primary.name == "h4"
    assert [h.name for h in fleet.db_replicas] == ["h6"]


def test_the_failover_monitor_runs_off_the_db_hosts_on_the_monitoring_host(fleet):
    assert fleet.db_monitor.name == "h1"
    assert fleet.monitor_uri == (
        "postgres://autoctl_node@10.200.1.1:5431/pg_auto_failover?sslmode=require"
    )


def test_the_failover_monitor_goes_where_the_operator_says_or_off_the_db_hosts():
    fleet = make_fleet(s3_external={"endpoint": "x:9000"})
    fleet.hosts = [
        HostSpec(h.name, h.groups - {"monitoring"}, {**h.data, "db_monitor": h.name == "h5"})
        for h in fleet.hosts
    ]
    assert fleet.db_monitor.name == "h5"
    fleet.hosts = [HostSpec(h.name, h.groups, {**h.data, "db_monitor": False})
                   for h in fleet.hosts]  # fmt: skip
    assert fleet.db_monitor.name == "h1"  # the first host with no database
    single = [HostSpec("one", frozenset({"db", "api", "worker", "monitoring"}), {})]
    assert Fleet(single).db_monitor.name == "one"


def test_two_failover_monitors_are_refused():
    fleet = make_fleet(s3_external={"endpoint": "x:9000"})
    fleet.hosts = [HostSpec(h.name, h.groups, {**h.data, "db_monitor": True}) for h in fleet.hosts]
    with pytest.raises(FleetError, match="more than one db_monitor"):
        fleet.validate()


def test_writes_find_the_primary_among_all_db_hosts(fleet):
    url = fleet.database_url
    assert "@10.200.1.4:5432,10.200.1.6:5432/appliance?" in url
    assert "target_session_attrs=read-write" in url


def test_status_reads_prefer_a_standby_and_fall_back_to_the_primary(fleet):
    url = fleet.database_read_url
    assert "@10.200.1.6:5432,10.200.1.4:5432/appliance?" in url
    assert "target_session_attrs=prefer-standby" in url


def test_no_replica_means_no_read_url():
    fleet = make_fleet(s3_external={"endpoint": "x:9000"})
    fleet.hosts = [h for h in fleet.hosts if h.name != "h6"]
    assert fleet.database_read_url == ""


def test_passwords_are_quoted_in_urls(fleet):
    fleet.secrets["db_password"] = "p@ss/w:rd"
    fleet.secrets["redis_api_password"] = "a@b"
    userinfo = fleet.database_url.split("//", 1)[1].rsplit("@", 1)[0]
    assert unquote(userinfo.split(":", 1)[1]) == "p@ss/w:rd"
    assert fleet.redis_url("api").startswith("redis://api:a%40b@10.200.1.2:6379/")
    assert fleet.redis_url("worker").startswith("redis://worker:s3cret-redis-worker-password@")


def test_prometheus_jobs_are_the_contract_names_with_every_target(fleet):
    targets = fleet.scrape_targets()
    assert set(targets) == CONTRACT_JOBS
    assert len(targets["node"]) == 6
    # each api host's metrics listener, not the API's port (which has no /metrics)
    assert targets["appliance-api"] == ["10.200.1.2:9179", "10.200.1.3:9179"]
    # the lab's engine set runs only the light queue: one worker port per worker host
    assert targets["appliance-worker"] == ["10.200.1.4:9181", "10.200.1.5:9181"]
    assert targets["postgres"] == ["10.200.1.4:9187", "10.200.1.6:9187"]
    assert targets["redis"] == ["10.200.1.2:9121"]
    assert targets["nginx"] == ["10.200.1.1:9113"]
    assert targets["minio"] == []  # external S3 in the lab


def test_each_host_opens_only_its_roles_ports(fleet):
    ports = {h.name: fleet.internal_ports(h) for h in fleet.hosts}
    # Prometheus and Grafana: loopback only; pg_auto_failover's monitor for the fleet
    assert ports["h1"] == [5431, 9100, 9113]
    assert ports["h2"] == [6379, 8080, 9100, 9121, 9179]
    assert ports["h4"] == [5432, 9100, 9181, 9187]
    assert ports["h6"] == [5432, 9100, 9187]
    assert fleet.public_ports(fleet.host("h1")) == [80, 443]
    assert fleet.public_ports(fleet.host("h2")) == []


def test_engine_families_choose_packages_and_queues():
    assert engine_packages(["images", "data"]) == []
    assert active_queues(["images", "data"]) == ["light"]
    assert engine_packages(["pdf"]) == ["fonts-urw-base35", "ghostscript", "pandoc"]
    assert active_queues(["ocr"]) == active_queues(["ebooks"]) == ["office"]
    full = DEFAULTS["engine_families"]
    assert {
        "ffmpeg",
        "pandoc",
        "librsvg2-bin",
        "python3-uno",
        "calibre",
        "tesseract-ocr",
        "ocrmypdf",
    } <= set(engine_packages(full))
    assert active_queues(full) == ["light", "office", "media"]
    with pytest.raises(ValueError, match="unknown engine families"):
        engine_packages(["images", "flash"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: setattr(f, "hosts", [h for h in f.hosts if not h.has("lb")]), "no lb host"),
        (
            lambda f: f.hosts.__setitem__(
                1, type(f.hosts[1])("h2", f.hosts[1].groups, {"private_ip": "10.200.1.1"})
            ),
            "share a private address",
        ),
    ],
)
def test_broken_inventories_are_refused_before_any_host_is_touched(fleet, change, message):
    change(fleet)
    with pytest.raises(FleetError, match=message):
        fleet.validate()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ssh_sources": ["0.0.0.0/0"]}, "'ssh_sources' is now admin_networks"),
        ({"admin_sources": ["203.0.113.7/32"]}, "'admin_sources' is now admin_networks"),
        ({"admin_networks": ["office"]}, "'office' is no address or CIDR"),
    ],
)
def test_old_or_bad_ssh_settings_are_refused_not_ignored(settings, message):
    fleet = make_fleet(s3_external={"endpoint": "10.200.0.1:9000"}, **settings)
    with pytest.raises(FleetError, match=message):
        fleet.validate()


def test_storage_is_minio_or_external_and_minio_needs_its_checksum():
    neither = make_fleet()
    with pytest.raises(FleetError, match="no storage host and no s3_external"):
        neither.validate()
    minio = make_fleet()
    host = minio.hosts[5]
    minio.hosts[5] = type(host)(host.name, host.groups | {"storage"}, host.data)
    with pytest.raises(FleetError, match="minio_sha256"):
        minio.validate()
    assert minio.s3()["endpoint"] == "10.200.1.6:9000"
    assert minio.scrape_targets()["minio"] == ["10.200.1.6:9000"]
