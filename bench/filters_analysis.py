"""Part 7's figures from its windows: per configuration, per round, and the capped clients' cap.

See :mod:`bench.filters` for what the windows are; this module only reads them.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.load import Records

if TYPE_CHECKING:
    from bench.filters import FiltersOptions

__all__ = ["analyse", "cap_check", "configs", "line"]


def cap_check(records: Records, connections: int, cap: float) -> dict[str, Any]:
    """Per capped client: did it get more than ``cap`` results/s?

    The gateway writes the latest result at subscribe time free of the cap, then decides the
    others at least ``1 / cap`` s apart: results 2..n need ``(n - 2) / cap`` s between the
    decision for the second and the one for the last. The second was decided after it was
    published (its ``captured_at``) and the last before it was received, both on this machine's
    clock, so ``n - 2 <= cap * (received[n] - captured[2])`` whatever delayed the writes or the
    reads: no slack needed. ``max_results_per_s`` is the plain rate between the receipts.
    """
    order = np.lexsort((records.received, records.conn))  # stable: arrival order per connection
    conns, times, captured = records.conn[order], records.received[order], records.captured[order]
    over = 0
    worst = 0.0
    starts = np.searchsorted(conns, np.arange(connections))
    ends = np.searchsorted(conns, np.arange(connections), side="right")
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        n = end - start
        if n < 3:
            continue
        if n - 2 > cap * float(times[end - 1] - captured[start + 1]) + 1e-6:
            over += 1
        span = float(times[end - 1] - times[start + 1])
        if span > 0:
            worst = max(worst, (n - 2) / span)
    return {"clients_over_cap": over, "max_results_per_s": round(worst, 3)}


def _deliveries(window: dict[str, Any]) -> dict[str, int]:
    """Results each flavour received of those published in the window."""
    out: dict[str, int] = {}
    for group in window.pop("_groups"):
        records = group.records
        assert records is not None, "a window's groups are finished before it is analysed"
        mask = records.between(window["first_seq"], window["last_seq"])
        out[group.flavour] = out.get(group.flavour, 0) + int(mask.sum())
    return out


def analyse(windows: list[dict[str, Any]], options: FiltersOptions) -> dict[str, Any]:
    """Per window its figures; per round the ratios; over the rounds their median and range."""
    n, m = options.full, options.filtered
    for window in windows:
        deliveries = _deliveries(window)
        window["deliveries"] = deliveries
        total = sum(deliveries.values())
        published = window["published"]
        window["cpu_us_per_result"] = round(window["cpu_s"] / published * 1e6, 2) if published else None
        window["cpu_us_per_delivery"] = round(window["cpu_s"] / total * 1e6, 3) if total else None
        window["cpu_share"] = round(window["cpu_s"] / window["seconds"], 4)
        window["run_queue_wait_share"] = round(window["run_queue_wait_s"] / window["seconds"], 4)
        # Per second of the stream (published / rate), not of the window: a window holds a whole
        # number of results, which is up to 1/rate s off its length.
        stream_seconds = published / options.rate
        window["results_per_client_s"] = {
            flavour: round(count / window["clients"][flavour] / stream_seconds, 3) if published else None
            for flavour, count in deliveries.items()
        }
        window["expected_full"] = published * window["clients"].get("full", 0)
    rounds = sorted({w["round"] for w in windows})
    per_round: list[dict[str, float]] = []
    for r in rounds:
        mine = [w for w in windows if w["round"] == r]
        if any(w["cpu_us_per_result"] is None for w in mine):
            continue  # a window where nothing was published (the publisher starved): no ratio
        base = [w["cpu_us_per_result"] for w in mine if w["config"] == "full"]
        figures: dict[str, float] = {}
        for flavour in ("events", "capped"):
            at = next(i for i, w in enumerate(mine) if w["config"] == f"full+{flavour}")
            # The mean of the N-full windows on either side of the mixed one.
            around = statistics.fmean([mine[at - 1]["cpu_us_per_result"], mine[at + 1]["cpu_us_per_result"]])
            mix = mine[at]["cpu_us_per_result"]
            alone = next(w for w in mine if w["config"] == flavour)["cpu_us_per_result"]
            full_m = next((w for w in mine if w["config"] == "full-m"), None)
            full_alone = full_m["cpu_us_per_result"] if full_m else statistics.fmean(base)
            figures[f"{flavour}_with_over_without"] = mix / around
            figures[f"{flavour}_alone_over_full"] = alone / full_alone
            figures[f"{flavour}_marginal"] = ((mix - around) / m) / (around / n)
        figures["full_us_per_result"] = statistics.fmean(base)
        figures.update(_per_delivery(mine))
        per_round.append(figures)
    summary: dict[str, Any] = {}
    for key in per_round[0] if per_round else ():
        values = [f[key] for f in per_round if math.isfinite(f[key])]
        if not values:
            continue
        summary[key] = {
            "median": round(statistics.median(values), 4),
            "min": round(min(values), 4),
            "max": round(max(values), 4),
            "rounds": [round(v, 4) for v in values],
        }
    return {"summary": summary, "rounds": per_round}


def _per_delivery(mine: list[dict[str, Any]]) -> dict[str, float]:
    """One result delivery's CPU, to a capped client and to a full one, in one round.

    Over the events-only clients alone: the same number of clients, the same statuses and events,
    the same per-result work of the gateway; what is left is the results' delivery (for the capped
    clients, the timers and fan-outs of their caps too).
    """
    events = next(w for w in mine if w["config"] == "events")
    idle = events["cpu_s"] / events["seconds"]
    fulls = [w for w in mine if w["config"] == "full-m"] or [w for w in mine if w["config"] == "full"]
    capped = next(w for w in mine if w["config"] == "capped")

    def per_delivery(window: dict[str, Any], flavour: str) -> float:
        delivered = window["deliveries"].get(flavour, 0) / window["seconds"]
        return (window["cpu_s"] / window["seconds"] - idle) / delivered * 1e6 if delivered else math.nan

    full = statistics.fmean(per_delivery(w, "full") for w in fulls)
    capped_us = per_delivery(capped, "capped")
    return {
        "full_us_per_delivery": full,
        "capped_us_per_delivery": capped_us,
        "capped_delivery_over_full": capped_us / full,
    }


def _loss(windows: list[dict[str, Any]]) -> float | None:
    """The share of results published in the windows that the full subscribers did not get."""
    expected = sum(w["expected_full"] for w in windows)
    got = sum(w["deliveries"].get("full", 0) for w in windows)
    return round(1 - got / expected, 5) if expected else None


def configs(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: medians over its windows (every round)."""
    rows = []
    for name in dict.fromkeys(w["config"] for w in windows):
        mine = [w for w in windows if w["config"] == name]

        def med(key: str, mine: list[dict[str, Any]] = mine) -> float | None:
            values = [w[key] for w in mine if w[key] is not None]
            return round(statistics.median(values), 3) if values else None

        rates: dict[str, float] = {}
        for flavour in mine[0]["results_per_client_s"]:
            values = [w["results_per_client_s"][flavour] for w in mine]
            rates[flavour] = round(statistics.median(v for v in values if v is not None), 2)
        rows.append(
            {
                "config": name,
                "clients": mine[0]["clients"],
                "windows": len(mine),
                "cpu_us_per_result": med("cpu_us_per_result"),
                "cpu_us_per_result_range": [
                    min(w["cpu_us_per_result"] for w in mine),
                    max(w["cpu_us_per_result"] for w in mine),
                ],
                "cpu_us_per_delivery": med("cpu_us_per_delivery"),
                "cpu_share": med("cpu_share"),
                "results_per_client_s": rates,
                "full_loss": _loss(mine),
                "run_queue_wait_share": med("run_queue_wait_share"),
                # The gateway's counters per second of window (median): deliveries, fan-outs,
                # write batches per kind, drops per reason (conflated: newest-wins; stale: max-age).
                "gateway_per_s": {
                    key: round(statistics.median(w["gateway"].get(key, 0) / w["seconds"] for w in mine), 1)
                    for key in sorted({k for w in mine for k in w["gateway"]})
                },
            }
        )
    return rows


def line(row: dict[str, Any]) -> str:
    clients = " + ".join(f"{count} {flavour}" for flavour, count in row["clients"].items())
    rates = ", ".join(f"{flavour} {rate:g}/s" for flavour, rate in row["results_per_client_s"].items())
    per_delivery = row["cpu_us_per_delivery"]
    return (
        f"  {clients:>28}: {row['cpu_us_per_result']:9.1f} µs CPU/result, "
        f"{'-' if per_delivery is None else format(per_delivery, '.2f')} µs/delivery, "
        f"{row['cpu_share'] * 100:5.1f}% of a core; results per client: {rates}"
    )
