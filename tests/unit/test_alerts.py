"""deploy/prometheus/alerts.yml: valid rules, whose unit tests (alerts.test.yml) pass in promtool,
and which only use metrics framecast exposes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import monitoring

PROMETHEUS_DIR = monitoring.ROOT / "deploy" / "prometheus"


def _promtool() -> str:
    found = os.environ.get("FRAMECAST_PROMTOOL") or shutil.which("promtool")
    if not found or not Path(found).is_file():
        pytest.fail(
            "promtool not found: install Debian's prometheus package (apt-get install -y prometheus) "
            "or set FRAMECAST_PROMTOOL to the binary",
            pytrace=False,
        )
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args],
        cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_rules_are_valid() -> None:
    done = _run("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_on_its_failure_and_only_then() -> None:
    done = _run("test", "rules", "alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = set(monitoring.alert_expressions())
    tested = monitoring.tested_alerts(PROMETHEUS_DIR / "alerts.test.yml")
    assert alerts, "no alert found"
    assert alerts <= tested, f"alerts without a promtool test: {sorted(alerts - tested)}"


def test_alerts_use_only_metrics_framecast_exposes() -> None:
    known = monitoring.known_metrics()
    for name, expr in monitoring.alert_expressions().items():
        unknown = monitoring.metric_names(expr) - known
        assert not unknown, f"alert {name} uses metrics nothing exposes: {sorted(unknown)}"
