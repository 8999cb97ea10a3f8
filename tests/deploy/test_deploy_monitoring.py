"""docker-compose.yml's ``monitoring`` profile (Prometheus + Grafana), checked without a Docker Engine.

No image registry is reachable here, so prom/prometheus and grafana/grafana cannot be pulled: these
checks tie the profile's mounts, networks and ports to the files they serve (the scrape config, the
rules, Grafana's provisioning and dashboard) and to the framecast services they scrape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SCRAPE: dict[str, Any] = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
DATASOURCES: dict[str, Any] = yaml.safe_load(
    (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
)
PROVIDERS: dict[str, Any] = yaml.safe_load(
    (ROOT / "deploy/grafana/provisioning/dashboards/framecast.yml").read_text()
)


def _mounts(service: str) -> dict[str, str]:
    """``{container path: host path}`` of a service's bind mounts (host paths made absolute)."""
    found = {}
    for volume in SERVICES[service]["volumes"]:
        host, container, *_ = volume.split(":")
        found[container] = str((ROOT / host).resolve())
    return found


def test_prometheus_and_grafana_run_only_in_the_monitoring_profile_from_pinned_images() -> None:
    for name, image in (("prometheus", "prom/prometheus:"), ("grafana", "grafana/grafana:")):
        service = SERVICES[name]
        assert service["profiles"] == ["monitoring"], name
        assert service["image"].startswith(image), name
        assert service["image"].split(":", 1)[1] not in ("", "latest"), name


def test_prometheus_mounts_the_scrape_config_and_the_rules_it_names() -> None:
    mounts = _mounts("prometheus")
    config = "/etc/prometheus/prometheus.yml"
    assert mounts[config] == str(ROOT / "deploy/prometheus/prometheus.yml")
    for rules in SCRAPE["rule_files"]:  # relative to the config file
        inside = str(Path(config).parent / rules)
        assert mounts[inside] == str(ROOT / "deploy/prometheus" / rules), rules
        assert Path(mounts[inside]).is_file()


def test_every_scrape_job_reaches_a_compose_service_on_its_metrics_port() -> None:
    ports = {
        "gateway": SERVICES["gateway"]["environment"]["FRAMECAST_PORT"],
        "producer": SERVICES["producer"]["environment"]["FRAMECAST_METRICS_PORT"],
    }
    networks = set(SERVICES["prometheus"]["networks"])
    found = {}
    for job in SCRAPE["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                assert name in SERVICES, (job["job_name"], name)
                assert str(sd["port"]) == str(ports[name]), (job["job_name"], name)
                assert networks & set(SERVICES[name]["networks"]), f"prometheus cannot reach {name}"
                found[job["job_name"]] = name
    assert found == {"framecast-gateway": "gateway", "framecast-producer": "producer"}
    assert SERVICES["producer"]["environment"]["FRAMECAST_METRICS_HOST"] == "0.0.0.0"


def test_grafana_mounts_its_provisioning_and_the_dashboard_where_the_provider_reads() -> None:
    mounts = _mounts("grafana")
    assert mounts["/etc/grafana/provisioning"] == str(ROOT / "deploy/grafana/provisioning")
    (provider,) = PROVIDERS["providers"]
    dashboards = provider["options"]["path"]
    assert mounts[f"{dashboards}/framecast.json"] == str(ROOT / "deploy/grafana/framecast.json")
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in mounts


def test_grafanas_datasource_is_the_prometheus_service_on_a_shared_network() -> None:
    (source,) = DATASOURCES["datasources"]
    assert source["url"] == "http://prometheus:9090"
    published = SERVICES["prometheus"]["ports"][0]
    assert published.endswith(":9090"), published  # the container port the datasource uses
    assert set(SERVICES["grafana"]["networks"]) & set(SERVICES["prometheus"]["networks"])
    assert SERVICES["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
