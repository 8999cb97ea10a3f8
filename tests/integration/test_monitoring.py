"""A real ``framecast up --monitoring``: its own Prometheus (Debian's) scraping every gateway and the
producer of the stack, with the configuration ``framecast.local.monitoring`` generates and
deploy/prometheus/alerts.yml loaded. Every dashboard panel query is evaluated through the HTTP API
and must return data, so a renamed metric or a broken join fails here, not on the dashboard.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from framecast.local.up import Stack, running
from tests.support import monitoring
from tests.support.gateway import gateway_env
from tests.support.procs import child_env
from tests.support.wait import wait_until

STREAM = "monitored"
GATEWAYS = 2


class _Prometheus:
    def __init__(self, url: str, stack: Stack) -> None:
        self.url = url
        self.stack = stack

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]  # type: ignore[no-any-return]

    def ready(self) -> bool:
        child = self.stack.children["prometheus"]
        if not child.running:
            raise AssertionError(f"prometheus exited:\n{child.tail(40)}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Without Debian's prometheus package this fails with the one line saying how to install it.
    with running(
        gateways=GATEWAYS, stream=STREAM, monitoring=True, monitoring_interval=1.0, env=gateway_env()
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> _Prometheus:
    assert stack.prometheus is not None, "--monitoring started no Prometheus"
    server = _Prometheus(stack.prometheus.url, stack)
    wait_until(server.ready, timeout=30, what="prometheus ready")
    return server


@pytest.fixture
def viewer(stack: Stack) -> Iterator[subprocess.Popen[bytes]]:
    """A real client on the stream through nginx, so connections, deliveries and write latency have data."""
    process = subprocess.Popen(
        [sys.executable, "-m", "framecast.cli", "watch", stack.url, "--stream", STREAM, "--retries", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=child_env(),
    )  # fmt: skip
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def test_the_generated_config_scrapes_every_gateway_and_the_producer(prometheus: _Prometheus) -> None:
    def targets() -> dict[str, list[str]]:
        active = prometheus.api("targets")["activeTargets"]
        found: dict[str, list[str]] = {}
        for target in active:
            if target["health"] == "up":
                found.setdefault(target["labels"]["job"], []).append(target["labels"]["instance"])
        return found

    # The producer's first scrape can come after the gateways': wait for both jobs, not just one.
    found = wait_until(
        lambda: (
            (t := targets())
            and len(t.get("framecast-gateway", [])) == GATEWAYS
            and len(t.get("framecast-producer", [])) == 1
            and t
        ),
        timeout=30,
        what="every gateway and the producer up",
    )
    stack = prometheus.stack
    assert sorted(found["framecast-gateway"]) == sorted(f"127.0.0.1:{g.port}" for g in stack.gateways)
    assert len(found["framecast-producer"]) == 1
    assert set(found) == {"framecast-gateway", "framecast-producer"}


def test_every_dashboard_panel_returns_data_from_a_real_prometheus(
    prometheus: _Prometheus, viewer: subprocess.Popen[bytes]
) -> None:
    assert not monitoring.NEW_METRICS, "every metric the dashboard reads exists: none is exempt"
    # Every target up, and enough scrapes for every rate() window to hold two samples.
    wait_until(
        lambda: len(prometheus.query("count_over_time(up[1m]) >= 5 and up == 1")) == GATEWAYS + 1,
        timeout=60,
        what="five good scrapes of every gateway and the producer",
    )
    wait_until(
        lambda: prometheus.query("sum(framecast_gateway_connections) >= 1"),
        timeout=30,
        what="the viewer connected",
    )
    queries = monitoring.panel_queries()
    assert len(queries) >= 10, [q.panel for q in queries]

    def empty() -> list[str]:
        return [f"{q.panel} ({q.ref_id}): {q.expr}" for q in queries if not prometheus.query(q.expr)]

    try:
        wait_until(lambda: not empty(), timeout=30, what="data for every panel query")
    except AssertionError:
        raise AssertionError("panel queries without data:\n" + "\n".join(empty())) from None


def test_alert_rules_load_and_evaluate_in_a_real_prometheus(prometheus: _Prometheus) -> None:
    def loaded() -> list[dict[str, Any]]:
        groups = prometheus.api("rules", type="alert")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules) else []

    rules = wait_until(loaded, timeout=30, what="every alert rule evaluated once")
    assert {r["name"] for r in rules} == set(monitoring.alert_expressions())
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
