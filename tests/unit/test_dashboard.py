"""deploy/grafana/framecast.json and deploy/prometheus/prometheus.yml, offline: every panel has a
query, every query is valid PromQL (promtool parses it as a recording rule), and reads only
metrics framecast exposes; the provisioning points at the datasource the panels name."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from producer.metrics import Metrics
from tests.support import monitoring

GRAFANA = monitoring.ROOT / "deploy" / "grafana"
PROMETHEUS = monitoring.ROOT / "deploy" / "prometheus"

# What issue 10 asks the dashboard to show, as words that must appear in a panel title.
REQUIRED_PANELS = (
    "connections per gateway",
    "deliveries/s",
    "fan-out duration",
    "capture → client",
    "slow clients",
    "drops by reason",
    "readiness per gateway",
    "producer fps",
    "frame age",
    "redis reconnects",
    # issue 22: tracking and events
    "events/s by kind",
    "tracker time",
    "active tracks",
)


def _promtool() -> str:
    found = os.environ.get("FRAMECAST_PROMTOOL") or shutil.which("promtool")
    if not found or not Path(found).is_file():
        pytest.fail(
            "promtool not found: install Debian's prometheus package (apt-get install -y prometheus) "
            "or set FRAMECAST_PROMTOOL to the binary",
            pytrace=False,
        )
    return found


def _dashboard() -> dict[str, object]:
    return json.loads(monitoring.DASHBOARD.read_text())  # type: ignore[no-any-return]


def test_the_dashboard_shows_what_operators_asked_for() -> None:
    titles = [q.panel.lower() for q in monitoring.panel_queries()]
    missing = [want for want in REQUIRED_PANELS if not any(want in title for title in titles)]
    assert not missing, f"no panel for {missing}; panels: {sorted(set(titles))}"


def test_every_panel_query_is_valid_promql() -> None:
    queries = monitoring.panel_queries()
    assert queries
    # promtool has no offline "parse this expression"; a recording rule per query is parsed fully.
    rules = ["groups:", "  - name: panels", "    rules:"]
    for index, query in enumerate(queries):
        rules += [f"      - record: panel:{index}", f"        expr: {json.dumps(query.expr)}"]
    with tempfile.TemporaryDirectory(prefix="framecast-panels-") as tmp:
        path = Path(tmp) / "panels.yml"
        path.write_text("\n".join(rules) + "\n")
        done = subprocess.run(
            [_promtool(), "check", "rules", str(path)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(queries)} rules found" in done.stdout


def test_every_panel_query_reads_only_metrics_framecast_exposes() -> None:
    known = monitoring.known_metrics()
    for query in monitoring.panel_queries():
        names = monitoring.metric_names(query.expr)
        assert names, f"{query.panel}/{query.ref_id} reads no metric: {query.expr}"
        unknown = names - known
        assert not unknown, f"panel {query.panel!r} ({query.ref_id}) reads unknown metrics {sorted(unknown)}"


def test_queries_leave_no_grafana_variable_for_prometheus() -> None:
    for query in monitoring.panel_queries():
        assert "$" not in query.expr, f"{query.panel}: {query.expr}"


def test_panels_use_the_provisioned_datasource() -> None:
    provisioned = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    (uid,) = re.findall(r"^\s*uid:\s*(\S+)", provisioned, flags=re.MULTILINE)
    text = monitoring.DASHBOARD.read_text()
    assert set(re.findall(r'"uid": "([^"]+)"', text)) == {uid, "framecast"}  # the datasource, the dashboard


def test_panel_ids_are_unique() -> None:
    dashboard = _dashboard()
    ids = [p["id"] for p in dashboard["panels"]]  # type: ignore[index, union-attr]
    assert len(ids) == len(set(ids))


def test_metric_scan_matches_the_producers_real_registry() -> None:
    # The scan of the sources is what the offline checks trust: check it against real objects.
    exposed = {
        sample.name for family in Metrics().registry.collect() for sample in family.samples
    }  # fmt: skip
    scanned = {name for name in monitoring.known_metrics() if name.startswith("framecast_producer_")}
    new = {n for n in scanned if any(n.startswith(m) for m in monitoring.NEW_METRICS)}
    assert exposed == scanned - new


def test_extraction_walks_rows_and_substitutes_grafana_variables() -> None:
    model = {
        "panels": [
            {"type": "row", "title": "r", "panels": [
                {"type": "timeseries", "title": "inner", "targets": [
                    {"refId": "A", "expr": "rate(x_total[$__rate_interval])"},
                ]},
            ]},
            {"type": "text", "title": "notes"},
            {"type": "stat", "title": "outer", "targets": [{"refId": "A", "expr": "up"}, {"refId": "B"}]},
        ]
    }  # fmt: skip
    queries = monitoring.panel_queries(model)
    assert [(q.panel, q.ref_id, q.expr) for q in queries] == [
        ("inner", "A", "rate(x_total[1m])"),
        ("outer", "A", "up"),
    ]
    with pytest.raises(ValueError, match="'empty' has no query"):
        monitoring.panel_queries({"panels": [{"type": "timeseries", "title": "empty", "targets": []}]})


def test_metric_names_ignores_functions_labels_ranges_and_modifiers() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{job="x", le!="1e3"}[5m])))'
        " * on (instance) group_left (stream) b_info > 1e3 and ignoring (kind) c offset 5m"
    )
    assert monitoring.metric_names(expr) == {"a_bucket", "b_info", "c"}


def test_compose_prometheus_config_is_valid_and_scrapes_every_part() -> None:
    done = subprocess.run(
        [_promtool(), "check", "config", str(PROMETHEUS / "prometheus.yml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = set(re.findall(r"job_name:\s*(\S+)", (PROMETHEUS / "prometheus.yml").read_text()))
    assert {"framecast-gateway", "framecast-producer"} <= jobs
