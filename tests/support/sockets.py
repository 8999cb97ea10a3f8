"""What a process's TCP sockets hold, and what a stalled raw WebSocket client finally reads.

``queued_bytes`` reads the kernel's own accounting (``/proc/net/tcp``: what ``ss`` shows as
Send-Q and Recv-Q) for every socket of some processes; ``drain`` reads a raw client that had
stopped reading: its results, how old each was when read, and how the connection ended.
Used by the slow-client tests and by ``python -m bench stalled``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from framecast import wire

__all__ = ["Drained", "children", "drain", "queued_bytes", "rss_bytes"]


def _inodes(pid: int) -> set[int]:
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    found.add(int(target[8:-1]))
    return found


def queued_bytes(pids: Iterable[int]) -> tuple[int, int]:
    """``(send, receive)`` bytes queued in every TCP socket of ``pids``.

    Send: written but not yet acknowledged by the peer; receive: arrived but not read yet.
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
    return tx, rx


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (nginx's workers, say)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry))
    return found


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident memory of ``pids`` together."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


@dataclass
class Drained:
    """What a stalled client read once it read again."""

    bytes: int
    results: list[int]  # seqs, in order
    older_than_2s: int  # results more than 2 s past their capture when read
    previews: int
    close_code: int | None  # the close frame's code, None if none came
    close_reason: str
    ended: str  # "close", "eof", "reset" or "open"

    def describe(self) -> str:
        """One line for a table: the close frame, or how the TCP connection ended."""
        if self.close_code is not None:
            return f"close {self.close_code} {self.close_reason!r}"
        return {"eof": "TCP closed, no close frame", "reset": "TCP reset, no close frame"}.get(
            self.ended, "still open"
        )


def _frames(buffer: bytearray) -> Iterator[tuple[int, bytes]]:
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


def drain(
    sock: socket.socket, *, idle: float = 2.0, limit: float = 30.0, max_bytes: int = 1 << 28
) -> Drained:
    """Read a raw client until its close frame, the end of the connection, or ``idle`` s of silence.

    Pings are not answered: a stalled client that wakes up only reads.
    """
    sock.settimeout(idle)
    buffer = bytearray()
    out = Drained(
        bytes=0, results=[], older_than_2s=0, previews=0, close_code=None, close_reason="", ended="open"
    )
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and out.bytes < max_bytes and out.close_code is None:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            break
        except ConnectionResetError:
            out.ended = "reset"
            break
        if not chunk:
            out.ended = "eof"
            break
        out.bytes += len(chunk)
        buffer += chunk
        now = time.time()
        for opcode, payload in _frames(buffer):
            if opcode == 0x1:
                with contextlib.suppress(wire.WireError):
                    message = wire.decode(payload)
                    if isinstance(message, wire.Result):
                        out.results.append(message.seq)
                        out.older_than_2s += now - message.captured_at > 2.0
            elif opcode == 0x2:
                out.previews += 1
            elif opcode == 0x8:
                out.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                out.close_reason = payload[2:].decode(errors="replace")
                out.ended = "close"
                break
    return out
