"""The monitoring files' queries, for tests: every Grafana panel query and every alert expression,
and the metric names framecast exposes.

:func:`panel_queries` is what a test against a real Prometheus uses to evaluate every panel of
``deploy/grafana/framecast.json`` through the HTTP API; :func:`metric_names` and
:func:`known_metrics` are the offline stand-in (a renamed metric fails a unit test without a
server).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DASHBOARD",
    "NEW_METRICS",
    "ROOT",
    "PanelQuery",
    "alert_expressions",
    "known_metrics",
    "metric_names",
    "panel_queries",
    "tested_alerts",
]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "framecast.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# Metrics the dashboard and alerts use that the code does not expose yet, with their kinds; each
# moves to the code's definitions when it lands. Empty: every panel must return data.
NEW_METRICS: Mapping[str, str] = {}
# Prometheus's own series for every target.
_BUILTIN = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
# The series a family of each kind has in prometheus_client's exposition.
_SERIES = {
    "gauge": ("",),
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
}
# How gateway/metrics.py and producer/metrics.py declare a family of each kind.
_DECLARATIONS = {
    "_gauge": "gauge",
    "Gauge": "gauge",
    "GaugeMetricFamily": "gauge",
    "_counter": "counter",
    "Counter": "counter",
    "CounterMetricFamily": "counter",
    "Histogram": "histogram",
    "Info": "info",
}
_SOURCES = (ROOT / "gateway" / "metrics.py", ROOT / "producer" / "metrics.py")

# Grafana's own variables, and what a direct Prometheus query uses instead.
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "5m"}

# Words that are not metric names though no "(" follows them: aggregations take their "by (...)"
# before the parenthesis; the rest are keywords. (Functions are known by the "(" after them.)
_NOT_METRICS = frozenset(
    {
        *("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"),
        *("bottomk", "topk", "quantile", "limitk", "limit_ratio"),
        *("and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"),
        *("offset", "bool", "inf", "nan", "atan2"),
    }
)


@dataclass(frozen=True, kw_only=True)
class PanelQuery:
    """One query of one dashboard panel.

    Attributes:
        panel: The panel's title.
        ref_id: The query's letter within the panel.
        expr: The PromQL, with Grafana's variables replaced so Prometheus can run it as is.
    """

    panel: str
    ref_id: str
    expr: str


def panel_queries(dashboard: Mapping[str, Any] | None = None) -> list[PanelQuery]:
    """Every Prometheus query of every panel (rows' nested panels included), in dashboard order.

    Args:
        dashboard: The dashboard model; default ``deploy/grafana/framecast.json``.

    Raises:
        ValueError: A panel that shows data has no query.
    """
    model = dashboard if dashboard is not None else json.loads(DASHBOARD.read_text())
    found: list[PanelQuery] = []
    for panel in _panels(model.get("panels", [])):
        if panel.get("type") in ("row", "text"):
            continue
        targets = [t for t in panel.get("targets", []) if str(t.get("expr", "")).strip()]
        if not targets:
            raise ValueError(f"panel {panel.get('title')!r} has no query")
        for target in targets:
            found.append(
                PanelQuery(
                    panel=str(panel.get("title", "")),
                    ref_id=str(target.get("refId", "")),
                    expr=_substitute(str(target["expr"])),
                )
            )
    return found


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row keeps its panels inside


def _substitute(expr: str) -> str:
    # Longest names first: $__range must not eat the start of a longer variable.
    for name in sorted(_GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, _GRAFANA_VARIABLES[name])
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (a lexical scan, enough for these files)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings may contain anything
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    # Label lists of grouping and matching modifiers.
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if word.lower() in _NOT_METRICS or following.startswith("("):
            continue
        if re.fullmatch(r"\d+(ms|s|m|h|d|w|y)", word) or text[match.start() - 1 : match.start()].isdigit():
            continue  # a duration or the exponent of a number like 1e3
        names.add(word)
    return names


def known_metrics() -> set[str]:
    """Every series name framecast exposes (or will, :data:`NEW_METRICS`): ``up``, a gauge's name,
    a counter's ``_total``, a histogram's ``_bucket``/``_sum``/``_count``, an info's ``_info``."""
    families = dict(NEW_METRICS)
    for source in _SOURCES:
        families.update(_declared(source.read_text()))
    return set(_BUILTIN) | {name + suffix for name, kind in families.items() for suffix in _SERIES[kind]}


def _declared(text: str) -> dict[str, str]:
    # producer/metrics.py builds names as p + "name" (and p[:-1]) with p = "framecast_producer_".
    prefix_match = re.search(r'\bp = "(framecast_[a-z_]+_)"', text)
    prefix = prefix_match.group(1) if prefix_match else ""
    found: dict[str, str] = {}
    pattern = r'\b(\w+)\(\s*(?:"(framecast_[a-z0-9_]+)"|p \+ "([a-z0-9_]+)"|(p\[:-1\]))'
    for call, literal, suffix, bare in re.findall(pattern, text):
        kind = _DECLARATIONS.get(call)
        if kind is None:
            continue
        name = literal or (prefix + suffix if suffix else prefix[:-1] if bare else "")
        if name.startswith("framecast_"):
            found[name] = kind
    return found


def alert_expressions(path: Path = ALERTS) -> dict[str, str]:
    """``{alert name: expr}`` of a rules file laid out as ``deploy/prometheus/alerts.yml`` is.

    Reads ``- alert: NAME`` followed by ``expr: ONE LINE`` or ``expr: |`` and a more indented block
    (the project has no YAML parser; this layout is all the file uses).

    Raises:
        ValueError: An alert whose expression is not found.
    """
    lines = path.read_text().splitlines()
    found: dict[str, str] = {}
    current: str | None = None
    for index, line in enumerate(lines):
        alert = re.match(r"\s*- alert:\s*(\S+)", line)
        if alert:
            current = alert.group(1)
            continue
        expr = re.match(r"(\s*)expr:\s*(.*)$", line)
        if not expr or current is None:
            continue
        indent, value = len(expr.group(1)), expr.group(2).strip()
        if value in ("|", ">", "|-", ">-"):
            block = []
            for following in lines[index + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following.strip())
            value = " ".join(part for part in block if part)
        found[current] = value
        current = None
    missing = set(re.findall(r"^\s*- alert:\s*(\S+)", path.read_text(), flags=re.MULTILINE)) - set(found)
    if missing:
        raise ValueError(f"{path}: no expr found for {sorted(missing)}")
    return found


def tested_alerts(path: Path) -> set[str]:
    """Alert names a promtool test file evaluates (``alertname: NAME``)."""
    return set(re.findall(r"^\s*alertname:\s*(\S+)", path.read_text(), flags=re.MULTILINE))
