"""A stalled client, straight to a gateway and through nginx: what it costs and how it ends.

``python -m bench stalled`` (``framecast bench stalled``) starts the topology ``framecast up`` runs
(valkey, gateways, the producer, nginx with the shipped template; :mod:`bench.fault_topology`),
then, one path after the other, connects a raw client to ``/ws/default?previews=1`` with
``SO_RCVBUF`` 4096 that reads nothing for ``--stall`` seconds and then drains what arrived. A
healthy client reads through nginx all along. Per path it prints one row:

* **bytes held**: the peak, during the stall, of every byte queued for it on the way: the
  gateways' unsent transport buffers (``framecast_gateway_client_buffer_max_bytes``) and the
  send queues of their sockets, plus nginx's sockets' receive and send queues (from
  ``/proc/net/tcp``, the sockets of each process found through ``/proc/<pid>/fd``), above
  their level before the client came;
* **results delivered** once it drains, and how many of them were **older than 2 s** when read;
* **how it ended**: the close frame it read (code and reason), or the TCP end it met;
* **4008 after**: seconds from the start of the stall until a gateway counted the 4008 close.

Run it from a checkout (it uses ``tests/support``).
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import wait_http
from framecast import settings
from framecast.settings import option

__all__ = ["StalledConfig", "main", "run"]


@dataclass(frozen=True, kw_only=True)
class StalledConfig:
    """Settings of ``python -m bench stalled``."""

    stall: float = option(25.0, help="Seconds the client reads nothing.", check=settings.positive)
    gateways: int = option(2, help="Gateway processes behind nginx.", check=settings.positive)
    paths: tuple[str, ...] = option(("direct", "nginx"), help="Paths to measure: direct, nginx.")
    rcvbuf: int = option(4096, help="SO_RCVBUF of the stalled client.", check=settings.positive)
    output: str = option("", help="Write the rows as JSON here too.")


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _websocket(port: int, path: str, rcvbuf: int) -> socket.socket:
    from tests.support.gateway import raw_websocket  # run from a checkout

    sock, head = raw_websocket(port, path, rcvbuf=rcvbuf)
    if b" 101 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    return sock


def _measure(top: Any, path: str, config: StalledConfig, say: Callable[[str], None]) -> dict[str, Any]:
    from tests.support.sockets import children, drain, queued_bytes

    gateway_ports = [port for name, port in top.ports.items() if name.startswith("gw")]
    gateway_pids = [top.procs[name].pid for name in top.ports if name.startswith("gw")]
    nginx_pids = [top.procs["nginx"].pid, *children(top.procs["nginx"].pid)]
    pids = gateway_pids + (nginx_pids if path == "nginx" else [])

    def held() -> int:
        buffers = sum(_metric(p, "framecast_gateway_client_buffer_max_bytes") for p in gateway_ports)
        return sum(queued_bytes(pids)) + int(buffers)

    def closes() -> float:
        return sum(_metric(p, "framecast_gateway_slow_consumer_closes_total") for p in gateway_ports)

    closes_before = closes()
    baseline = held()
    port = top.nginx_port if path == "nginx" else top.ports["gw1"]
    sock = _websocket(port, "/ws/default?previews=1", config.rcvbuf)
    started = time.monotonic()
    peak = 0
    closed_after: float | None = None
    try:
        while time.monotonic() - started < config.stall:
            peak = max(peak, held() - baseline)
            if closed_after is None and closes() > closes_before:
                closed_after = time.monotonic() - started
            time.sleep(0.25)
        drained = drain(sock)
    finally:
        sock.close()
    row = {
        "path": path,
        "bytes_held": peak,
        "results": len(drained.results),
        "older_than_2s": drained.older_than_2s,
        "previews": drained.previews,
        "ended": drained.describe(),
        "closed_4008_after_s": round(closed_after, 2) if closed_after is not None else None,
    }
    say(_format(row))
    return row


def _format(row: dict[str, Any]) -> str:
    closed = f"{row['closed_4008_after_s']} s" if row["closed_4008_after_s"] is not None else "never"
    return (
        f"| {row['path']} | {row['bytes_held'] / 1e3:.0f} KB | {row['results']} | {row['older_than_2s']} "
        f"| {row['ended']} | {closed} |"
    )


HEADER = (
    "| path | bytes held for the stalled client | results delivered | results older than 2 s "
    "| how it ended | 4008 counted after |\n|---|---|---|---|---|---|"
)


def run(config: StalledConfig, *, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Start the topology, measure each path in turn, stop everything."""
    from bench.fault_topology import Topology
    from bench.faults import FaultsConfig

    unknown = sorted(set(config.paths) - {"direct", "nginx"})
    if unknown:
        raise ValueError(f"--paths: unknown {', '.join(unknown)} (choose from direct, nginx)")
    top = Topology(FaultsConfig(gateways=config.gateways, clients=1))
    try:
        wait_http(top.nginx_port, "/readyz")
        say(HEADER)
        return [_measure(top, path, config, say) for path in config.paths]
    finally:
        top.close()


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m bench stalled") -> int:
    """``python -m bench stalled``: print the stalled-client table."""
    config = settings.parse(StalledConfig, argv, prog=prog, description=__doc__)
    try:
        rows = run(config)
    except ValueError as exc:
        return settings.fail(prog, str(exc), 2)
    if config.output:
        Path(config.output).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
