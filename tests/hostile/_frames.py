"""Hand-made WebSocket frames and raw HTTP for the hostile-input tests.

A real client library refuses to send most of what these tests need (unmasked frames, reserved
bits, unknown opcodes, fragmented pings, lying length headers), so they are built byte by byte
here and written on a plain socket opened by :func:`tests.support.gateway.raw_websocket`.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import struct
import time
from dataclasses import dataclass

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One client frame; ``length`` lies about the payload size in the header when given."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF])
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 1 << 16:
        head += bytes([bit | 126]) + struct.pack(">H", size)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", size)
    if not mask:
        return head + payload
    key = secrets.token_bytes(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@dataclass(frozen=True)
class Frame:
    """One server frame."""

    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE:
            return None
        return struct.unpack(">H", self.payload[:2])[0] if len(self.payload) >= 2 else 1005

    @property
    def text(self) -> str:
        return self.payload.decode()


class FrameReader:
    """Reads server frames from a raw socket (servers never mask)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def _fill(self, size: int, deadline: float) -> bool:
        for _ in range(100_000):
            if len(self._buffer) >= size:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete frame from the server")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return False
            self._buffer += chunk
        raise AssertionError("frame reader loop bound reached")

    def next(self, *, timeout: float = 20.0) -> Frame | None:
        """The next frame, or None when the server closed the TCP connection."""
        deadline = time.monotonic() + timeout
        if not self._fill(2, deadline):
            return None
        first, second = self._buffer[0], self._buffer[1]
        size, offset = second & 0x7F, 2
        if size == 126:
            if not self._fill(4, deadline):
                return None
            size, offset = struct.unpack(">H", self._buffer[2:4])[0], 4
        elif size == 127:
            if not self._fill(10, deadline):
                return None
            size, offset = struct.unpack(">Q", self._buffer[2:10])[0], 10
        if not self._fill(offset + size, deadline):
            return None
        payload = self._buffer[offset : offset + size]
        self._buffer = self._buffer[offset + size :]
        return Frame(first & 0xF, payload)

    def until_close(self, *, timeout: float = 20.0, limit: int = 10_000) -> tuple[list[Frame], int | None]:
        """Frames up to the server's close frame, and its code (None: TCP closed without one)."""
        seen: list[Frame] = []
        deadline = time.monotonic() + timeout
        for _ in range(limit):
            got = self.next(timeout=max(deadline - time.monotonic(), 0.01))
            if got is None:
                return seen, None
            if got.opcode == OP_CLOSE:
                return seen, got.close_code
            seen.append(got)
        raise AssertionError(f"no close within {limit} frames")


def http_exchange(port: int, request: bytes, *, timeout: float = 20.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # Refused before it read everything: what it answered still counts.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        answer = b""
        deadline = time.monotonic() + timeout
        for _ in range(10_000):
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            answer += chunk
            if _complete(answer):
                break
        return answer


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    if status_of(head) == 101:
        # Switching Protocols has no body and the connection stays open for the new protocol:
        # waiting for a close would only wait out the timeout (20 s a case through nginx).
        return True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or b"0")
    return False


def status_of(answer: bytes) -> int | None:
    """The HTTP status of a raw answer, or None when the server closed without one."""
    if not answer.startswith(b"HTTP/1."):
        return None
    return int(answer.split(b" ", 2)[1])
