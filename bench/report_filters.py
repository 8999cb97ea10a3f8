"""The report's section on subscription filters (part ``filters``) and its plot.

Like :mod:`bench.report`, nothing is measured here: the tables and sentences are built from one
run's results, so the text never claims what the run did not show.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.report_models import _NONE, _X, _num, _table

__all__ = ["PLOT", "filters_section", "plot"]

PLOT = "filters.png"
"""The plot file (in ``perf/`` beside the markdown), drawn when the part ran."""

_NAMES = {"full": "full", "events": "events-only", "capped": "capped", "full-m": "full"}


def _clients(row: dict[str, Any]) -> str:
    return " + ".join(f"{count} {_NAMES[flavour]}" for flavour, count in row["clients"].items())


def _ratio(summary: dict[str, Any], key: str, digits: int = 2) -> str:
    value = summary.get(key)
    if not value:
        return _NONE
    return f"**{value['median']:.{digits}f}{_X}** ({value['min']:.{digits}f}{_NONE}{value['max']:.{digits}f})"


def _us(summary: dict[str, Any], key: str) -> str:
    value = summary.get(key)
    return _NONE if not value else f"{value['median']:.1f}"


def _part(results: dict[str, Any]) -> dict[str, Any] | None:
    part = results.get("filters")
    return part if isinstance(part, dict) and part.get("configs") else None


def filters_section(results: dict[str, Any]) -> list[str]:
    """Section 7: gateway CPU per result with and without filtered clients, and the ratios."""
    part = _part(results)
    if part is None:
        return []
    options = results.get("options", {}).get("filters", {})
    n, m = options.get("full", "N"), options.get("filtered", "M")
    rate, cap, rounds = options.get("rate", 15), options.get("cap", 2), options.get("rounds", 1)
    beat = options.get("beat", 1.0)
    every = "per second" if beat == 1 else f"every {beat:g} s"
    lines = [
        "## 7. Subscription filters (`kinds`, `max_rate`)",
        "",
        f"One real gateway process (pinned to one CPU), one valkey, and load clients on `/ws/bench`: "
        f"**full** subscribers (no filter), **events-only** (`kinds=event,status`) and **capped** "
        f"(`max_rate={cap:g}`). The stream carries {rate:g} results/s (~300 B each), one status and one "
        f"event {every}, for the whole part. Each of {rounds} rounds measures `{n} full`, "
        f"`+ {m} events-only`, `{n} full`, `+ {m} capped`, `{n} full` with the same {n} full "
        "connections throughout (the two mixed windows swap places every other round), then each "
        "filtered kind alone; joins and leaves happen outside the windows. Gateway CPU is every "
        "thread's run time (`/proc/<pid>/task/*/schedstat`) over the window, divided by the results "
        "published in it (and by the results delivered, all clients together).",
        "",
    ]
    rows = []
    for row in part["configs"]:
        low, high = row["cpu_us_per_result_range"]
        rates = ", ".join(
            f"{_NAMES[flavour]} {_num(value, 2)}" for flavour, value in row["results_per_client_s"].items()
        )
        loss = row.get("full_loss")
        rows.append(
            [
                _clients(row),
                f"{_num(row['cpu_us_per_result'])} ({_num(low)}{_NONE}{_num(high)})",
                _num(row["cpu_share"] * 100),
                _num(row["cpu_us_per_delivery"], 2),
                rates,
                _NONE if loss is None else f"{loss * 100:.2f}%",
                _num((row.get("run_queue_wait_share") or 0) * 100),
                _num(row.get("gateway_per_s", {}).get("fanouts")),
                str(row["windows"]),
            ]
        )
    lines += _table(
        [
            "Clients",
            "Gateway CPU µs per result, median (range)",
            "% of a core",
            "µs per result delivery",
            "Results/s per client",
            "Results the full clients missed",
            "Gateway waited for a CPU, % of the time",
            "Fan-outs/s",
            "Windows",
        ],
        rows,
    )
    summary = part.get("summary", {})
    lines += [
        "",
        f"Ratios per round, then their median (range over the {rounds} rounds):",
        "",
        *_table(
            ["Question", "events-only", "capped"],
            [
                [
                    f"Gateway CPU per result, {n} full + {m} filtered / {n} full alone (an upper bound of "
                    "a full subscriber's cost growing: it holds the filtered clients' own cost too)",
                    _ratio(summary, "events_with_over_without", 3),
                    _ratio(summary, "capped_with_over_without", 3),
                ],
                [
                    f"{m} filtered clients alone / {m} full subscribers alone (the gateway's fixed work "
                    "per result, once per stream, in both)",
                    _ratio(summary, "events_alone_over_full"),
                    _ratio(summary, "capped_alone_over_full"),
                ],
                [
                    f"One filtered client's own cost / one full subscriber's: ((mixed {_NONE} {n} full) "
                    f"/ {m}) / ({n} full / {n})",
                    _ratio(summary, "events_marginal"),
                    _ratio(summary, "capped_marginal"),
                ],
                [
                    f"One result delivery to a capped client / to a full one ({m} of each alone, less "
                    f"{m} events-only alone: the statuses, events and per-result work taken out; "
                    f"{_us(summary, 'capped_us_per_delivery')} / {_us(summary, 'full_us_per_delivery')} µs)",
                    _NONE,
                    _ratio(summary, "capped_delivery_over_full"),
                ],
            ],
        ),
        "",
        *_starved(part),
        *_behaviour(part, cap),
        "",
        f"![Subscription filters](perf/{PLOT})",
        "",
    ]
    return lines


def _starved(part: dict[str, Any]) -> list[str]:
    """Say so when the full subscribers missed results, with what the gateway counted meanwhile."""
    missed = [row for row in part["configs"] if (row.get("full_loss") or 0) >= 0.005]
    if not missed:
        return []
    lines = []
    for row in missed:
        rates = row.get("gateway_per_s", {})
        drops = ", ".join(
            f"{key[len('dropped:') :]} {_num(value, 0)}/s"
            for key, value in rates.items()
            if key.startswith("dropped:")
        )
        lines.append(
            f"- With {_clients(row)} the full subscribers missed {row['full_loss'] * 100:.1f}% of the "
            f"results (whole results, for all of them at once); the gateway (medians of the windows) "
            f"waited for a CPU {_num((row.get('run_queue_wait_share') or 0) * 100, 0)}% of the time, ran "
            f"{_num(rates.get('fanouts'), 0)} fan-outs/s and dropped deliveries: {drops or _NONE}."
        )
    lines.append(
        "- Drops: `stale`, older than `--max-age`; `overload`, shed from a stream's queue of waiting "
        "fan-outs; `conflated`, newest-wins (it also counts the results a capped client skips by "
        "design). A window with drops leaves their fan-outs out of its CPU per result: its ratio "
        "understates the cost."
    )
    return lines


def _behaviour(part: dict[str, Any], cap: float) -> list[str]:
    """What the clients received, from their own records: the filters did what they say."""
    groups = part.get("clients", [])
    events = [g for g in groups if g["flavour"] == "events"]
    capped = [g for g in groups if g["flavour"] == "capped"]
    lines = []
    if events:
        lines.append(
            f"- Events-only clients ({len(events)} groups): {sum(g['results'] for g in events)} results "
            f"received in all, at least {min(g['events_min'] for g in events)} events each."
        )
    alone = next((row for row in part["configs"] if row["config"] == "capped"), None)
    if alone:
        rate = alone["results_per_client_s"].get("capped") or 0
        batches = alone.get("gateway_per_s", {}).get("write_batches:result")
        delivered = rate * alone["clients"]["capped"]
        if batches:
            lines.append(
                f"- {alone['clients']['capped']} capped clients alone: {_num(delivered, 0)} result "
                f"deliveries/s in {_num(batches, 0)} result write batches/s "
                f"({delivered / batches:.1f} clients per batch)."
            )
    if capped:
        worst = max(g.get("max_results_per_s", 0) for g in capped)
        over = sum(g.get("clients_over_cap", 0) for g in capped)
        lines.append(
            f"- Capped clients ({len(capped)} groups, `max_rate={cap:g}`): at most {worst:.2f} results/s "
            f"for any client over its life (after the latest at subscribe), {over} clients over the cap."
        )
    return lines


def plot(results: dict[str, Any], directory: Path, note: str) -> None:
    """``perf/filters.png``: CPU per result per configuration, and the ratios (when the part ran)."""
    part = _part(results)
    if part is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = part["configs"]
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.6))
    names = [_clients(row).replace(" + ", "\n+ ") for row in configs]
    values = [row["cpu_us_per_result"] or math.nan for row in configs]
    low = [v - row["cpu_us_per_result_range"][0] for v, row in zip(values, configs, strict=True)]
    high = [row["cpu_us_per_result_range"][1] - v for v, row in zip(values, configs, strict=True)]
    colors = ["#1b7837" if list(row["clients"]) == ["full"] else "#2166ac" for row in configs]
    axes[0].bar(range(len(configs)), values, yerr=[low, high], color=colors, capsize=3)
    axes[0].set_xticks(range(len(configs)), names, fontsize=6.5)
    axes[0].set_ylabel("gateway CPU µs per published result")
    axes[0].set_title("Gateway CPU per result (median, range)")
    axes[0].grid(axis="y", alpha=0.3)
    summary = part.get("summary", {})
    keys = [
        ("with_over_without", "full + filtered\n/ full alone"),
        ("alone_over_full", "filtered alone\n/ full alone"),
        ("marginal", "one filtered client\n/ one full"),
    ]
    width = 0.38
    for offset, (flavour, color) in ((-width / 2, ("events", "#7fbc41")), (width / 2, ("capped", "#e08214"))):
        meds, errs_low, errs_high = [], [], []
        for key, _ in keys:
            entry = summary.get(f"{flavour}_{key}")
            med = entry["median"] if entry else math.nan
            meds.append(med)
            errs_low.append(med - entry["min"] if entry else 0)
            errs_high.append(entry["max"] - med if entry else 0)
        axes[1].bar(
            [i + offset for i in range(len(keys))],
            meds,
            width,
            yerr=[errs_low, errs_high],
            capsize=3,
            color=color,
            label=_NAMES[flavour],
        )
    axes[1].axhline(1.0, color="#555555", linewidth=0.8)
    axes[1].set_xticks(range(len(keys)), [label for _, label in keys], fontsize=8)
    axes[1].set_title("Ratios (median of the rounds, range)")
    axes[1].legend(fontsize=8)
    axes[1].grid(axis="y", alpha=0.3)
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(directory / PLOT, dpi=110)
    plt.close(fig)
