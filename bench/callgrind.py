"""Instructions per delivery of framecast's fan-out, with and without lag probes (callgrind).

``python -m bench.callgrind [--clients 200] [--messages 256,1024] [--every N]``

CPU time on a shared machine moves by ±20% between runs; instruction counts do not. For each
variant (lag probes on, off) and each message count, a gateway process runs under
``valgrind --tool=callgrind``: it accepts ``--clients`` connections from ``bench.client``
processes (real sockets; they answer pings, as browsers do), fans ``--messages`` results out to
all of them, and waits until every lag probe was answered. Its start-up cancels out between the
two message counts: instructions per delivery = (I(high) - I(low)) / (clients x (high - low)).

Probe rounds are driven by the message count (one per ``--round`` messages, after every client
answered the last probe), not by the clock, which runs ~50x slower under valgrind, and slices
end on their count: the work is the same on every run. The gateway's own rule decides who is
probed (its defaults: once a client's stream carried 256 messages or 64 KiB since its last probe,
so here, with ~300-byte results, one probe per client per ~220 deliveries); ``--every N`` sets
``probe_messages`` to N instead, to see the cost at other rates.
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


async def _serve(
    clients: int, messages: int, probe: bool, round_every: int, every: int = 0
) -> dict[str, Any]:
    from websockets.asyncio.server import ServerConnection, serve

    from bench.payload import Payload
    from gateway.fanout import Fanout

    # The timer never fires within a run: rounds come every `round_every` messages instead.
    # Slices end on their count alone (not on a clock valgrind slows down): the same on every run.
    fanout = Fanout(
        lag_threshold=1e6 if probe else 0.0,
        probe_interval=1e9,
        max_lag=1e7,
        max_age=0,
        slice_time=0,
        **({"probe_messages": every} if every else {}),
    )
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
            if fanout.clients() >= clients:
                break
            await asyncio.sleep(0.05)
        payload = Payload()
        policy = fanout.policy
        for seq in range(1, messages + 1):
            fanout.deliver("bench", payload.make(seq, 0.0))
            await asyncio.sleep(0)
            for _ in range(100_000):  # all of its slices written before the next message
                if not fanout.in_flight():
                    break
                await asyncio.sleep(0)
            if probe and seq % round_every == 0:
                # Every client answered its last probe before the round: each round probes every
                # client, so the probe count is the same on every run (clients x rounds).
                await _answered(policy)
                policy.probe()
        await _answered(policy)
        for _ in range(100_000):  # every byte sent
            if not any(ws.transport.get_write_buffer_size() for ws in connected):
                break
            await asyncio.sleep(0.01)
        stats = fanout.stats
        return {"deliveries": stats.deliveries, "probes": stats.probes, "lagging": stats.probe_lags}


async def _answered(policy: Any) -> None:
    stats = policy.stats
    for _ in range(100_000):
        if stats.pongs >= stats.probes:
            return
        await asyncio.sleep(0.05)


def _instructions(path: Path) -> int:
    text = path.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.MULTILINE)
    if not found:
        raise RuntimeError(f"{path}: no instruction total")
    return int(found.group(1))


def _run(
    clients: int, messages: int, probe: bool, round_every: int, every: int, workdir: Path
) -> dict[str, Any]:
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
        "--every",
        str(every),
        *(["--probe"] if probe else []),
    ]
    with Children() as children:
        server = children.start(argv, stderr=open(workdir / "valgrind.log", "a"))  # noqa: SIM115
        port = read_json_line(server, 600, "callgrind server")["port"]
        # Handshakes run ~50x slower under valgrind: give the clients all the time they need.
        load = Load(
            children,
            url=f"ws://127.0.0.1:{port}/",
            connections=clients,
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--messages", default="256,1024", help="two message counts, low,high")
    parser.add_argument("--round", type=int, default=16, help="messages per probe round")
    parser.add_argument("--every", type=int, default=0, help="probe_messages (0: the gateway's default)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        print(
            json.dumps(
                asyncio.run(_serve(args.clients, int(args.messages), args.probe, args.round, args.every))
            ),
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
            runs = [
                _run(args.clients, count, probe, args.round, args.every, Path(tmp)) for count in (low, high)
            ]
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
