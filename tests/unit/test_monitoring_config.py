"""``framecast.local.monitoring``: the generated Prometheus configuration and finding Prometheus.

The configuration is checked by Debian's real ``promtool``; a real ``framecast up --monitoring``
is in tests/integration/test_monitoring.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from framecast.local import launch, monitoring
from tests.support.procs import child_env


def test_the_config_has_one_job_per_kind_of_part_with_every_target() -> None:
    text = monitoring.render_config(
        gateways=["127.0.0.1:1", "127.0.0.1:2"],
        producers=["127.0.0.1:3", "127.0.0.1:4"],
        rule_files=[monitoring.ALERTS],
        scrape_interval="2s",
    )
    config = json.loads(text)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"framecast-gateway", "framecast-producer"}  # the names alerts.yml uses
    assert jobs["framecast-gateway"]["static_configs"] == [{"targets": ["127.0.0.1:1", "127.0.0.1:2"]}]
    assert jobs["framecast-producer"]["static_configs"] == [{"targets": ["127.0.0.1:3", "127.0.0.1:4"]}]
    assert config["global"]["scrape_interval"] == "2s"
    assert config["rule_files"] == [str(monitoring.ALERTS)]


def test_a_stack_without_producers_has_no_producer_job() -> None:
    config = json.loads(monitoring.render_config(gateways=["127.0.0.1:1"], producers=[]))
    assert [job["job_name"] for job in config["scrape_configs"]] == ["framecast-gateway"]


def test_promtool_accepts_the_generated_config_with_the_alert_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: install Debian's prometheus package"
    spec = launch.Prometheus(
        binary="prometheus",
        workdir=tmp_path,
        port=9999,
        gateways=("127.0.0.1:1",),
        producers=("127.0.0.1:2",),
    )
    spec.prepare()
    assert str(monitoring.ALERTS) in spec.config_path.read_text()
    assert f"--config.file={spec.config_path}" in spec.argv()
    assert "--web.listen-address=127.0.0.1:9999" in spec.argv()
    assert spec.url == "http://127.0.0.1:9999" and spec.port == 9999
    result = subprocess.run(
        [promtool, "check", "config", str(spec.config_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules found" in result.stdout, result.stdout  # alerts.yml was loaded and checked


def test_prometheus_is_found_from_the_environment_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "prometheus"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv(monitoring.ENV, str(fake))
    assert monitoring.prometheus_binary() == str(fake)
    fake.chmod(0o644)
    with pytest.raises(monitoring.MonitoringError, match="install Debian's prometheus package or set"):
        monitoring.prometheus_binary()


def test_prometheus_absent_from_path_is_one_line_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(monitoring.ENV, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(monitoring.MonitoringError) as caught:
        monitoring.prometheus_binary()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("--monitoring: prometheus is not on PATH")
    assert message.endswith("install Debian's prometheus package or set FRAMECAST_PROMETHEUS")


def test_up_monitoring_without_prometheus_exits_2_with_that_line() -> None:
    env = {**child_env(), monitoring.ENV: "/nonexistent/prometheus"}
    result = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "up", "--monitoring", "--port", "0"],
        capture_output=True, text=True, timeout=60, env=env, cwd=os.getcwd(),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].endswith("install Debian's prometheus package or set FRAMECAST_PROMETHEUS"), lines
    assert result.stdout == ""  # nothing was started
