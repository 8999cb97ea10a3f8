"""The report's distance to the cost floor: the issue's fast-path ratios, and the profile.

Every ratio is taken between two strategies of the same run (same machine,
same minute, same load clients), which is what survives a shared, noisy
machine; nothing here measures anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["TARGETS", "profile_section", "ratio_section", "ratios"]

_X = "\u00d7"  # multiplication sign
_NONE = "\u2013"  # en dash: no value

# (key, what, numerator phase and figure, baseline strategy, baseline phase and figure, at most)
TARGETS: tuple[tuple[str, str, tuple[str, ...], str, tuple[str, ...], float], ...] = (
    (
        "cpu_saturated_vs_floor_socket",
        "CPU per delivery, saturated, vs floor-socket",
        ("saturation", "server_cpu_us_per_delivery"),
        "floor-socket",
        ("saturation", "server_cpu_us_per_delivery"),
        1.15,
    ),
    (
        "cpu_rate_vs_floor_transport",
        "CPU per delivery at the latency rate, vs floor-transport",
        ("latency", "server_cpu_us_per_delivery"),
        "floor-transport",
        ("latency", "server_cpu_us_per_delivery"),
        1.20,
    ),
    (
        "cpu_saturated_vs_broadcast",
        "CPU per delivery, saturated, vs `broadcast()`",
        ("saturation", "server_cpu_us_per_delivery"),
        "broadcast",
        ("saturation", "server_cpu_us_per_delivery"),
        0.70,
    ),
    (
        "p99_rate_vs_floor_transport",
        "p99 capture→client latency at the latency rate, vs floor-transport",
        ("latency", "latency_ms", "p99"),
        "floor-transport",
        ("latency", "latency_ms", "p99"),
        1.10,
    ),
)
"""The issue's targets for the fast path, as ratios between two strategies of one run."""

# Strategies whose distance to the floor the table shows, the gateway's own first.
_SUBJECTS = ("framecast", "framecast-noprobe")

# Share of the latency phase spent waiting for a CPU above which its p99 is the machine's, not the code's.
_NOISY = 0.10

# Frames on (nearly) every stack: the interpreter's and the event loop's, not the fan-out's.
_SCAFFOLDING = 0.9

Lookup = Callable[[str, int], dict[str, Any] | None]


def _get(entry: dict[str, Any] | None, path: tuple[str, ...]) -> float | None:
    node: Any = entry
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def ratios(find: Lookup, strategy: str, clients: int) -> dict[str, dict[str, Any]]:
    """Each target's figures for ``strategy`` at ``clients``: value, baseline, ratio, limit, met."""
    out: dict[str, dict[str, Any]] = {}
    subject = find(strategy, clients)
    for key, _, path, base_name, base_path, limit in TARGETS:
        value, base = _get(subject, path), _get(find(base_name, clients), base_path)
        ratio = value / base if value is not None and base else None
        out[key] = {
            "value": value,
            "baseline": base,
            "ratio": ratio,
            "limit": limit,
            "met": None if ratio is None else ratio <= limit,
        }
    return out


def _cell(figures: dict[str, Any], unit: str) -> str:
    ratio = figures["ratio"]
    if ratio is None:
        return _NONE
    limit = figures["limit"]
    verdict = "met" if figures["met"] else f"**missed by {ratio / limit - 1:.0%}**"
    return f"{ratio:.2f}{_X} ({figures['value']:.1f} vs {figures['baseline']:.1f} {unit}): {verdict}"


def _waited(entry: dict[str, Any] | None) -> float | None:
    """Share of the latency phase the gateway spent ready to run with no CPU to run on."""
    wait, seconds = _get(entry, ("latency", "server_run_queue_wait_s")), _get(entry, ("latency", "seconds"))
    return wait / seconds if wait is not None and seconds else None


def _wait_note(find: Lookup, subjects: list[str], focus: int) -> list[str]:
    waits = {name: _waited(find(name, focus)) for name in [*subjects, "floor-transport"]}
    known = {name: w for name, w in waits.items() if w is not None}
    if not known:
        return []
    listed = ", ".join(f"`{name}` {w:.0%}" for name, w in known.items())
    worst = max(known.values())
    caution = (
        f" Above {_NOISY:.0%}, a p99 says more about the machine's other work than about the strategy: "
        "read the latency row of this run as unreliable and rerun it on a quieter machine; the CPU rows "
        "hold (CPU time is counted only while the gateway runs)."
        if worst > _NOISY
        else ""
    )
    return [f"During the latency phase the gateway waited for a CPU: {listed}.{caution}", ""]


def ratio_section(find: Lookup, clients: list[int], *, caption: str, rate: float) -> list[str]:
    """The issue's fast-path targets side by side, at 1000 clients (or the largest count run)."""
    if not clients:
        return []
    focus = 1000 if 1000 in clients else clients[-1]
    subjects = [s for s in _SUBJECTS if find(s, focus) is not None]
    if not subjects or find("floor-socket", focus) is None or find("floor-transport", focus) is None:
        return []
    table = {s: ratios(find, s, focus) for s in subjects}
    header = ["Target", "Wanted", *[f"`{s}`" for s in subjects]]
    rows = []
    for key, what, path, *_, limit in TARGETS:
        unit = "ms" if path[-1] == "p99" else "µs"
        rows.append([what.replace("the latency rate", f"{rate:.0f} results/s"), f"≤ {limit:.2f}{_X}"])
        rows[-1] += [_cell(table[s][key], unit) for s in subjects]
    lines = [
        f"## Distance to the cost floor ({focus} clients)",
        "",
        "Two strategies do nothing but write: **floor-transport** frames each message once by hand "
        "(`websockets.frames.Frame(...).serialize(mask=False)`) and `transport.write()`s it to every "
        "connection; **floor-socket** writes the same frame with each connection's raw non-blocking "
        "`socket.send()`, handing the transport only what the kernel did not take. No state check, no "
        "backpressure, no policy: what fan-out cannot do for less on this interpreter and loop. The ratios "
        "below are the issue's targets for framecast's fast path, each between two strategies of this run. "
        "framecast writes like floor-socket: its write rule (`gateway/policy/writer.py`) is one flat pass "
        "over the audience with one flag test and one call per ready client (`gateway/_wsio.py`, "
        "`WsSink.offer`: the state check and the raw `socket.send()` while the transport holds nothing); "
        "`framecast-noprobe` is the same with its lag probes off.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *["| " + " | ".join(row) + " |" for row in rows],
        "",
        *_wait_note(find, subjects, focus),
        f"_{caption}_",
        "",
    ]
    return lines


def profile_section(profile: dict[str, Any] | None, *, top: int = 12) -> list[str]:
    """Where the gateway's time goes: py-spy's top functions, linking the flamegraph and full summary."""
    if not profile or "self" not in profile:
        return []
    rows = [
        f"| {row['share']:.1%} | `{row['function']}` |" for row in profile["self"][:top] if row["samples"]
    ]
    # The event loop's own frames are under every sample: show what lies below them.
    inclusive = [
        f"| {row['share']:.1%} | `{row['function']}` |"
        for row in profile["total"]
        if row["samples"] and row["share"] < _SCAFFOLDING
    ][:top]
    return [
        f"### Where the gateway's time goes ({profile['strategy']}, {profile['clients']} clients, saturated)",
        "",
        f"`py-spy record` sampled the bench gateway at {profile['rate_hz']} Hz for {profile['seconds']} s "
        f"({profile['samples']} samples{', native frames included' if profile.get('native') else ''}) "
        "while it fanned out as fast as it could. py-spy sees no kernel frames: time in a system call shows "
        "as its C library function (`send`, with native frames) or else as the Python function that made "
        "it; on loopback that time includes the receiving side's TCP work. "
        f"Flamegraph: [perf/{profile['svg']}](perf/{profile['svg']}); "
        f"full summary: [perf/{profile['text']}](perf/{profile['text']}).",
        "",
        "| Own time | Function (leaf frame) |",
        "|---|---|",
        *rows,
        "",
        f"| Inclusive time (frames under less than {_SCAFFOLDING:.0%} of the samples) | Function |",
        "|---|---|",
        *inclusive,
        "",
        f"_{profile.get('machine', '')}_",
        "",
    ]
