"""``python -m bench.video_floor``: the gateway's video path against the cost floor, writing the same bytes.

One process serves N WebSocket connections (``bench.client`` processes read them, answering
pings). The same video frames (``FCV1``, the size of the producer's VP8 frames, a keyframe every
30) are fanned out to all of them, in alternating rounds, two ways:

* **framecast**: the gateway's own fan-out (:class:`gateway.fanout.Fanout`, the clients added
  with ``video=True``, :meth:`~gateway.fanout.Fanout.deliver_video`): the GOP rules, the chain,
  the per-client resume flag, then the one write call per client;
* **floor**: what cannot cost less: the frame framed once, then the socket's own ``send()`` per
  connection (the transport taking what the kernel did not), nothing else.

Each round paces ``--rate`` frames/s for ``--seconds``; the process's CPU time (user + system)
per round is divided by the bytes it wrote. The ratio framecast ÷ floor is the issue's
"gateway CPU per delivered byte within 1.3x of the floor strategy, writing the same bytes".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from bench import machine
from bench.load import Load
from bench.procs import Children
from framecast import wire
from gateway import _wsio
from gateway.fanout import Fanout
from gateway.policy import Counters, Limits

STREAM = "bench"
FRAME_BYTES = 4300  # the producer's VP8 frames at 500 kbit/s: ~64 KiB/s at 15 fps
KEY_EVERY = 30


def _frames(count: int) -> list[bytes]:
    out = []
    for seq in range(1, count + 1):
        key = (seq - 1) % KEY_EVERY == 0
        group = seq - (seq - 1) % KEY_EVERY
        out.append(
            wire.encode_video(
                wire.VideoFrame(
                    stream=STREAM, epoch="e1", seq=seq, group=group, frame=seq, captured_at=0.0,
                    width=640, height=480, key=key, codec="vp8" if key else "",
                    data=bytes(FRAME_BYTES * (3 if key else 1)),
                )
            )
        )  # fmt: skip
    return out


class _Floor:
    def __init__(self) -> None:
        self.writers: list[_wsio.Writers] = []

    def deliver(self, data: bytes) -> int:
        frame = _wsio.frame(data, True)
        size = len(frame)
        for send, write, buffered in self.writers:
            if send is None or buffered():
                write(frame)
                continue
            try:
                sent = send(frame)
            except (BlockingIOError, InterruptedError, OSError):
                write(frame)
                continue
            if sent < size:
                write(frame[sent:])
        return size * len(self.writers)


async def _serve(viewers: int, rate: float, seconds: float, rounds: int, say: Any) -> dict[str, Any]:
    counts = Counters()
    # max_age 0: the frames carry captured_at 0, and staleness is not what is measured here.
    fanout = Fanout(Limits(max_age=0.0), observer=counts)
    floor = _Floor()
    connected = asyncio.Event()
    opened: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        opened.append(ws)
        fanout.add(STREAM, ws, video=True)
        floor.writers.append(_wsio.writers(ws))
        if len(opened) >= viewers:
            connected.set()
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
        port = server.sockets[0].getsockname()[1]
        with Children() as children:
            load = await asyncio.to_thread(
                Load, children, url=f"ws://127.0.0.1:{port}/", connections=viewers, processes=2, nice=5
            )
            await asyncio.wait_for(connected.wait(), 60)
            frames = _frames(int(rate * seconds) * rounds * 2 + KEY_EVERY)
            results: dict[str, list[float]] = {"framecast": [], "floor": []}
            position = 0
            for _ in range(rounds):
                for name in ("framecast", "floor"):
                    # Each round starts at a keyframe, so the framecast path writes every frame.
                    position += (-position) % KEY_EVERY
                    written = 0
                    before = counts.bytes_out
                    cpu0 = time.process_time()
                    start = time.monotonic()
                    for index in range(int(rate * seconds)):
                        data = frames[position]
                        position += 1
                        if name == "floor":
                            written += floor.deliver(data)
                        else:
                            fanout.deliver_video(STREAM, data)
                        delay = start + (index + 1) / rate - time.monotonic()
                        await asyncio.sleep(max(delay, 0))
                    cpu = time.process_time() - cpu0
                    if name == "framecast":
                        written = counts.bytes_out - before
                    results[name].append(cpu / written * 1e12 if written else float("nan"))  # µs per MB
                    say(f"{name:>9}: {results[name][-1]:7.0f} µs CPU per MB written ({written / 1e6:.1f} MB)")
            load.finish(stop=True)
    framecast, floor_cost = statistics.median(results["framecast"]), statistics.median(results["floor"])
    return {
        "viewers": viewers,
        "rate": rate,
        "seconds": seconds,
        "frame_bytes": FRAME_BYTES,
        "us_per_mb": results,
        "median_us_per_mb": {"framecast": framecast, "floor": floor_cost},
        "ratio": framecast / floor_cost,
        "drops": dict(counts.drops),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.video_floor", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=60.0, help="Frames per second fanned out.")
    parser.add_argument("--seconds", type=float, default=5.0, help="Length of one round.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of each, alternating.")
    args = parser.parse_args(argv)
    machine.raise_fd_limit(args.viewers * 2 + 256)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    report = asyncio.run(_serve(args.viewers, args.rate, args.seconds, args.rounds, say))
    report["machine"] = machine.describe()
    print(json.dumps(report, indent=2))
    medians = report["median_us_per_mb"]
    print(
        f"framecast / floor, CPU per byte written: {report['ratio']:.2f}x "
        f"({medians['framecast']:.0f} against {medians['floor']:.0f} us/MB)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
