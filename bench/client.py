"""The load client: many raw WebSocket connections in one process, cheap per message.

``python -m bench.client --url ws://127.0.0.1:PORT/PATH --connections 500 --out /tmp/c1``

The benchmark must measure the gateway, not its client, so this client does
the least work a correct client can: non-blocking sockets on one ``epoll``, the
opening handshake written by hand (no extension negotiated), server frames
walked by their headers only, and the fields it records (``seq`` and
``captured_at`` of each :class:`framecast.wire.Result`) pulled out of a whole
``recv()`` chunk by one regular expression. Pings are answered, so keepalive
does not close it.

Events (``"type":"event"`` messages) are counted per connection (``events`` in the summary).
Binary messages (previews, video frames) are counted, with each connection's time from its
opening handshake to its first one (``first_binary_ms`` in the summary: time to first frame).
Each SIGUSR1 marks ``[time, bytes, binary messages]`` so far (``marks`` in the summary): a
harness measures a window with two of them, whatever came before (connecting, a join burst).

Per result it records the connection index, ``seq``, ``captured_at`` and the
wall-clock time of the ``recv()`` that delivered it, as flat binary arrays
(``<out>.conn``, ``<out>.seq``, ``<out>.cap``, ``<out>.t``) plus a summary in
``<out>.json``. The harness computes latencies and rates from them.

Lifecycle: connect (at most ``--concurrency`` handshakes in flight), print one
JSON line ``{"connected": n, ...}`` on stdout, read until every connection is
closed, SIGTERM or ``--max-seconds`` (after SIGTERM, with ``--min-events N``, until each open
connection has read N events, at most ``--drain-timeout``), then write the files and exit 0. With
``--stall`` it never reads after the handshake (a client whose tab froze); at
exit it drains what the kernel holds to learn whether the server closed it.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import re
import select
import signal
import socket
import sys
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bench import machine
from framecast import settings
from framecast.settings import option

__all__ = ["ClientConfig", "main"]

# wire.encode() writes a Result's keys in this order; one pass of this pattern over a recv() chunk
# finds every result in it without decoding frames one by one.
_RESULT = re.compile(
    rb'"type":"result","stream":"[^"]*","epoch":"[^"]*","seq":(\d+),"frame":\d+,"captured_at":([-0-9.eE+]+)'
)
# The same fields of a frame's payload that starts with the result (no search needed).
_ONE_RESULT = re.compile(
    rb'\{"v":1,"type":"result","stream":"[^"]*","epoch":"[^"]*","seq":(\d+),"frame":\d+,'
    rb'"captured_at":([-0-9.eE+]+)'
)
_EVENT = b'"type":"event"'
_GATEWAY = re.compile(rb'"type":"hello"[^}]*"gateway":"([^"]*)"|"gateway":"([^"]*)"[^}]*"type":"hello"')

_CONNECTING, _HANDSHAKE, _OPEN, _CLOSED = range(4)


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Settings of one load-client process."""

    url: str = option("ws://127.0.0.1:8000/", help="WebSocket URL to connect to.", group="target")
    connections: int = option(100, help="Connections this process opens.", check=settings.positive)
    subscribe: str = option(
        "", help="Text message sent on each connection once it is open (e.g. a subscribe op)."
    )
    stall: bool = option(False, help="Never read after the handshake (a frozen client).")
    rcvbuf: int = option(
        0,
        help="SO_RCVBUF in bytes set before connecting (0: the kernel's default).",
        check=settings.non_negative,
    )
    poll_interval: float = option(
        0.0005,
        help="Seconds to sleep when few sockets were readable (0: block in epoll). Batching reads keeps "
        "the client cheap; it adds at most this much to the latency it measures.",
        check=settings.non_negative,
    )
    concurrency: int = option(64, help="Opening handshakes in flight at once.", check=settings.positive)
    connect_rate: float = option(
        0.0,
        help="Connections started per second at most (0: as fast as --concurrency allows); a paced "
        "join lets another client take places spread across the server's join order.",
        check=settings.non_negative,
    )
    connect_timeout: float = option(
        60.0, help="Seconds allowed to open every connection.", check=settings.positive
    )
    max_seconds: float = option(
        900.0, help="Exit after this many seconds whatever happens.", check=settings.positive
    )
    out: str = option("bench-client", help="Prefix of the files the records are written to.")
    min_events: int = option(
        0,
        help="When told to stop, read on until every open connection has read this many events (at "
        "most --drain-timeout): what it did not get then, it was not sent.",
        check=settings.non_negative,
    )
    drain_timeout: float = option(
        10.0, help="Seconds --min-events may keep reading after the stop.", check=settings.positive
    )


class _Conn:
    __slots__ = (
        "buf",
        "closed_by_peer",
        "events",
        "first_binary",
        "gateway",
        "index",
        "opened",
        "sock",
        "state",
    )

    def __init__(self, index: int, sock: socket.socket) -> None:
        self.index = index
        self.sock = sock
        self.state = _CONNECTING
        self.buf = b""
        self.gateway: str | None = None
        self.closed_by_peer = False
        self.opened = 0.0  # time.time() of the end of its opening handshake
        self.first_binary = 0.0  # ...and of its first binary message
        self.events = 0  # event messages read


def _mask_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask, RFC 6455 section 5.3)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return header + mask + masked


class _Recorder:
    """Connections, the records they produce, and the frame walk."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        parts = urlsplit(config.url)
        if parts.scheme != "ws" or not parts.hostname:
            raise ValueError(f"--url: {config.url!r} is not a ws:// URL")
        self.host = parts.hostname
        self.port = parts.port or 80
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        self.path = path
        self.subscribe = config.subscribe.encode()
        self.conns: dict[int, _Conn] = {}
        self.open = 0
        self.seq = array("q")
        self.cap = array("d")
        self.t = array("d")
        self.conn = array("i")
        self.close_codes: dict[int, int] = {}
        self.errors: list[str] = []
        self.bytes = 0
        self.binary = 0
        self.marks: list[list[float]] = []
        self.recording = True
        self.draining = False
        self.epoll = select.epoll()

    # Connecting ------------------------------------------------------------

    def _error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text)

    def _start(self, index: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.config.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.rcvbuf)
        sock.setblocking(False)
        status = sock.connect_ex((self.host, self.port))
        if status not in (0, errno.EINPROGRESS):
            self._error(f"connect: {os.strerror(status)}")
            sock.close()
            return
        conn = _Conn(index, sock)
        self.conns[sock.fileno()] = conn
        self.epoll.register(sock.fileno(), select.EPOLLOUT)

    def _send_handshake(self, conn: _Conn) -> None:
        status = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if status:
            self._fail(conn, f"connect: {os.strerror(status)}")
            return
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        try:
            conn.sock.send(request.encode())
        except OSError as exc:
            self._fail(conn, f"handshake: {exc}")
            return
        conn.state = _HANDSHAKE
        self.epoll.modify(conn.sock.fileno(), select.EPOLLIN)

    def _read_handshake(self, conn: _Conn, data: bytes) -> None:
        conn.buf += data
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buf) > 65536:
                self._fail(conn, "handshake: response headers too long")
            return
        head, rest = conn.buf[:end], conn.buf[end + 4 :]
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            self._fail(conn, f"handshake: {status.decode(errors='replace')}")
            return
        conn.state = _OPEN
        conn.opened = time.time()
        self.open += 1
        conn.buf = b""
        if self.subscribe:
            self._send(conn, _mask_frame(0x1, self.subscribe))
        if rest:
            self._feed(conn, rest, time.time())

    def _fail(self, conn: _Conn, text: str) -> None:
        self._error(text)
        self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.state == _CLOSED:
            return
        if conn.state == _OPEN:
            self.open -= 1
        conn.state = _CLOSED
        with contextlib.suppress(OSError, ValueError):
            self.epoll.unregister(conn.sock.fileno())
        conn.sock.close()

    def _send(self, conn: _Conn, frame: bytes) -> None:
        try:
            conn.sock.send(frame)
        except OSError as exc:
            self._fail(conn, f"send: {exc}")

    def connect(self) -> dict[str, Any]:
        """Open every connection; returns the line printed for the harness."""
        total = self.config.connections
        started = 0
        begin = time.monotonic()
        deadline = begin + self.config.connect_timeout
        poll = self.epoll.poll
        rate = self.config.connect_rate
        wait = min(0.05, 1 / rate) if rate else 0.05
        while time.monotonic() < deadline:
            pending = sum(1 for c in self.conns.values() if c.state in (_CONNECTING, _HANDSHAKE))
            allowed = int((time.monotonic() - begin) * rate) + 1 if rate else total
            while started < min(total, allowed) and pending < self.config.concurrency:
                self._start(started)
                started += 1
                pending += 1
            if started >= total and pending == 0:
                break
            for fd, _events in poll(wait):
                conn = self.conns.get(fd)
                if conn is None:
                    continue
                if conn.state == _CONNECTING:
                    self._send_handshake(conn)
                else:
                    self._readable(conn)
        for conn in self.conns.values():
            if conn.state in (_CONNECTING, _HANDSHAKE):
                self._fail(conn, "handshake: timed out")
        opened = sum(1 for c in self.conns.values() if c.state == _OPEN)
        return {"connected": opened, "failed": total - opened, "errors": self.errors[:5], "pid": os.getpid()}

    # Reading ---------------------------------------------------------------

    def _readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            conn.closed_by_peer = True
            self._close(conn)
            return
        if not data:
            conn.closed_by_peer = True
            self._close(conn)
            return
        self.bytes += len(data)
        if conn.state == _HANDSHAKE:
            self._read_handshake(conn, data)
        else:
            self._feed(conn, data, time.time())

    def _feed(self, conn: _Conn, data: bytes, now: float) -> None:
        buf = conn.buf + data if conn.buf else data
        size = len(buf)
        pos = 0
        while pos + 2 <= size:
            length = buf[pos + 1] & 127
            header = 2
            if length == 126:
                if pos + 4 > size:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                if pos + 10 > size:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                header = 10
            end = pos + header + length
            if end > size:
                break
            opcode = buf[pos] & 15
            if opcode >= 8:
                self._control(conn, opcode, buf[pos + header : end])
                if conn.state == _CLOSED:
                    return
            elif opcode == 2:
                if self.recording:
                    self.binary += 1
                if not conn.first_binary:
                    conn.first_binary = now
            pos = end
        if pos:
            if conn.gateway is None:
                # A gateway's hello is its first message: look for it in the first frames only.
                found = _GATEWAY.search(buf, 0, pos)
                conn.gateway = (found.group(1) or found.group(2)).decode(errors="replace") if found else ""
            if self.recording:
                conn.events += buf.count(_EVENT, 0, pos)
                index = conn.index
                for seq, cap in _RESULT.findall(buf, 0, pos):
                    self.seq.append(int(seq))
                    self.cap.append(float(cap))
                    self.t.append(now)
                    self.conn.append(index)
        conn.buf = buf[pos:] if pos < size else b""

    def _control(self, conn: _Conn, opcode: int, payload: bytes) -> None:
        if opcode == 9:
            self._send(conn, _mask_frame(0xA, payload))
        elif opcode == 8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_codes[code] = self.close_codes.get(code, 0) + 1
            conn.closed_by_peer = True
            self._send(conn, _mask_frame(0x8, payload[:2]))
            self._close(conn)

    def run(self, stop: list[bool]) -> None:
        """Read until every connection closed, ``stop[0]`` is set or the time limit passes."""
        deadline = time.monotonic() + self.config.max_seconds
        poll = self.epoll.poll
        conns = self.conns
        readable = self._readable
        pause = self.config.poll_interval
        sleep = time.sleep
        monotonic = time.monotonic
        wall = time.time
        feed = self._feed
        match = _ONE_RESULT.match
        seqs, caps, times, indices = self.seq.append, self.cap.append, self.t.append, self.conn.append
        while self.open and monotonic() < deadline:
            if stop[0]:
                if not self._short_of_events():
                    break
                deadline = min(deadline, monotonic() + self.config.drain_timeout)
                stop[0] = False  # draining: read on until the events are in or the drain times out
                self.draining = True
            if self.draining and not self._short_of_events():
                break
            events = poll(0.0 if pause else 0.1, 4096)
            for fd, _events in events:
                conn = conns.get(fd)
                if conn is None or conn.state != _OPEN or conn.gateway is None:
                    if conn is not None and conn.state != _CLOSED:
                        readable(conn)
                    continue
                try:
                    data = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    conn.closed_by_peer = True
                    self._close(conn)
                    continue
                self.bytes += len(data)
                # The common case, kept cheap: nothing pending and exactly one whole result frame.
                if (
                    not conn.buf
                    and data[0] == 0x81
                    and data[1] == 126
                    and (data[2] << 8 | data[3]) + 4 == len(data)
                    and (found := match(data, 4)) is not None
                ):
                    seqs(int(found[1]))
                    caps(float(found[2]))
                    times(wall())
                    indices(conn.index)
                    continue
                feed(conn, data, wall())
            if pause and len(events) < 64:
                # Sleeping instead of blocking in epoll lets data pile up: one recv() then reads many
                # messages, and the server's sends stop paying for waking this process up each time.
                sleep(pause)

    def _short_of_events(self) -> bool:
        wanted = self.config.min_events
        return bool(wanted) and any(c.state == _OPEN and c.events < wanted for c in self.conns.values())

    def stall(self, stop: list[bool]) -> None:
        """Hold the connections without reading until told to stop."""
        for conn in self.conns.values():
            if conn.state == _OPEN:
                self.epoll.unregister(conn.sock.fileno())
        deadline = time.monotonic() + self.config.max_seconds
        while not stop[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        # Learn which connections the server gave up on: read what the kernel holds (bounded).
        self.recording = False
        for conn in self.conns.values():
            budget = 64 * 1024 * 1024
            while conn.state == _OPEN and budget > 0:
                try:
                    data = conn.sock.recv(1 << 20)
                except BlockingIOError:
                    break
                except OSError:
                    conn.closed_by_peer = True
                    self._close(conn)
                    break
                if not data:
                    conn.closed_by_peer = True
                    self._close(conn)
                    break
                budget -= len(data)
                self._feed(conn, data, time.time())

    def write(self, prefix: str) -> None:
        """Write the records and the summary."""
        for suffix, values in (("seq", self.seq), ("cap", self.cap), ("t", self.t), ("conn", self.conn)):
            with open(f"{prefix}.{suffix}", "wb") as out:
                values.tofile(out)
        gateways: dict[str, int] = {}
        for conn in self.conns.values():
            if conn.gateway:
                gateways[conn.gateway] = gateways.get(conn.gateway, 0) + 1
        conn_gateway = [c.gateway or "" for c in sorted(self.conns.values(), key=lambda c: c.index)]
        summary = {
            "connections": self.config.connections,
            "opened": len(self.conns),
            "closed_by_peer": sum(1 for c in self.conns.values() if c.closed_by_peer),
            "close_codes": {str(k): v for k, v in self.close_codes.items()},
            "gateways": gateways,
            "conn_gateway": conn_gateway,
            "results": len(self.seq),
            "events": [c.events for c in sorted(self.conns.values(), key=lambda c: c.index)],
            "bytes": self.bytes,
            "binary": self.binary,
            "marks": self.marks,
            "first_binary_ms": [
                (c.first_binary - c.opened) * 1e3 for c in self.conns.values() if c.first_binary and c.opened
            ],
            "stall": self.config.stall,
            "errors": self.errors,
        }
        with open(f"{prefix}.json", "w") as out:
            json.dump(summary, out)


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m bench.client") -> int:
    """Run one load-client process; returns the exit status."""
    config = settings.parse(
        ClientConfig, argv, prog=prog, description="Open many WebSocket connections and record results."
    )
    machine.raise_fd_limit(config.connections + 64)
    try:
        recorder = _Recorder(config)
    except ValueError as exc:
        return settings.fail(prog, str(exc), 2)
    stop = [False]

    def _stop(_signum: int, _frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(
        signal.SIGUSR1, lambda _s, _f: recorder.marks.append([time.time(), recorder.bytes, recorder.binary])
    )
    line = recorder.connect()
    print(json.dumps(line), flush=True)
    if config.stall:
        recorder.stall(stop)
    else:
        recorder.run(stop)
    recorder.write(config.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
