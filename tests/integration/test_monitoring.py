"""A real Prometheus (Debian's) scraping a real gateway and producer, with deploy/prometheus/alerts.yml
loaded: every dashboard panel query is evaluated through the HTTP API and must return data, so a
renamed metric or a broken join fails here.

Queries reading a metric of :data:`tests.support.monitoring.NEW_METRICS` (announced, not exposed
yet) are evaluated too and must be valid; they are required to return data once the metric lands
and leaves that list.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from framecast.embedded import free_port
from tests.support import monitoring
from tests.support.gateway import GatewayProc, running_gateway
from tests.support.procs import child_env
from tests.support.producer import running_producer
from tests.support.valkey import RedisServer
from tests.support.wait import wait_until

STREAM = "monitored"


def _prometheus_binary() -> str:
    found = os.environ.get("FRAMECAST_PROMETHEUS") or shutil.which("prometheus")
    if not found or not Path(found).is_file():
        pytest.fail(
            "prometheus not found: install Debian's prometheus package (apt-get install -y prometheus) "
            "or set FRAMECAST_PROMETHEUS to the binary",
            pytrace=False,
        )
    return found


def _config(*, gateway: str, producer: str) -> str:
    # The jobs deploy/prometheus/prometheus.yml defines, with static targets for local processes.
    alerts = monitoring.ROOT / "deploy" / "prometheus" / "alerts.yml"
    return json.dumps(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(alerts)],
            "scrape_configs": [
                {"job_name": "framecast-gateway", "static_configs": [{"targets": [gateway]}]},
                {"job_name": "framecast-producer", "static_configs": [{"targets": [producer]}]},
            ],
        }
    )  # JSON is YAML: no YAML library needed


class _Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

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
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False


@pytest.fixture
def producer_metrics(redis_server: RedisServer) -> Iterator[str]:
    port = free_port()
    args = ["--stream", STREAM, "--source", "synthetic", "--max-fps", "10", "--no-demand"]
    args += ["--metrics-port", str(port)]
    with running_producer(redis_server.url, args, env=child_env()):
        yield f"127.0.0.1:{port}"


@pytest.fixture
def gateway(redis_server: RedisServer) -> Iterator[GatewayProc]:
    with running_gateway(redis_url=redis_server.url, wait="ready") as gw:
        yield gw


@pytest.fixture
def viewer(gateway: GatewayProc) -> Iterator[subprocess.Popen[bytes]]:
    """A real client on the stream, so connections, deliveries and write latency have data."""
    process = subprocess.Popen(
        [sys.executable, "-m", "framecast.cli", "watch", gateway.url, "--stream", STREAM, "--retries", "0"],
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


@pytest.fixture
def prometheus(gateway: GatewayProc, producer_metrics: str) -> Iterator[_Prometheus]:
    binary = _prometheus_binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="framecast-prometheus-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(_config(gateway=f"127.0.0.1:{gateway.port}", producer=producer_metrics))
        log = Path(tmp) / "prometheus.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    binary, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                    f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle",
                ],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        server = _Prometheus(f"http://127.0.0.1:{port}", process, log)
        try:
            wait_until(server.ready, timeout=30, what="prometheus ready")
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def test_every_dashboard_panel_returns_data_from_a_real_prometheus(
    prometheus: _Prometheus, viewer: subprocess.Popen[bytes]
) -> None:
    # Both targets up, and enough scrapes for every rate() window to hold two samples.
    wait_until(
        lambda: len(prometheus.query("count_over_time(up[1m]) >= 5 and up == 1")) == 2,
        timeout=60,
        what="five good scrapes of the gateway and the producer",
    )
    wait_until(
        lambda: prometheus.query("framecast_gateway_connections >= 1"),
        timeout=30,
        what="the viewer connected",
    )
    queries = monitoring.panel_queries()
    pending = [q for q in queries if monitoring.metric_names(q.expr) & set(_new_series())]
    required = [q for q in queries if q not in pending]
    assert len(required) >= 10, [q.panel for q in required]

    def empty() -> list[str]:
        return [f"{q.panel} ({q.ref_id}): {q.expr}" for q in required if not prometheus.query(q.expr)]

    try:
        wait_until(lambda: not empty(), timeout=30, what="data for every panel query")
    except AssertionError:
        raise AssertionError("panel queries without data:\n" + "\n".join(empty())) from None
    for query in pending:
        prometheus.query(query.expr)  # valid, evaluated; data comes when the metric lands


def test_alert_rules_load_and_evaluate_in_a_real_prometheus(prometheus: _Prometheus) -> None:
    def loaded() -> list[dict[str, Any]]:
        groups = prometheus.api("rules", type="alert")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules) else []

    rules = wait_until(loaded, timeout=30, what="every alert rule evaluated once")
    assert {r["name"] for r in rules} == set(monitoring.alert_expressions())
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]


def _new_series() -> Iterator[str]:
    kinds = {"histogram": ("_bucket", "_sum", "_count"), "gauge": ("",), "counter": ("_total",)}
    for name, kind in monitoring.NEW_METRICS.items():
        for suffix in kinds[kind]:
            yield name + suffix
