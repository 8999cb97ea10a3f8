"""Part 2: the real topology, Redis → 1, 2, 4 gateways → nginx → clients.

The stack is :func:`framecast.local.up.running` (valkey, N real ``python -m gateway``
processes, nginx) with no producer: the benchmark publishes the results itself,
so it knows each one's capture time and sequence. Every gateway gets the 1 ms
loop-lag probe through a ``sitecustomize`` module put on its ``PYTHONPATH``
(:func:`bench.probe.install_from_env`); nothing in the gateway changes.

Phases, for each gateway count:

* **latency**: ``rate`` results/s.
* **burst**: a backlog of results published back to back (Redis delivers them to
  each gateway at once): the gateways' loop lag shows whether they starve.
* **saturation**: results published faster than the machine can deliver them
  (last, because the backlog it leaves in socket buffers would delay the others).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
from prometheus_client.parser import text_string_to_metric_families

from bench import machine
from bench.load import Load, Records
from bench.payload import Payload
from bench.probe import ENV_DIR, read_samples
from bench.procs import BenchError, Children, child_env
from bench.stats import Snapshot, percentiles, snapshot
from framecast import wire

__all__ = ["TopologyOptions", "run"]

STREAM = "bench"


@dataclass(frozen=True, kw_only=True)
class TopologyOptions:
    """What part 2 runs (see ``python -m bench --help``)."""

    gateways: tuple[int, ...] = (1, 2, 4)
    clients: int = 1000
    processes: int = 2
    warmup: float = 1.0
    saturation: float = 4.0
    saturation_deliveries: float = 300_000.0
    saturation_rate_max: float = 1000.0
    latency: float = 5.0
    rate: float = 30.0
    burst: int = 200
    burst_window: float = 3.0
    settle: float = 1.0


class _Publisher:
    """Publishes bench results (and a producer's heartbeats) on the stream's channel."""

    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)
        self._payload = Payload(stream=STREAM, epoch="bench")
        self._channel = wire.channel(STREAM)
        self.seq = 0
        self._next_status = 0.0

    def close(self) -> None:
        self._redis.close()

    def _status(self, now: float) -> None:
        if now >= self._next_status:
            self._next_status = now + 0.5
            status = wire.Status(stream=STREAM, epoch="bench", seq=self.seq, sent_at=time.time())
            self._redis.publish(self._channel, wire.encode(status))

    def publish(self, seconds: float, rate: float) -> tuple[int, int]:
        """Publish ``rate`` results/s for ``seconds``; returns the first and last ``seq``."""
        first = self.seq + 1
        start = time.monotonic()
        total = max(1, round(seconds * rate))
        for index in range(total):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._status(time.monotonic())
            self.seq += 1
            now = time.time()
            self._redis.publish(self._channel, self._payload.make(self.seq, now, now))
        return first, self.seq

    def burst(self, count: int) -> tuple[int, int]:
        """Publish ``count`` results back to back (one pipeline round trip)."""
        first = self.seq + 1
        pipe = self._redis.pipeline(transaction=False)
        for _ in range(count):
            self.seq += 1
            now = time.time()
            pipe.publish(self._channel, self._payload.make(self.seq, now, now))
        pipe.execute()
        return first, self.seq

    def heartbeat_for(self, seconds: float) -> None:
        """Keep the stream alive (heartbeats only) for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._status(time.monotonic())
            time.sleep(0.05)


def _subscriptions(port: int) -> int:
    with (
        contextlib.suppress(OSError, ValueError),
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response,
    ):
        for family in text_string_to_metric_families(response.read().decode()):
            if family.name == "framecast_gateway_subscriptions":
                return int(sum(sample.value for sample in family.samples))
    return 0


def _wait_subscribed(ports: list[int], clients: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    total = 0
    for _ in range(int(timeout / 0.1) + 1):
        total = sum(_subscriptions(port) for port in ports)
        if total >= clients or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if total < clients:
        raise BenchError(f"only {total} of {clients} clients subscribed on the gateways")


@dataclass
class _Phase:
    name: str
    first: int
    last: int
    start: float
    end: float
    before: Snapshot
    after: Snapshot
    rate: float
    wall_start: float
    wall_end: float


def _analyse(phase: _Phase, records: Records, gateways: dict[str, int], probe_dir: Path) -> dict[str, Any]:
    usage = phase.before.delta(phase.after)
    wall = phase.end - phase.start
    mask = records.between(phase.first, phase.last)
    delivered = int(mask.sum())
    # The rate counts what arrived while results were being published, not the tail after it.
    during = mask & (records.received >= phase.wall_start) & (records.received <= phase.wall_end)
    publish_wall = phase.wall_end - phase.wall_start
    expected = (phase.last - phase.first + 1) * records.connections
    names = np.asarray(records.conn_gateway, dtype=object)
    per_gateway = []
    for name, pid in gateways.items():
        conns = np.flatnonzero(names == name)
        got = int(np.isin(records.conn[mask], conns).sum()) if conns.size else 0
        cpu = usage[name]["cpu"]
        lags = read_samples(probe_dir / f"lag-{pid}.bin", phase.start, phase.end)
        per_gateway.append(
            {
                "gateway": name,
                "clients": int(conns.size),
                "delivered": got,
                "cpu_s": cpu,
                "core_share": round(cpu / usage["wall"], 3) if usage["wall"] else None,
                "cpu_us_per_delivery": round(cpu / got * 1e6, 3) if got else None,
                "run_queue_wait_s": usage[name]["run_delay"],
                "loop_lag_ms": percentiles(lags, scale=1e3),
            }
        )

    def per_delivery(group: str) -> float | None:
        return round(usage[group]["cpu"] / delivered * 1e6, 3) if delivered else None

    return {
        "phase": phase.name,
        "rate": phase.rate,
        "seconds": round(wall, 3),
        "published": phase.last - phase.first + 1,
        "delivered": delivered,
        "expected": expected,
        "loss": round(1 - delivered / expected, 5) if expected else None,
        "deliveries_per_s": round(int(during.sum()) / publish_wall, 1) if publish_wall > 0 else None,
        # From the first result published to the last one delivered: how long the phase's work lasted.
        "delivery_span_s": round(float(records.received[mask].max()) - phase.wall_start, 3)
        if delivered
        else None,
        "latency_ms": percentiles(records.latency_ms(mask)),
        "gateways": per_gateway,
        "gateway_cpu_us_per_delivery": per_delivery("all_gateways"),
        "nginx_cpu_us_per_delivery": per_delivery("nginx"),
        "valkey_cpu_us_per_delivery": per_delivery("valkey"),
        "client_cpu_us_per_delivery": per_delivery("clients"),
        "client_cores_used": round(usage["clients"]["cpu"] / usage["wall"], 3) if usage["wall"] else None,
        "nginx_cores_used": round(usage["nginx"]["cpu"] / usage["wall"], 3) if usage["wall"] else None,
    }


def _one(count: int, options: TopologyOptions, say: Callable[[str], None]) -> dict[str, Any]:
    from framecast.local.up import running

    with tempfile.TemporaryDirectory(prefix="framecast-bench-probe-") as probe_dir:
        probe = Path(probe_dir)
        (probe / "sitecustomize.py").write_text(
            "from bench.probe import install_from_env\n\ninstall_from_env()\n"
        )
        env = child_env({ENV_DIR: probe_dir})
        env["PYTHONPATH"] = probe_dir + ":" + env["PYTHONPATH"]
        with (
            running(gateways=count, port=0, producer=False, env=env, log_level="WARNING") as stack,
            Children() as children,
        ):
            gateway_pids = {}
            for child in stack.gateways:
                assert child.process is not None
                gateway_pids[child.name] = child.process.pid
            nginx = stack.children["nginx"].process
            valkey = stack.children["valkey"].process
            assert nginx is not None and valkey is not None
            publisher = _Publisher(stack.redis_url)
            try:
                publisher.heartbeat_for(0.6)
                load = Load(
                    children,
                    url=stack.ws_url(STREAM),
                    connections=options.clients,
                    processes=options.processes,
                )
                _wait_subscribed([c.port for c in stack.gateways if c.port], options.clients)
                groups: dict[str, list[int]] = {
                    **{name: [pid] for name, pid in gateway_pids.items()},
                    "all_gateways": list(gateway_pids.values()),
                    "nginx": machine.tree(nginx.pid),
                    "valkey": [valkey.pid],
                    "clients": load.pids,
                }
                publisher.publish(options.warmup, options.rate)
                # Offered well above what the machine can deliver, within what one publisher can send.
                saturation_rate = min(
                    options.saturation_rate_max, options.saturation_deliveries / options.clients
                )
                phases = []
                # Saturation last: the backlog it leaves in socket buffers would delay the others.
                for name, seconds, rate in (
                    ("latency", options.latency, options.rate),
                    ("burst", 0.0, 0.0),
                    ("saturation", options.saturation, saturation_rate),
                ):
                    before = snapshot(groups)
                    start, wall_start = time.monotonic(), time.time()
                    if name == "burst":
                        first, last = publisher.burst(options.burst)
                    else:
                        first, last = publisher.publish(seconds, rate)
                    wall_end = time.time()
                    # Let what was published arrive (or go stale) before the phase is closed.
                    publisher.heartbeat_for(options.burst_window if name == "burst" else options.settle)
                    end = time.monotonic()
                    if name == "burst":
                        wall_end = time.time()
                    phases.append(
                        _Phase(
                            name,
                            first,
                            last,
                            start,
                            end,
                            before,
                            snapshot(groups),
                            rate,
                            wall_start,
                            wall_end,
                        )
                    )
                records = load.finish(stop=True)
            finally:
                publisher.close()
            names = {name: name for name in gateway_pids}
            seen = set(records.conn_gateway) - {""}
            if seen - set(names):
                # Gateways name themselves with --id, which framecast.local.up sets to the child's name.
                say(f"topology: unexpected gateway ids {sorted(seen - set(names))}")
            results = [_analyse(p, records, gateway_pids, probe) for p in phases]
    return {"gateways": count, "clients": options.clients, "phases": {r["phase"]: r for r in results}}


def run(options: TopologyOptions, *, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Run part 2; returns one entry per gateway count."""
    results = []
    for count in options.gateways:
        say(f"topology: {count} gateway(s), {options.clients} clients through nginx")
        try:
            entry = _one(count, options, say)
        except (BenchError, OSError, RuntimeError) as exc:
            say(f"topology: {count} gateway(s) failed: {exc}")
            entry = {"gateways": count, "clients": options.clients, "error": str(exc)}
        results.append(entry)
        if "phases" in entry:
            sat, lat, burst = (entry["phases"][k] for k in ("saturation", "latency", "burst"))
            lags = [g["loop_lag_ms"]["max"] for g in burst["gateways"] if g["loop_lag_ms"]["max"] is not None]
            say(
                f"  saturation {sat['deliveries_per_s']:.0f}/s, gateways "
                f"{sat['gateway_cpu_us_per_delivery']} µs/delivery, nginx {sat['nginx_cpu_us_per_delivery']} "
                f"µs/delivery; latency p99 {lat['latency_ms']['p99']} ms; burst loop lag max "
                f"{max(lags, default=0):.1f} ms"
            )
    return results
