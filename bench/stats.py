"""Small summaries of measured samples, and the usage snapshots taken around a phase."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import machine

__all__ = ["Snapshot", "percentiles", "snapshot"]


def percentiles(values: npt.ArrayLike, *, scale: float = 1.0) -> dict[str, float | int | None]:
    """``{"n", "p50", "p99", "max"}`` of ``values`` times ``scale`` (None when there are none)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(array, [50, 99])
    return {
        "n": int(array.size),
        "p50": round(float(p50) * scale, 3),
        "p99": round(float(p99) * scale, 3),
        "max": round(float(array.max()) * scale, 3),
    }


def _run_delay(pid: int) -> float:
    """Seconds the process has waited on a run queue (CPU contention), from /proc/<pid>/schedstat."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass(frozen=True)
class Snapshot:
    """CPU, memory and run-queue wait of groups of processes at one instant."""

    at: float
    groups: dict[str, machine.Usage]
    run_delay: dict[str, float]

    def delta(self, later: Snapshot) -> dict[str, Any]:
        """CPU seconds used and RSS change per group between this snapshot and ``later``."""
        out: dict[str, Any] = {"wall": later.at - self.at}
        for name, usage in self.groups.items():
            after = later.groups[name]
            out[name] = {
                "cpu": round(after.cpu - usage.cpu, 3),
                "user": round(after.user - usage.user, 3),
                "rss_before": usage.rss,
                "rss_after": after.rss,
                "run_delay": round(later.run_delay[name] - self.run_delay[name], 4),
            }
        return out


def snapshot(groups: Mapping[str, Iterable[int]]) -> Snapshot:
    """Measure each named group of processes now."""
    lists = {name: list(pids) for name, pids in groups.items()}
    return Snapshot(
        at=time.monotonic(),
        groups={name: machine.usage(pids) for name, pids in lists.items()},
        run_delay={name: sum(_run_delay(pid) for pid in pids) for name, pids in lists.items()},
    )
