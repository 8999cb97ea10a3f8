"""The load: client processes opening many connections each, and what they recorded.

:class:`Load` spreads connections over several ``bench.client`` processes
(the client must never be the bottleneck: one Python process per core at
most, each cheap per message), waits until all are connected, and at the end
merges their records into one :class:`Records`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.procs import BenchError, Children, read_json_line

__all__ = ["Load", "Records"]


@dataclass
class Records:
    """Every result the clients received, one entry per delivery.

    Attributes:
        seq: The result's ``seq``.
        captured: Its ``captured_at`` (Unix seconds).
        received: Wall-clock time of the ``recv()`` that delivered it.
        conn: Global index of the connection that received it.
        connections: Connections opened.
        conn_gateway: Gateway id each connection was served by ("" if none said).
        stalled: Connections that never read (indices).
        summaries: Each client process's own summary.
    """

    seq: npt.NDArray[np.int64]
    captured: npt.NDArray[np.float64]
    received: npt.NDArray[np.float64]
    conn: npt.NDArray[np.int32]
    connections: int
    conn_gateway: list[str] = field(default_factory=list)
    stalled: set[int] = field(default_factory=set)
    summaries: list[dict[str, Any]] = field(default_factory=list)

    def between(self, first: int, last: int) -> npt.NDArray[np.bool_]:
        """Mask of deliveries of results ``first..last`` (inclusive)."""
        return (self.seq >= first) & (self.seq <= last)

    def latency_ms(self, mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        """Capture-to-client latency of the selected deliveries, in milliseconds."""
        return (self.received[mask] - self.captured[mask]) * 1e3

    def healthy(self) -> npt.NDArray[np.bool_]:
        """Mask of deliveries to connections that were not stalled on purpose."""
        if not self.stalled:
            return np.ones(len(self.seq), dtype=bool)
        return ~np.isin(self.conn, np.fromiter(self.stalled, dtype=np.int32))


class Load:
    """Client processes for one run.

    Args:
        children: Where the processes are registered (stopped when it ends).
        url: WebSocket URL every connection opens.
        connections: Connections that read.
        processes: Client processes to spread them over.
        stalled: Extra connections, in their own process, that never read.
        stall_rcvbuf: SO_RCVBUF of the stalled connections.
        nice: Niceness of the client processes (so the server is measured, not the client).
        connect_timeout: Seconds allowed for every connection to open.
        cpus: CPUs the client processes may run on (empty: any).
        args: More ``bench.client`` flags for the reading processes.
    """

    def __init__(
        self,
        children: Children,
        *,
        url: str,
        connections: int,
        processes: int = 2,
        stalled: int = 0,
        stall_rcvbuf: int = 4096,
        nice: int = 5,
        connect_timeout: float = 60.0,
        cpus: tuple[int, ...] = (),
        args: tuple[str, ...] = (),
    ) -> None:
        self._children = children
        self._dir = tempfile.TemporaryDirectory(prefix="framecast-bench-")
        self.connections = connections
        self.stalled = stalled
        processes = max(1, min(processes, connections))
        share, extra = divmod(connections, processes)
        self._parts: list[tuple[subprocess.Popen[str], Path, int, bool]] = []
        offset = 0
        plan = [(share + (1 if i < extra else 0), False) for i in range(processes)]
        if stalled:
            plan.append((stalled, True))
        flags = list(args)
        for index, (count, stall) in enumerate(plan):
            prefix = Path(self._dir.name) / f"client{index}"
            argv = [
                "--url",
                url,
                "--connections",
                str(count),
                "--out",
                str(prefix),
                "--connect-timeout",
                str(connect_timeout),
            ]
            argv += ["--stall", "--rcvbuf", str(stall_rcvbuf)] if stall else flags
            process = children.python("bench.client", argv, nice=nice, cpus=cpus)
            self._parts.append((process, prefix, offset, stall))
            offset += count
        self.connected = 0
        self.failed = 0
        self.errors: list[str] = []
        for process, _, _, _ in self._parts:
            line = read_json_line(process, connect_timeout + 15, f"load client {process.pid}")
            self.connected += int(line.get("connected", 0))
            self.failed += int(line.get("failed", 0))
            self.errors += list(line.get("errors", []))
        if self.failed:
            raise BenchError(
                f"{self.failed} of {connections + stalled} connections to {url} failed: "
                f"{'; '.join(self.errors[:3])}"
            )

    @property
    def pids(self) -> list[int]:
        """Process ids of the reading clients (not the stalled ones)."""
        return [p.pid for p, _, _, stall in self._parts if not stall]

    def stop_stalled(self, *, timeout: float = 20.0) -> None:
        """Stop the stalled connections' process; it then reads what the server left it, to learn
        whether the server closed them (do this before the server goes away)."""
        for process, _, _, stall in self._parts:
            if stall:
                self._children.stop(process, sig=signal.SIGTERM, timeout=timeout)

    def finish(self, *, stop: bool = False, timeout: float = 20.0) -> Records:
        """Collect what every process recorded, merged.

        Args:
            stop: Stop the readers now (SIGTERM) instead of waiting for the server to close
                their connections.
            timeout: Seconds to wait for each process to finish before it is stopped.
        """
        for process, _, _, stall in self._parts:
            if stall or stop:
                self._children.stop(process, sig=signal.SIGTERM, timeout=timeout)
        for process, _, _, _ in self._parts:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._children.stop(process, sig=signal.SIGTERM, timeout=timeout)
        seqs, caps, ts, conns = [], [], [], []
        gateways: list[str] = []
        stalled: set[int] = set()
        summaries = []
        for process, prefix, offset, stall in self._parts:
            meta_path = prefix.with_suffix(".json")
            if not meta_path.exists():
                raise BenchError(
                    f"load client {process.pid} wrote no records (exit status {process.returncode})"
                )
            summary = json.loads(meta_path.read_text())
            summaries.append(summary)
            gateways += summary.get("conn_gateway", [])
            if stall:
                stalled.update(range(offset, offset + summary["connections"]))
            seqs.append(np.fromfile(prefix.with_suffix(".seq"), dtype=np.int64))
            caps.append(np.fromfile(prefix.with_suffix(".cap"), dtype=np.float64))
            ts.append(np.fromfile(prefix.with_suffix(".t"), dtype=np.float64))
            conns.append(np.fromfile(prefix.with_suffix(".conn"), dtype=np.int32) + offset)
        self._dir.cleanup()
        return Records(
            seq=np.concatenate(seqs),
            captured=np.concatenate(caps),
            received=np.concatenate(ts),
            conn=np.concatenate(conns),
            connections=self.connections + self.stalled,
            conn_gateway=gateways,
            stalled=stalled,
            summaries=summaries,
        )
