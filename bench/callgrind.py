"""Instructions per delivery of framecast's fan-out, with and without lag probes (callgrind).

``python -m bench.callgrind [--clients 1000] [--messages 50,150]``

CPU time on a shared machine moves by ±20% between runs; instruction counts do not. For each
variant (lag probes on, off) and each message count, a gateway process runs under
``valgrind --tool=callgrind``: it accepts ``--clients`` connections from ``bench.client``
processes (real sockets; they answer pings, as browsers do), fans ``--messages`` results out to
all of them, and waits until every lag probe was answered. Its start-up cancels out between the
two message counts: instructions per delivery = (I(high) - I(low)) / (clients x (high - low)).

Probe rounds are driven by the message count (one per ``--round`` messages, after every client
answered the last probe), not by the clock, which runs ~50x slower under valgrind: every round
then probes every client (32 messages is the default ``probe_messages``: the most probes the
gateway ever sends, one per client per 32 deliveries) and the work is the same on every run.
callgrind counts user space only: the kernel's share of a ``send()`` or of reading a
pong is not in these figures (``framecast bench``'s CPU per delivery has it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


async def _serve(clients: int, messages: int, probe: bool, round_every: int) -> dict[str, Any]:
    from websockets.asyncio.server import ServerConnection, serve

    from bench.payload import Payload
    from gateway.fanout import Fanout

    # The timer never fires within a run: rounds come every `round_every` messages instead.
    fanout = Fanout(lag_threshold=1e6 if probe else 0.0, probe_interval=1e9, max_lag=1e7, max_age=0)
    connected: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        connected.append(ws)
        fanout.add("bench", ws)
        try:
            await ws.wait_closed()
        finally:
            fanout.discard(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        for _ in range(100_000):
            if len(connected) >= clients:
                break
            await asyncio.sleep(0.05)
        payload = Payload()
        policy = fanout.policy
        for seq in range(1, messages + 1):
            fanout.deliver("bench", payload.make(seq, 0.0))
            if probe and seq % round_every == 0:
                # Every client answered its last probe before the round: each round probes every
                # client, so the probe count is the same on every run (clients x rounds).
                await _answered(policy)
                policy.probe()
            await asyncio.sleep(0)
        await _answered(policy)
        for _ in range(100_000):  # every byte sent
            if not any(ws.transport.get_write_buffer_size() for ws in connected):
                break
            await asyncio.sleep(0.01)
        stats = fanout.stats
        return {"deliveries": stats.deliveries, "probes": stats.probes}


async def _answered(policy: Any) -> None:
    for _ in range(100_000):
        if policy.max_probe_age() == 0:
            return
        await asyncio.sleep(0.05)


def _instructions(path: Path) -> int:
    text = path.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    if not found:
        raise RuntimeError(f"{path}: no instruction total")
    return int(found.group(1))


def _run(clients: int, messages: int, probe: bool, round_every: int, workdir: Path) -> dict[str, Any]:
    from bench.load import Load
    from bench.procs import Children, read_json_line

    out = workdir / f"callgrind.{'probe' if probe else 'noprobe'}.{messages}"
    argv = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.callgrind",
        "--serve",
        "--clients",
        str(clients),
        "--messages",
        str(messages),
        "--round",
        str(round_every),
        *(["--probe"] if probe else []),
    ]
    with Children() as children:
        server = children.start(argv, stderr=open(workdir / "valgrind.log", "a"))  # noqa: SIM115
        port = read_json_line(server, 600, "callgrind server")["port"]
        load = Load(children, url=f"ws://127.0.0.1:{port}/", connections=clients, processes=2, nice=0)
        done = read_json_line(server, 3600, "callgrind server")
        server.wait(timeout=600)
        load.finish(stop=True)
    return {**done, "instructions": _instructions(out)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", default="50,150", help="two message counts, low,high")
    parser.add_argument(
        "--round",
        type=int,
        default=32,
        help="messages per probe round (default 32, the gateway's probe_messages: every round "
        "then probes every client, one probe per client per 32 deliveries, the most it sends)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        print(
            json.dumps(asyncio.run(_serve(args.clients, int(args.messages), args.probe, args.round))),
            flush=True,
        )
        return 0
    if shutil.which("valgrind") is None:
        print(
            "python -m bench.callgrind: error: valgrind is not installed (apt-get install valgrind)",
            file=sys.stderr,
        )
        return 2
    low, high = (int(m) for m in args.messages.split(","))
    rows = []
    with tempfile.TemporaryDirectory(prefix="framecast-callgrind-") as tmp:
        for probe in (False, True):
            runs = [_run(args.clients, count, probe, args.round, Path(tmp)) for count in (low, high)]
            deliveries = runs[1]["deliveries"] - runs[0]["deliveries"]
            per = (runs[1]["instructions"] - runs[0]["instructions"]) / deliveries
            row = {
                "lag_probes": probe,
                "clients": args.clients,
                "deliveries": deliveries,
                "probes": runs[1]["probes"] - runs[0]["probes"],
                "instructions_per_delivery": round(per),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    off, on = rows
    change = on["instructions_per_delivery"] / off["instructions_per_delivery"] - 1
    print(
        f"instructions per delivery, {args.clients} clients: "
        f"lag probes off {off['instructions_per_delivery']}, "
        f"on {on['instructions_per_delivery']} ({change:+.1%}; {on['probes']} probes for "
        f"{on['deliveries']} deliveries)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
