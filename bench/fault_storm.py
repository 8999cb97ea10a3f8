"""The storm scenario's connections, opened from a process of their own (bench/faults.py).

Thousands of handshakes from the benchmark's own event loop starve the clients being measured:
they fall behind, get conflated, and the storm row reports the benchmark's loss, not the
system's. Run as ``python -m bench.fault_storm URL COUNT``: opens COUNT connections at once,
prints the outcomes as one JSON line, holds them until its stdin closes (or says ``close``),
closes them all and prints ``closed``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import websockets
from websockets.asyncio.client import connect

from framecast.limits import raise_open_files_limit

__all__ = ["main"]


async def _storm(url: str, count: int) -> None:
    opened: list[Any] = []

    async def one() -> str:
        try:
            opened.append(await connect(url, open_timeout=60, ping_interval=None))
        except websockets.InvalidStatus as exc:
            return str(exc.response.status_code)
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            return type(exc).__name__
        return "101"

    outcomes = await asyncio.gather(*(one() for _ in range(count)))
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    print(json.dumps(counts), flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "close", or EOF when the parent goes
    await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
    print("closed", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Open the storm, report it, hold it until told, close it."""
    url, count = (argv if argv is not None else sys.argv[1:])[:2]
    raise_open_files_limit()
    asyncio.run(_storm(url, int(count)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
