"""The compose file's `monitoring` profile on a real Docker Engine: Prometheus finds every replica.

Prometheus runs on a local stand-in of prom/prometheus (Debian's prometheus, see
deploy/standins/prometheus.Dockerfile) with the shipped deploy/prometheus/prometheus.yml and
alerts.yml mounted as the compose file says. Grafana has no stand-in (no Debian package, no
registry here): its service is left out and validated offline (tests/deploy/).
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from framecast.local.embedded import free_port
from tests.docker._compose import Project, docker
from tests.support.wait import wait_until

pytestmark = pytest.mark.docker


def _api(base: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{base}/api/v1/{path}{query}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="module")
def monitored(docker_engine: None) -> Iterator[tuple[Project, str]]:
    port = free_port()
    env = {
        **os.environ,
        "FRAMECAST_BIND": "127.0.0.1",
        "FRAMECAST_PORT_PUBLISHED": str(free_port()),
        "FRAMECAST_PROMETHEUS_PUBLISHED": str(port),
    }
    project = Project(f"framecast-monitoring-{os.getpid()}", env, profiles=("monitoring",))
    try:
        # Everything of the profile but grafana (no stand-in image).
        project.compose("up", "-d", "--build", "--scale", "gateway=2", "lb", "producer", "prometheus")
        yield project, f"http://127.0.0.1:{port}"
    finally:
        project.down()
    label = f"com.docker.compose.project={project.name}"
    assert not docker("ps", "-aq", "--filter", f"label={label}").split()


def _up_targets(base: str, job: str) -> set[str]:
    targets = _api(base, "targets", state="active")["activeTargets"]
    return {t["labels"]["instance"] for t in targets if t["labels"]["job"] == job and t["health"] == "up"}


def test_prometheus_scrapes_every_replica_found_by_dns_and_follows_a_scale_up(
    monitored: tuple[Project, str],
) -> None:
    project, base = monitored
    project.wait_healthy("prometheus", 1)
    project.wait_healthy("gateway", 2)
    project.wait_healthy("producer", 1)
    wait_until(
        lambda: len(_up_targets(base, "framecast-gateway")) == 2, timeout=90, what="2 gateway targets up"
    )
    wait_until(lambda: len(_up_targets(base, "framecast-producer")) == 1, timeout=90, what="the producer up")

    # The alert rules of deploy/prometheus/alerts.yml are loaded and evaluated.
    groups = _api(base, "rules")["groups"]
    rules = {r["name"] for g in groups for r in g["rules"]}
    assert rules and all(g["file"].endswith("alerts.yml") for g in groups), groups
    # Series from the gateways themselves, not only `up`.
    wait_until(
        lambda: _api(base, "query", query="count(framecast_gateway_connections)")["result"],
        timeout=60,
        what="a framecast_gateway_connections series",
    )

    # --scale without touching Prometheus: its DNS discovery finds the new replica.
    project.compose("up", "-d", "--no-recreate", "--scale", "gateway=3", "lb", "producer", "prometheus")
    project.wait_healthy("gateway", 3)
    wait_until(
        lambda: len(_up_targets(base, "framecast-gateway")) == 3, timeout=90, what="3 gateway targets up"
    )
