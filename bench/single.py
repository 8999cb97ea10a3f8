"""Part 1: fan-out strategies inside one gateway process.

For each client count and strategy, one ``bench.server`` process and its load
clients run three phases, then a second server runs the stalled-clients phase:

* **saturation**: results fanned out as fast as the loop allows; deliveries/s,
  CPU µs per delivery (gateway and clients, from ``/proc/<pid>/stat``).
* **latency**: ``rate`` results/s; capture→client latency and event-loop lag.
* **stall**: the same rate with 10% of the clients never reading; gateway RSS
  growth, the other clients' latency and loss, what the server did with the
  stalled ones.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.load import Load, Records
from bench.procs import BenchError, Children, read_json_line
from bench.stats import Snapshot, percentiles, snapshot

__all__ = ["SingleOptions", "run"]


@dataclass(frozen=True, kw_only=True)
class SingleOptions:
    """What part 1 runs (see ``python -m bench --help``)."""

    clients: tuple[int, ...] = (100, 1000, 5000)
    strategies: tuple[str, ...] = ("framecast", "broadcast", "sequential", "tasks")
    processes: int = 2
    warmup: float = 0.5
    saturation: float = 3.0
    latency: float = 5.0
    rate: float = 30.0
    stall: float = 12.0
    stall_fraction: float = 0.1
    stall_deliveries: float = 30000.0
    stall_rate_max: float = 300.0
    stall_sndbuf: int = 8192
    stall_client_buffer: int = 32768
    stall_max_lag: float = 3.0
    windows: int = 3
    server_cpus: tuple[int, ...] = ()
    client_cpus: tuple[int, ...] = ()


class _Server:
    """A ``bench.server`` child and its command channel."""

    def __init__(
        self, children: Children, strategy: str, extra: list[str], *, cpus: tuple[int, ...] = ()
    ) -> None:
        self.process = children.python(
            "bench.server", ["--strategy", strategy, *extra], stdin=True, cpus=cpus
        )
        self.name = f"bench server ({strategy})"
        self.port = int(read_json_line(self.process, 20, self.name)["port"])

    def ask(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(command) + "\n")
            stdin.flush()
        except OSError as exc:
            raise BenchError(f"{self.name}: cannot send a command: {exc}") from None
        return read_json_line(self.process, timeout, self.name)

    def wait_for(self, connections: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        seen = 0
        for _ in range(int(timeout / 0.05) + 1):
            seen = int(self.ask({"cmd": "count"}, 10)["connections"])
            if seen >= connections or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if seen < connections:
            raise BenchError(f"{self.name}: {seen} of {connections} connections registered")

    def run(self, seconds: float, rate: float) -> dict[str, Any]:
        return self.ask({"cmd": "run", "seconds": seconds, "rate": rate}, seconds * 3 + 30)

    def quit(self) -> None:
        try:
            self.ask({"cmd": "quit"}, 20)
            self.process.wait(timeout=20)
        except (BenchError, subprocess.TimeoutExpired):
            pass


def _phase(
    server: _Server, load: Load, seconds: float, rate: float
) -> tuple[dict[str, Any], Snapshot, Snapshot]:
    groups = {"server": [server.process.pid], "clients": load.pids}
    before = snapshot(groups)
    reply = server.run(seconds, rate)
    after = snapshot(groups)
    return reply, before, after


def _analyse(
    name: str, reply: dict[str, Any], before: Snapshot, after: Snapshot, records: Records, readers: int
) -> dict[str, Any]:
    usage = before.delta(after)
    mask = records.between(int(reply["first_seq"]), int(reply["last_seq"])) & records.healthy()
    delivered = int(mask.sum())
    expected = int(reply["generated"]) * readers
    wall = float(reply["wall"])
    server_cpu = usage["server"]["cpu"]
    client_cpu = usage["clients"]["cpu"]
    lags = np.asarray(reply.get("lag_samples", []), dtype=np.float64)
    per_conn = np.bincount(records.conn[mask], minlength=records.connections)
    healthy_conns = [i for i in range(records.connections) if i not in records.stalled]
    starved = int(np.sum(per_conn[healthy_conns] == 0)) if expected else 0
    return {
        "phase": name,
        "rate": reply.get("rate"),
        "seconds": round(wall, 3),
        "generated": reply["generated"],
        "fanned_out": reply["fanned_out"],
        "backlog": reply["backlog"],
        "delivered": delivered,
        "expected": expected,
        "loss": round(1 - delivered / expected, 5) if expected else None,
        "clients_without_any": starved,
        "deliveries_per_s": round(delivered / wall, 1) if wall else None,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_delivery": round(server_cpu / delivered * 1e6, 3) if delivered else None,
        "server_user_us_per_delivery": round(usage["server"]["user"] / delivered * 1e6, 3)
        if delivered
        else None,
        "server_core_share": round(server_cpu / usage["wall"], 3) if usage["wall"] else None,
        "server_run_queue_wait_s": usage["server"]["run_delay"],
        "client_cpu_s": client_cpu,
        "client_cpu_us_per_delivery": round(client_cpu / delivered * 1e6, 3) if delivered else None,
        "client_cores_used": round(client_cpu / usage["wall"], 3) if usage["wall"] else None,
        "server_rss_before": usage["server"]["rss_before"],
        "server_rss_after": usage["server"]["rss_after"],
        "latency_ms": percentiles(records.latency_ms(mask)),
        "loop_lag_ms": percentiles(lags, scale=1e3),
        "gc": {k: reply.get(k) for k in ("gc_pauses", "gc_max", "gc_total", "gc_gen2")},
        "server": {
            k: reply.get(k)
            for k in ("buffered_clients", "buffered_bytes", "closed", "lagging", "slow_closes", "drops")
        },
    }


def _merge(
    runs: list[tuple[dict[str, Any], Snapshot, Snapshot]],
) -> tuple[dict[str, Any], Snapshot, Snapshot]:
    """One phase made of consecutive runs: totals over all of them."""
    replies = [reply for reply, _, _ in runs]
    merged = dict(replies[-1])
    merged["first_seq"] = replies[0]["first_seq"]
    for key in ("generated", "fanned_out", "backlog", "wall", "closed"):
        merged[key] = sum(r[key] for r in replies)
    merged["lag_samples"] = [lag for r in replies for lag in r["lag_samples"]]
    return merged, runs[0][1], runs[-1][2]


def _normal(strategy: str, clients: int, options: SingleOptions) -> list[dict[str, Any]]:
    with Children() as children:
        server = _Server(children, strategy, [], cpus=options.server_cpus)
        load = Load(
            children,
            url=f"ws://127.0.0.1:{server.port}/",
            connections=clients,
            processes=options.processes,
            cpus=options.client_cpus,
            nice=0 if options.client_cpus else 5,
        )
        server.wait_for(clients)
        server.run(options.warmup, options.rate)
        # Saturation in several windows: a neighbour's burst of CPU spoils one window, not the figure.
        windows = [
            _phase(server, load, options.saturation / options.windows, 0) for _ in range(options.windows)
        ]
        latency = _phase(server, load, options.latency, options.rate)
        server.quit()
        records = load.finish()
    reply, before, after = _merge(windows)
    reply["rate"] = 0
    saturation = _analyse("saturation", reply, before, after, records, clients)
    parts = [_analyse("saturation", r, b, a, records, clients) for r, b, a in windows]
    for key in ("server_cpu_us_per_delivery", "server_user_us_per_delivery", "client_cpu_us_per_delivery"):
        values = [p[key] for p in parts if p[key] is not None]
        if values:
            # The median of the windows: robust to one window disturbed by other work on the machine.
            saturation[key] = round(float(np.median(values)), 3)
        saturation[f"{key}_windows"] = values
    latency[0]["rate"] = options.rate
    return [saturation, _analyse("latency", *latency, records, clients)]


def _stalled(strategy: str, clients: int, options: SingleOptions) -> dict[str, Any]:
    stalled = max(1, round(clients * options.stall_fraction))
    readers = clients - stalled
    # Fast enough to fill the stalled clients' buffers within the run, yet within one process's reach.
    rate = min(options.stall_rate_max, max(options.rate, options.stall_deliveries / clients))
    extra = [
        "--sndbuf",
        str(options.stall_sndbuf),
        "--client-buffer",
        str(options.stall_client_buffer),
        "--max-lag",
        str(options.stall_max_lag),
    ]
    with Children() as children:
        server = _Server(children, strategy, extra, cpus=options.server_cpus)
        load = Load(
            children,
            url=f"ws://127.0.0.1:{server.port}/",
            connections=readers,
            processes=options.processes,
            stalled=stalled,
            cpus=options.client_cpus,
            nice=0 if options.client_cpus else 5,
        )
        server.wait_for(clients)
        server.run(options.warmup, rate)
        reply, before, after = _phase(server, load, options.stall, rate)
        load.stop_stalled()
        server.quit()
        records = load.finish()
    reply["rate"] = rate
    result = _analyse("stall", reply, before, after, records, readers)
    staller = next((s for s in records.summaries if s.get("stall")), {})
    growth = result["server_rss_after"] - result["server_rss_before"]
    result.update(
        {
            "stalled": stalled,
            "readers": readers,
            "stalled_closed_by_server": staller.get("closed_by_peer", 0),
            "stalled_close_codes": staller.get("close_codes", {}),
            "server_rss_growth": growth,
            "rss_growth_per_stalled_client": round(growth / stalled),
            "sndbuf": options.stall_sndbuf,
            "client_buffer": options.stall_client_buffer if strategy == "framecast" else None,
            "max_lag": options.stall_max_lag if strategy == "framecast" else None,
        }
    )
    return result


def run(options: SingleOptions, *, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Run part 1; returns one entry per (clients, strategy) with its phases."""
    results = []
    for clients in options.clients:
        for strategy in options.strategies:
            say(f"fan-out: {strategy} to {clients} clients")
            entry: dict[str, Any] = {"strategy": strategy, "clients": clients}
            try:
                saturation, latency = _normal(strategy, clients, options)
                entry.update(saturation=saturation, latency=latency)
                if options.stall > 0:
                    entry["stall"] = _stalled(strategy, clients, options)
            except BenchError as exc:
                say(f"fan-out: {strategy} to {clients} clients failed: {exc}")
                entry["error"] = str(exc)
            results.append(entry)
            _summarise(entry, say)
    return results


def _summarise(entry: dict[str, Any], say: Callable[[str], None]) -> None:
    if "error" in entry:
        return
    sat, lat = entry["saturation"], entry["latency"]
    line = (
        f"  saturation {sat['deliveries_per_s']:.0f}/s, "
        f"gateway {sat['server_cpu_us_per_delivery']} µs/delivery, "
        f"client {sat['client_cpu_us_per_delivery']} µs/delivery; "
        f"latency p99 {lat['latency_ms']['p99']} ms, loop lag p99 {lat['loop_lag_ms']['p99']} ms "
        f"max {lat['loop_lag_ms']['max']} ms"
    )
    if "stall" in entry:
        st = entry["stall"]
        line += (
            f"; stalled: RSS {st['server_rss_growth'] / 1e6:+.1f} MB, "
            f"others p99 {st['latency_ms']['p99']} ms, "
            f"loss {st['loss']:.1%}"
        )
    say(line)
