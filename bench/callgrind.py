"""Instructions per delivery of the fan-out strategies on a fixed workload (callgrind).

``python -m bench.callgrind [--clients 200] [--messages 256,1024] [--strategies ...] [--every N]
[--filtered N --filter events|capped] [--video]``

CPU time on a shared machine moves by ±20% between runs; instruction counts do not. For each
strategy and each message count, a bench gateway runs under ``valgrind --tool=callgrind``: it
accepts ``--clients`` connections from ``bench.client`` processes (real sockets; they answer
pings, as browsers do), fans ``--messages`` results of ~300 bytes out to all of them and, for
framecast, waits until every lag probe was answered. Its start-up cancels out between the two
message counts: instructions per delivery = (I(high) - I(low)) / (clients x (high - low)).

The strategies are ``bench.strategies``' (the ones ``framecast bench`` compares): framecast's
fan-out with its lag probes off (``framecast-noprobe``) and on (``framecast``), the two cost
floors (``floor-socket``, ``floor-transport``) and ``broadcast``. For framecast, probe rounds are
driven by the message count (one per ``--round`` messages, after every client answered the last
probe), not by the clock, which runs ~50x slower under valgrind, and slices end on their count:
the work is the same on every run. The gateway's own rule decides who is probed (its defaults:
once a client's stream carried 256 messages or 64 KiB since its last probe, so here, with
~300-byte results, one probe per client per ~220 deliveries); ``--every N`` sets
``probe_messages`` to N instead, to see the cost at other rates.
callgrind counts user space only: the kernel's share of a ``send()`` or of reading a
pong is not in these figures (``framecast bench``'s CPU per delivery has it).

``--filtered N`` adds N connections beside the ``--clients`` full subscribers, each with a
subscription filter (issue 22): ``--filter events`` takes events and status only (no result
reaches it), ``--filter capped`` caps its results at one per 1000 s, so after its first every
result is held for it, conflated: the steady state of a capped client, the same on every run.
What they cost shows as the instructions per message beside a run without them.

``--video`` (framecast strategies only) fans video frames out instead of results: every client
asks for the stream's video and the bench gateway delivers ``--messages`` frames of ~1 KB
(``wire.encode_video``, a keyframe every 30) through ``Fanout.deliver_video``, the gateway's
GOP path (:mod:`gateway.policy.video`: one pass over the viewers per frame, no slices).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["STRATEGIES", "main"]

VIDEO_BYTES, VIDEO_GOP = 1000, 30
"""``--video``: bytes of encoded picture per frame, frames per group of pictures."""

STRATEGIES = ("framecast-noprobe", "framecast", "floor-socket", "floor-transport", "broadcast")
"""What may be counted, in the order of the printed table."""

_FRAMECAST = ("framecast", "framecast-noprobe")


FILTERS: dict[str, dict[str, Any]] = {"events": {"kinds": ("event", "status")}, "capped": {"max_rate": 0.001}}
"""``--filter``: the subscription choices of the ``--filtered`` connections."""


def _framecast(probe: bool, every: int) -> Any:
    """The gateway's fan-out, made deterministic: probe rounds by count, slices by count."""
    from gateway.fanout import Fanout
    from gateway.policy import Counters, Limits

    # The timer never fires within a run: rounds come every `round_every` messages instead.
    # Slices end on their count alone (not on a clock valgrind slows down): the same on every run.
    limits = dataclasses.replace(
        Limits(),
        lag_threshold=1e6 if probe else 0.0,
        probe_interval=1e9,
        max_lag=1e7,
        max_age=0.0,
        slice_time=0.0,
        **({"probe_messages": every} if every else {}),
    )
    return Fanout(limits, observer=Counters())


def _video_frames(messages: int) -> list[bytes]:
    """``--video``'s frames, encoded before the run (the producer's work, not the gateway's)."""
    from framecast import wire

    picture = bytes(VIDEO_BYTES)
    frames = []
    for seq in range(1, messages + 1):
        key = seq % VIDEO_GOP == 1
        group = seq - (seq - 1) % VIDEO_GOP
        frame = wire.VideoFrame(
            stream="bench", epoch="bench", seq=seq, group=group, frame=seq, captured_at=0.0,
            width=640, height=480, key=key, codec="vp8" if key else "", data=picture,
        )  # fmt: skip
        frames.append(wire.encode_video(frame))
    return frames


async def _serve(
    strategy: str,
    clients: int,
    messages: int,
    round_every: int,
    every: int,
    filtered: int,
    filter_: str,
    video: bool = False,
) -> dict[str, Any]:
    from websockets.asyncio.server import ServerConnection, serve

    from bench import strategies
    from bench.payload import Payload

    fanout = _framecast(strategy == "framecast", every) if strategy in _FRAMECAST else None
    other = strategies.make(strategy) if fanout is None else None
    connected: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        connected.append(ws)
        if fanout is not None:
            choices = FILTERS[filter_] if len(connected) > clients else {}
            fanout.add("bench", ws, video=video, **choices)
        else:
            other.add(ws)
        try:
            await ws.wait_closed()
        finally:
            if fanout is not None:
                fanout.discard(ws)
            else:
                other.remove(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        for _ in range(100_000):
            if len(connected) >= clients + filtered:
                break
            await asyncio.sleep(0.05)
        payload = Payload()
        frames = _video_frames(messages) if video else []
        for seq in range(1, messages + 1):
            if fanout is not None and video:
                fanout.deliver_video("bench", frames[seq - 1])
                await asyncio.sleep(0)
                if strategy == "framecast" and seq % round_every == 0:
                    await _answered(fanout.observer)
                    fanout.policy.probe()
                continue
            data = payload.make(seq, 0.0)
            if fanout is None:
                other.deliver(data)
                await asyncio.sleep(0)
                continue
            fanout.deliver("bench", data)
            await asyncio.sleep(0)
            for _ in range(100_000):  # all of its slices written before the next message
                if not fanout.in_flight():
                    break
                await asyncio.sleep(0)
            if strategy == "framecast" and seq % round_every == 0:
                # Every client answered its last probe before the round: each round probes every
                # client, so the probe count is the same on every run (clients x rounds).
                await _answered(fanout.observer)
                fanout.policy.probe()
        if fanout is not None:
            await _answered(fanout.observer)
        for _ in range(100_000):  # every byte sent
            if not any(_wsio_buffered(ws) for ws in connected):
                break
            await asyncio.sleep(0.01)
        if fanout is None:
            return {"deliveries": clients * messages, "probes": 0, "lagging": 0}
        counts = fanout.observer
        return {"deliveries": counts.deliveries, "probes": counts.probes, "lagging": counts.probe_lags}


def _wsio_buffered(ws: Any) -> int:
    from gateway import _wsio

    return _wsio.buffered(ws)


async def _answered(counts: Any) -> None:
    for _ in range(100_000):
        if counts.pongs >= counts.probes:
            return
        await asyncio.sleep(0.05)


def _instructions(path: Path) -> int:
    text = path.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    if not found:
        raise RuntimeError(f"{path}: no instruction total")
    return int(found.group(1))


def _run(
    strategy: str,
    clients: int,
    messages: int,
    round_every: int,
    every: int,
    filtered: int,
    filter_: str,
    workdir: Path,
    video: bool = False,
) -> dict[str, Any]:
    from bench.load import Load
    from bench.procs import Children, read_json_line

    out = workdir / f"callgrind.{strategy}.{messages}.{filtered}{filter_}{'.video' if video else ''}"
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.callgrind",
        "--serve",
        strategy,
        "--clients",
        str(clients),
        "--messages",
        str(messages),
        "--round",
        str(round_every),
        "--every",
        str(every),
        "--filtered",
        str(filtered),
        "--filter",
        filter_,
        *(["--video"] if video else []),
    ]
    with Children() as children:
        server = children.start(argv, stderr=open(workdir / "valgrind.log", "a"))  # noqa: SIM115
        port = read_json_line(server, 600, "callgrind server")["port"]
        # Handshakes run ~50x slower under valgrind: give the clients all the time they need.
        load = Load(
            children,
            url=f"ws://127.0.0.1:{port}/",
            connections=clients + filtered,
            processes=2,
            nice=0,
            connect_timeout=3000,
        )
        done = read_json_line(server, 3600, "callgrind server")
        if done["deliveries"] < clients * messages:
            raise RuntimeError(f"only {done['deliveries']} of {clients * messages} deliveries: clients left")
        server.wait(timeout=600)
        load.finish(stop=True)
    return {**done, "instructions": _instructions(out)}


def _strategies(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(STRATEGIES)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--messages", default="256,1024", help="two message counts, low,high")
    parser.add_argument(
        "--strategies",
        type=_strategies,
        default=list(STRATEGIES),
        help=f"comma-separated, some of {', '.join(STRATEGIES)} (default: all)",
    )
    parser.add_argument("--round", type=int, default=16, help="messages per probe round")
    parser.add_argument("--every", type=int, default=0, help="probe_messages (0: the gateway's default)")
    parser.add_argument("--filtered", type=int, default=0, help="connections with a filter, beside --clients")
    parser.add_argument("--filter", choices=sorted(FILTERS), default="events", help="their filter")
    parser.add_argument("--video", action="store_true", help="fan video frames out instead of results")
    parser.add_argument("--serve", choices=STRATEGIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        done = asyncio.run(
            _serve(
                args.serve,
                args.clients,
                int(args.messages),
                args.round,
                args.every,
                args.filtered,
                args.filter,
                args.video,
            )
        )
        print(json.dumps(done), flush=True)
        return 0
    if args.filtered and any(s not in _FRAMECAST for s in args.strategies):
        parser.error("--filtered: only the framecast strategies have filters")
    if args.video and any(s not in _FRAMECAST for s in args.strategies):
        parser.error("--video: only the framecast strategies fan video out")
    if shutil.which("valgrind") is None:
        print(
            "python -m bench.callgrind: error: valgrind is not installed (apt-get install valgrind)",
            file=sys.stderr,
        )
        return 2
    low, high = (int(m) for m in args.messages.split(","))
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="framecast-callgrind-") as tmp:
        for strategy in args.strategies:
            runs = [
                _run(
                    strategy,
                    args.clients,
                    count,
                    args.round,
                    args.every,
                    args.filtered,
                    args.filter,
                    Path(tmp),
                    args.video,
                )
                for count in (low, high)
            ]
            deliveries = runs[1]["deliveries"] - runs[0]["deliveries"]
            per = (runs[1]["instructions"] - runs[0]["instructions"]) / deliveries
            row = rows[strategy] = {
                "strategy": strategy,
                "clients": args.clients,
                "deliveries": deliveries,
                "probes": runs[1]["probes"] - runs[0]["probes"],
                "instructions_per_delivery": round(per),
                "filtered": args.filtered,
                "filter": args.filter if args.filtered else None,
                **({"video": True} if args.video else {}),
                "instructions_per_message": round(
                    (runs[1]["instructions"] - runs[0]["instructions"]) / (high - low)
                ),
            }
            print(json.dumps(row), flush=True)
    what = "video frames" if args.video else "messages"
    print(f"instructions per delivery, {args.clients} clients, {low}..{high} {what}:")
    base = rows.get("floor-socket")
    for strategy, row in rows.items():
        per = row["instructions_per_delivery"]
        versus = f"  ({per / base['instructions_per_delivery']:.2f}x floor-socket)" if base else ""
        probes = f"; {row['probes']} probes" if row["probes"] else ""
        print(f"  {strategy:<18} {per:>7}{versus}{probes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
