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

import contextlib
import json
import os
import socket
import struct
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framecast import settings, wire
from framecast.settings import option

__all__ = ["StalledConfig", "main", "queued_bytes", "run"]


@dataclass(frozen=True, kw_only=True)
class StalledConfig:
    """Settings of ``python -m bench stalled``."""

    stall: float = option(25.0, help="Seconds the client reads nothing.", check=settings.positive)
    gateways: int = option(2, help="Gateway processes behind nginx.", check=settings.positive)
    paths: tuple[str, ...] = option(("direct", "nginx"), help="Paths to measure: direct, nginx.")
    rcvbuf: int = option(4096, help="SO_RCVBUF of the stalled client.", check=settings.positive)
    output: str = option("", help="Write the rows as JSON here too.")


def _inodes(pid: int) -> set[int]:
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    found.add(int(target[8:-1]))
    return found


def queued_bytes(pids: Iterable[int]) -> dict[str, int]:
    """Bytes in the TCP send and receive queues of every socket of ``pids`` (``/proc/net/tcp``).

    ``tx`` is what was written but not yet acknowledged by the peer, ``rx`` what arrived but
    was not read yet (the kernel's own accounting, as ``ss`` shows it in Send-Q and Recv-Q).
    """
    inodes: set[int] = set()
    for pid in pids:
        inodes |= _inodes(pid)
    tx = rx = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines, None)
            for line in lines:
                fields = line.split()
                if len(fields) > 9 and int(fields[9]) in inodes:
                    tx_hex, rx_hex = fields[4].split(":")
                    tx += int(tx_hex, 16)
                    rx += int(rx_hex, 16)
    return {"tx": tx, "rx": rx}


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _frames(buffer: bytearray) -> Iterable[tuple[int, bytes]]:
    """Take whole server frames off the front of ``buffer``."""
    while len(buffer) >= 2:
        opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return
            length, offset = struct.unpack("!H", buffer[2:4])[0], 4
        elif length == 127:
            if len(buffer) < 10:
                return
            length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
        if len(buffer) < offset + length:
            return
        payload = bytes(buffer[offset : offset + length])
        del buffer[: offset + length]
        yield opcode, payload


def drain(sock: socket.socket, *, idle: float = 2.0, limit: float = 20.0) -> dict[str, Any]:
    """Read what a stalled client was sent: results, their age when read, and how it ended."""
    sock.settimeout(idle)
    buffer = bytearray()
    results = old = previews = 0
    ended = "still open (nothing more within the idle time)"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            break
        except ConnectionResetError:
            ended = "TCP reset, no close frame"
            break
        if not chunk:
            ended = "TCP closed (FIN), no close frame"
            break
        buffer += chunk
        now = time.time()
        for opcode, payload in _frames(buffer):
            if opcode == 0x1:
                with contextlib.suppress(wire.WireError):
                    message = wire.decode(payload)
                    if isinstance(message, wire.Result):
                        results += 1
                        old += now - message.captured_at > 2.0
            elif opcode == 0x2:
                previews += 1
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                ended = f"close {code} {payload[2:].decode(errors='replace')!r}".strip()
                deadline = 0.0
    return {"results": results, "older_than_2s": old, "previews": previews, "ended": ended}


def _websocket(port: int, path: str, rcvbuf: int) -> socket.socket:
    from tests.support.gateway import raw_websocket  # run from a checkout

    sock, head = raw_websocket(port, path, rcvbuf=rcvbuf)
    if b" 101 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    return sock


def _measure(top: Any, path: str, config: StalledConfig, say: Callable[[str], None]) -> dict[str, Any]:
    gateway_ports = [port for name, port in top.ports.items() if name.startswith("gw")]
    gateway_pids = [top.procs[name].pid for name in top.ports if name.startswith("gw")]
    nginx_pids = [top.procs["nginx"].pid, *_children(top.procs["nginx"].pid)]
    pids = gateway_pids + (nginx_pids if path == "nginx" else [])

    def held() -> int:
        queues = queued_bytes(pids)
        buffers = sum(_metric(p, "framecast_gateway_client_buffer_max_bytes") for p in gateway_ports)
        return queues["tx"] + queues["rx"] + int(buffers)

    closes_before = sum(_metric(p, "framecast_gateway_slow_consumer_closes_total") for p in gateway_ports)
    baseline = held()
    port = top.nginx_port if path == "nginx" else top.ports["gw1"]
    sock = _websocket(port, "/ws/default?previews=1", config.rcvbuf)
    started = time.monotonic()
    peak = 0
    closed_after: float | None = None
    try:
        while time.monotonic() - started < config.stall:
            peak = max(peak, held() - baseline)
            if closed_after is None:
                closes = sum(
                    _metric(p, "framecast_gateway_slow_consumer_closes_total") for p in gateway_ports
                )
                if closes > closes_before:
                    closed_after = time.monotonic() - started
            time.sleep(0.25)
        row = {"path": path, "bytes_held": peak, **drain(sock)}
    finally:
        sock.close()
    row["closed_4008_after_s"] = round(closed_after, 2) if closed_after is not None else None
    say(_format(row))
    return row


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry))
    return found


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
        top.wait_http(top.nginx_port, "/readyz")
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
