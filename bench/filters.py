"""Part 7: what the subscription filters cost a real gateway, beside full subscribers (issue 22).

One real valkey, one real gateway process (``python -m gateway``, pinned to one CPU when the
machine has two or more) and load clients (``bench.client``: raw sockets on one epoll, on the other
CPUs) on ``/ws/bench``, in three flavours:

* **full**: no filter, every message of the stream;
* **events-only**: ``?kinds=event,status`` (a dashboard that counts);
* **capped**: ``?max_rate=2`` (a phone or a wall display: at most 2 results/s, the newest).

The bench publishes the stream itself, for the whole part, like a producer at ``--max-fps 15``:
``rate`` results/s (the ~300 B result of the other parts), one status heartbeat and one line
``cross`` event each ``beat`` seconds (1 s: a producer's heartbeat). A window measures the
gateway's CPU (every thread's ``sum_exec_runtime`` from ``/proc/<pid>/task/*/schedstat``,
nanoseconds) and the results published in it; the clients count what they received.

Each round measures, with ``full`` (N) full subscribers connected throughout:
``N full | + M events-only | N full | + M capped | N full`` (the mixed windows swap places every
other round), then with nobody else connected ``M events-only`` and ``M capped`` alone (also
swapped every other round), and ``M full`` alone when M is not N. Joins and leaves happen
outside the windows. Per round:

* **with / without**: gateway CPU per result with the M filtered clients present over the mean of
  the ``N full`` windows around it: an upper bound of how much a full subscriber's cost grew (it
  includes the filtered clients' own cost);
* **filtered / full**: what M filtered clients cost alone over what M full ones cost, both with
  the gateway's fixed per-result work in (reading and parsing from Redis, once per result);
* **marginal**: ``(mixed - N full) / M`` per client over ``N full / N``: a filtered client's own
  cost as a fraction of a full subscriber's.

The report gives the median of the rounds and their range (the machine is shared).
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
from prometheus_client.parser import text_string_to_metric_families

from bench import filters_analysis, machine
from bench.load import Load, Records
from bench.payload import Payload
from bench.procs import BenchError, Children, start_valkey, wait_http
from framecast import wire
from framecast.local import launch
from framecast.local.embedded import free_port, wait_for_port

__all__ = ["FiltersOptions", "run"]

STREAM = "bench"
EPOCH = "bench"
MIN_EVENTS = 2
FLAVOURS = {"full": "", "events": "kinds=event,status", "capped": "max_rate={cap:g}"}


@dataclass(frozen=True, kw_only=True)
class FiltersOptions:
    """What part 7 runs (see ``python -m bench --help``)."""

    full: int = 1000
    filtered: int = 1000
    rate: float = 15.0
    cap: float = 2.0
    rounds: int = 3
    window: float = 8.0
    settle: float = 1.5
    beat: float = 1.0
    processes: int = 2
    server_cpus: tuple[int, ...] = ()
    client_cpus: tuple[int, ...] = ()


class _Stream(threading.Thread):
    """Publishes ``rate`` results/s, a status and a ``cross`` event each ``beat`` s, until stopped."""

    def __init__(self, url: str, rate: float, *, beat: float, max_seconds: float) -> None:
        super().__init__(name="bench-filters-publisher", daemon=True)
        self._redis = redis.Redis.from_url(url)
        self._payload = Payload(stream=STREAM, epoch=EPOCH)
        self._channel = wire.channel(STREAM)
        self._rate = rate
        self._beat = beat
        self._limit = int(max_seconds * rate) + 1
        self._halt = threading.Event()
        self.seq = 0  # results published so far (read by the harness: one int, GIL-safe)
        self.events = 0
        self.error: Exception | None = None

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        self._redis.close()

    def run(self) -> None:
        try:
            self._publish()
        except Exception as exc:  # reported by the harness, not lost with the thread
            self.error = exc

    def _publish(self) -> None:
        publish = self._redis.publish
        start = time.monotonic()
        beat = start
        for index in range(self._limit):
            delay = start + index / self._rate - time.monotonic()
            if delay < -1.0:  # a stall of the machine: carry on at the rate, not in a burst
                start -= delay
            elif delay > 0 and self._halt.wait(delay):
                return
            if self._halt.is_set():
                return
            now = time.time()
            if time.monotonic() >= beat:
                beat += self._beat
                self.events += 1
                event = wire.Event(
                    stream=STREAM, epoch=EPOCH, seq=self.events, kind="cross", track=self.events,
                    label="person", frame=self.seq, captured_at=now, published_at=now, line="door",
                    direction="in",
                )  # fmt: skip
                publish(self._channel, wire.encode(event))
                status = wire.Status(
                    stream=STREAM, epoch=EPOCH, seq=self.seq, sent_at=now, event_seq=self.events
                )
                publish(self._channel, wire.encode(status))
            self.seq += 1
            publish(self._channel, self._payload.make(self.seq, now, now))


def _schedstat(pid: int) -> tuple[float, float]:
    """CPU time and run-queue wait of every thread of ``pid``, in seconds: ``sum_exec_runtime`` in
    nanoseconds (the tick count of ``/proc/<pid>/stat`` is 10 ms coarse, a tenth of a small
    window's CPU) and the time its threads were ready to run but had no CPU."""
    ran = waited = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (task / "schedstat").read_text().split()
            ran += int(fields[0])
            waited += int(fields[1])
    if not ran:
        return machine.cpu_seconds(pid), 0.0
    return ran / 1e9, waited / 1e9


# The gateway's own counters read around each window (its /metrics): what it did in the window.
_COUNTERS = {
    "framecast_gateway_deliveries": "deliveries",
    "framecast_gateway_dropped": "dropped",
    "framecast_gateway_fanout_seconds": "fanouts",
    "framecast_gateway_write_latency_seconds": "write_batches",
}


def _metrics(port: int) -> tuple[int, dict[str, float]]:
    """The gateway's subscriptions, and its counters of :data:`_COUNTERS` (``name`` or ``name:label``)."""
    subscriptions = 0
    counters: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        for family in text_string_to_metric_families(reply.read().decode()):
            if family.name == "framecast_gateway_subscriptions":
                subscriptions = int(sum(sample.value for sample in family.samples))
            short = _COUNTERS.get(family.name)
            if short is None:
                continue
            for sample in family.samples:
                if sample.name.endswith(("_total", "_count")):
                    label = sample.labels.get("reason") or sample.labels.get("kind")
                    key = f"{short}:{label}" if label else short
                    counters[key] = counters.get(key, 0.0) + sample.value
    return subscriptions, counters


def _subscriptions(port: int) -> int:
    return _metrics(port)[0]


def _wait_subscriptions(port: int, expected: int, timeout: float = 60.0) -> None:
    """Until the gateway holds exactly ``expected`` subscriptions (joins or leaves done)."""
    deadline = time.monotonic() + timeout
    count = -1
    for _ in range(int(timeout / 0.05) + 1):
        with contextlib.suppress(OSError):
            count = _subscriptions(port)
        if count == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if count != expected:
        raise BenchError(f"filters: the gateway holds {count} subscriptions, expected {expected}")


@dataclass
class _Group:
    """One Load of one flavour, and what its clients recorded once it is finished."""

    flavour: str
    load: Load
    records: Records | None = None


class _Bench:
    def __init__(self, options: FiltersOptions, children: Children, port: int, pid: int, stream: _Stream):
        self.options = options
        self.children = children
        self.port = port
        self.pid = pid
        self.stream = stream
        self.subscribed = 0
        self.windows: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []

    def connect(self, flavour: str, count: int) -> _Group:
        query = FLAVOURS[flavour].format(cap=self.options.cap)
        url = f"ws://127.0.0.1:{self.port}/ws/{STREAM}" + (f"?{query}" if query else "")
        load = Load(
            self.children,
            url=url,
            connections=count,
            processes=self.options.processes,
            nice=5,
            connect_timeout=120,
            cpus=self.options.client_cpus,
            # Two events each before they stop: ~rate results were published between the two, so an
            # events-only client with no result was sent none (results and events share one order).
            args=("--min-events", str(MIN_EVENTS)),
        )
        self.subscribed += count
        _wait_subscriptions(self.port, self.subscribed)
        time.sleep(self.options.settle)  # the joins' replies (latest result, status) go out first
        return _Group(flavour, load)

    def disconnect(self, group: _Group) -> None:
        group.records = group.load.finish(stop=True)
        self.subscribed -= group.load.connections
        _wait_subscriptions(self.port, self.subscribed)
        self.groups.append(_group_summary(group, self.options.cap))
        time.sleep(self.options.settle)

    def window(self, name: str, round_: int, groups: list[_Group]) -> dict[str, Any]:
        self._check()
        _, before = _metrics(self.port)
        first, (cpu0, wait0), t0 = self.stream.seq, _schedstat(self.pid), time.monotonic()
        time.sleep(self.options.window)
        last, (cpu1, wait1), t1 = self.stream.seq, _schedstat(self.pid), time.monotonic()
        _, after = _metrics(self.port)
        counted = {key: round(after[key] - before.get(key, 0.0)) for key in after}
        entry = {
            "config": name,
            "round": round_,
            "seconds": round(t1 - t0, 3),
            "published": last - first,
            "first_seq": first + 1,
            "last_seq": last,
            "cpu_s": round(cpu1 - cpu0, 6),
            # Ready to run but without a CPU: a busy machine, which makes the gateway conflate results.
            "run_queue_wait_s": round(wait1 - wait0, 6),
            "gateway": {key: value for key, value in counted.items() if value},
            "clients": {g.flavour: g.load.connections for g in groups},
            "_groups": groups,
        }
        self.windows.append(entry)
        return entry

    def _check(self) -> None:
        if self.stream.error is not None:
            raise BenchError(f"filters: the publisher failed: {self.stream.error}")
        if not self.stream.is_alive():
            raise BenchError("filters: the publisher stopped")


def _group_summary(group: _Group, cap: float) -> dict[str, Any]:
    """What one Load's clients received over their life: results, events, the cap kept."""
    records = group.records
    assert records is not None
    connections = group.load.connections
    per_conn = np.bincount(records.conn, minlength=connections)[:connections]
    events = [n for s in records.summaries for n in s.get("events", [])]
    out: dict[str, Any] = {
        "flavour": group.flavour,
        "connections": connections,
        "results": int(per_conn.sum()),
        "clients_without_results": int((per_conn == 0).sum()),
        "events_min": min(events) if events else 0,
        "events_max": max(events) if events else 0,
        "closed_by_gateway": sum(int(s.get("closed_by_peer", 0)) for s in records.summaries),
    }
    if group.flavour == "capped":
        out.update(filters_analysis.cap_check(records, connections, cap))
    return out


def _round(options: FiltersOptions, bench: _Bench, index: int) -> None:
    n, m = options.full, options.filtered
    mixed = ("events", "capped") if index % 2 == 0 else ("capped", "events")
    full = bench.connect("full", n)
    bench.window("full", index, [full])
    for flavour in mixed:
        extra = bench.connect(flavour, m)
        bench.window(f"full+{flavour}", index, [full, extra])
        bench.disconnect(extra)
        bench.window("full", index, [full])
    bench.disconnect(full)
    alone = ("events", "capped") if index % 2 == 0 else ("capped", "events")
    for flavour in alone + (("full-m",) if m != n else ()):
        group = bench.connect("full" if flavour == "full-m" else flavour, m)
        bench.window(flavour, index, [group])
        bench.disconnect(group)


@contextlib.contextmanager
def _stack(options: FiltersOptions, workdir: str) -> Iterator[_Bench]:
    with Children() as children:
        redis_url = start_valkey(children, workdir)
        port = free_port()
        spec = launch.Gateway(
            id="gw1",
            port=port,
            redis_url=redis_url,
            max_connections=options.full + options.filtered + 100,
            log_level="warning",
            # Readiness is not measured here: on a busy shared machine a canary late by 3 s would make
            # the gateway refuse the next joins (503) and then move its clients (1013).
            args=("--ready-timeout", "30", "--unready-close-after", "300"),
        )
        gateway = children.launch(spec, stdout=False, cpus=options.server_cpus)
        try:
            wait_for_port(port, process=gateway, timeout=30)  # type: ignore[arg-type]
        except Exception as exc:
            raise BenchError(f"filters: the gateway did not start: {exc}") from None
        wait_http(port, timeout=60.0)
        per_round = 7 * (options.window + options.settle + 30)
        seconds = options.rounds * per_round + 60
        stream = _Stream(redis_url, options.rate, beat=options.beat, max_seconds=seconds)
        stream.start()
        try:
            yield _Bench(options, children, port, gateway.pid, stream)
        finally:
            stream.stop()


def run(options: FiltersOptions, *, say: Callable[[str], None]) -> dict[str, Any]:
    """Run part 7; returns every window, each configuration's medians and the ratios per round."""
    machine.raise_fd_limit((options.full + options.filtered) * 2 + 256)
    with (
        tempfile.TemporaryDirectory(prefix="framecast-bench-filters-") as workdir,
        _stack(options, workdir) as bench,
    ):
        for index in range(options.rounds):
            say(f"filters: round {index + 1} of {options.rounds}")
            _round(options, bench, index)
        events_published = bench.stream.events
    ratios = filters_analysis.analyse(bench.windows, options)
    configs = filters_analysis.configs(bench.windows)
    for row in configs:
        say(filters_analysis.line(row))
    for key, value in ratios["summary"].items():
        say(f"  {key}: {value['median']:.3f} ({value['min']:.3f}-{value['max']:.3f})")
    return {
        "configs": configs,
        "windows": bench.windows,
        "clients": bench.groups,
        "events_published": events_published,
        **ratios,
    }
