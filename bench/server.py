"""The bench gateway: a websockets server whose fan-out strategy is chosen by a flag.

``python -m bench.server --strategy broadcast``

It prints ``{"port": P}`` once it listens, then obeys JSON commands, one per
line on stdin, answering each with one JSON line on stdout:

* ``{"cmd": "count"}``: ``{"connections": n}``.
* ``{"cmd": "run", "seconds": S, "rate": R}``: fan out results for ``S``
  seconds, ``R`` per second (``0``: as fast as the loop allows, i.e. at
  saturation), then answer what it did: first and last ``seq``, messages
  generated and fanned out, loop lag samples, buffered clients.
* ``{"cmd": "quit"}``: abort every connection and exit.

Messages are timed like a gateway reading Redis: a generator task stamps each
result with ``captured_at`` at its tick and queues it; the fan-out task takes
them from the queue. A strategy that blocks makes the queue (and latency) grow,
exactly as a blocked gateway makes its Redis backlog grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from bench import machine, strategies
from bench.payload import Payload
from bench.probe import LoopProbe
from framecast import settings
from framecast.settings import option
from gateway import _wsio

__all__ = ["ServerConfig", "main"]


def _strategy_check(value: str) -> None:
    if value not in strategies.NAMES:
        raise ValueError(f"expected one of {', '.join(strategies.NAMES)}")


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Settings of the bench server."""

    strategy: str = option("broadcast", help="Fan-out strategy.", check=_strategy_check)
    port: int = option(0, help="TCP port on 127.0.0.1 (0 picks a free one).", check=settings.port_number)
    client_buffer: int = option(
        1 << 20,
        help="framecast strategies: bytes a client may have unsent before it is conflated.",
        check=settings.positive,
    )
    max_lag: float = option(
        10.0,
        help="framecast strategies: seconds a lagging client is kept before it is closed.",
        check=settings.positive,
    )
    max_age: float = option(
        2.0,
        help="framecast strategies: drop messages older than this many seconds (0: never).",
        check=settings.non_negative,
    )
    sndbuf: int = option(
        0,
        help="SO_SNDBUF of every accepted connection (0: kernel autotuning, up to 4 MiB on Linux). A small "
        "value makes a stalled client's kernel buffer fill within a short run.",
        check=settings.non_negative,
    )


class _Bench:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        options: dict[str, Any] = {}
        if config.strategy.startswith("framecast"):
            options = {
                "client_buffer": config.client_buffer,
                "max_lag": config.max_lag,
                "max_age": config.max_age,
            }
        self.strategy = strategies.make(config.strategy, framecast_options=options)
        self.payload = Payload(stream=strategies.STREAM)
        self.probe = LoopProbe()
        self.seq = 0
        self.closed = 0
        self.server: Any = None
        self.gc_pauses: list[tuple[int, float]] = []
        self._gc_start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # Collector pauses hold the loop like any other work: record them to tell them apart.
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif len(self.gc_pauses) < 100_000:
            self.gc_pauses.append((info["generation"], time.perf_counter() - self._gc_start))

    async def handler(self, ws: ServerConnection) -> None:
        if self.config.sndbuf:
            _wsio.set_send_buffer(ws, self.config.sndbuf)
        self.strategy.add(ws)
        try:
            await ws.wait_closed()
        finally:
            self.strategy.remove(ws)
            self.closed += 1

    async def _fan_out(self, queue: asyncio.Queue[tuple[int, float]], counters: dict[str, int]) -> None:
        deliver = self.strategy.deliver
        make = self.payload.make
        while True:
            seq, captured = await queue.get()
            pending = deliver(make(seq, captured))
            if pending is not None:
                await pending
            counters["fanned_out"] += 1
            # queue.get() does not yield while messages wait: yield between two, as a gateway must.
            await asyncio.sleep(0)

    async def _saturate(self, end: float, counters: dict[str, int]) -> None:
        deliver = self.strategy.deliver
        make = self.payload.make
        monotonic = time.monotonic
        wall = time.time
        while monotonic() < end:
            self.seq += 1
            counters["generated"] += 1
            pending = deliver(make(self.seq, wall()))
            if pending is not None:
                await pending
            counters["fanned_out"] += 1
            # A gateway fed by Redis yields between messages; so does this loop.
            await asyncio.sleep(0)

    async def _settle(self, timeout: float = 2.0) -> None:
        """Let queued fan-out work and buffered writes finish, so the CPU they cost counts in this phase."""
        for _ in range(256):
            # A fan-out served in slices needs one loop turn per slice.
            await asyncio.sleep(0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = self.strategy.stats()
            if not stats["buffered_bytes"] and not stats.get("in_flight"):
                break
            await asyncio.sleep(0.005)

    async def _generate(
        self, queue: asyncio.Queue[tuple[int, float]], seconds: float, rate: float, counters: dict[str, int]
    ) -> None:
        start = time.monotonic()
        total = max(1, round(seconds * rate))
        for index in range(total):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.seq += 1
            counters["generated"] += 1
            queue.put_nowait((self.seq, time.time()))

    async def run(self, seconds: float, rate: float) -> dict[str, Any]:
        counters = {"generated": 0, "fanned_out": 0}
        self.gc_pauses.clear()
        drops_before = dict(self.strategy.stats().get("drops") or {})
        first = self.seq + 1
        closed_before = self.closed
        start = time.monotonic()
        if rate <= 0:
            await self._saturate(start + seconds, counters)
            await self._settle()
            backlog = 0
        else:
            queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
            consumer = asyncio.create_task(self._fan_out(queue, counters))
            await self._generate(queue, seconds, rate, counters)
            # Let the fan-out catch up with what was generated, within a bound.
            grace = time.monotonic() + max(1.0, seconds * 0.2)
            while (
                queue.qsize() or counters["fanned_out"] < counters["generated"]
            ) and time.monotonic() < grace:
                await asyncio.sleep(0.01)
            backlog = counters["generated"] - counters["fanned_out"]
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
        end = time.monotonic()
        lags = self.probe.window(start, end)
        stats = self.strategy.stats()
        if stats.get("drops") is not None:
            # Counters are cumulative: report what this phase dropped.
            stats["drops"] = {
                reason: count - drops_before.get(reason, 0) for reason, count in stats["drops"].items()
            }
        return {
            "first_seq": first,
            "last_seq": self.seq,
            "generated": counters["generated"],
            "fanned_out": counters["fanned_out"],
            "backlog": backlog,
            "wall": end - start,
            "connections": self.strategy.count(),
            "closed": self.closed - closed_before,
            "lag_samples": list(lags),
            "gc_pauses": len(self.gc_pauses),
            "gc_max": max((p for _, p in self.gc_pauses), default=0.0),
            "gc_total": sum(p for _, p in self.gc_pauses),
            "gc_gen2": sum(1 for g, _ in self.gc_pauses if g == 2),
            **stats,
        }

    async def main(self) -> None:
        self.probe.start()
        async with serve(
            self.handler,
            "127.0.0.1",
            self.config.port,
            compression=None,
            ping_interval=None,
            max_queue=None,
            backlog=4096,
        ) as server:
            self.server = server
            port = next(iter(server.sockets)).getsockname()[1]
            _say({"port": port})
            reader = asyncio.StreamReader()
            loop = asyncio.get_running_loop()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            while True:
                line = await reader.readline()
                if not line:
                    break
                command = json.loads(line)
                if command["cmd"] == "count":
                    _say({"connections": self.strategy.count()})
                elif command["cmd"] == "run":
                    _say(await self.run(float(command["seconds"]), float(command["rate"])))
                elif command["cmd"] == "quit":
                    break
            # Abort rather than close: a stalled client would hold a closing handshake for its timeout.
            # Handlers still blocked in a send then fail noisily while the server winds down: that
            # says nothing about the strategy, so keep it out of the output.
            logging.getLogger("websockets").setLevel(logging.CRITICAL)
            for ws in list(server.connections):
                _wsio.abort(ws)
            await asyncio.sleep(0.1)
            _say({"bye": True})


def _say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m bench.server") -> int:
    """Run the bench server until stdin closes or ``quit``; returns the exit status."""
    config = settings.parse(ServerConfig, argv, prog=prog, description="A fan-out server for the benchmark.")
    machine.raise_fd_limit(20000)
    asyncio.run(_Bench(config).main())
    return 0


if __name__ == "__main__":
    sys.exit(main())
