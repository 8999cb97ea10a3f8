"""The fan-out strategies compared inside one gateway process.

Each strategy keeps a set of open connections and delivers one message to all
of them; ``deliver`` returns ``None`` when it finished synchronously and an
awaitable when the caller has to wait for it.

* ``broadcast``: :func:`websockets.asyncio.server.broadcast` (synchronous, no backpressure).
* ``sequential``: ``await ws.send(m)`` for each client in turn.
* ``tasks``: the article's recipe made valid: ``asyncio.wait`` over one task per client.
* ``framecast``: :class:`gateway.fanout.Fanout`, the gateway's own fan-out.
* ``framecast-noprobe``: the same with its lag probes off (``lag_threshold=0``): the
  cost of measuring every client's lag end to end is the difference between the two.
* ``floor-transport``: the cost floor of an asyncio gateway: the message framed
  once by hand and ``transport.write()`` to every connection, nothing else (no
  state check, no backpressure, no policy).
* ``floor-socket``: the same frame written with the raw non-blocking
  ``socket.send()`` of each connection, the transport taking only what the
  kernel did not (a partial write, ``EAGAIN``, or bytes already queued there).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed

from gateway import _wsio

__all__ = ["NAMES", "Strategy", "make"]

NAMES = (
    "framecast",
    "framecast-noprobe",
    "broadcast",
    "sequential",
    "tasks",
    "floor-transport",
    "floor-socket",
)
"""Every strategy, framecast's first."""

STREAM = "bench"
"""The one stream every bench client receives."""


class Strategy(Protocol):
    """What the bench server needs of a fan-out strategy."""

    def add(self, ws: ServerConnection) -> None: ...

    def remove(self, ws: ServerConnection) -> None: ...

    def deliver(self, data: bytes) -> Awaitable[None] | None: ...

    def count(self) -> int: ...

    def stats(self) -> dict[str, Any]: ...


class _Set:
    """A plain set of connections, shared by the three websockets-only strategies."""

    def __init__(self, send: Callable[[set[ServerConnection], bytes], Awaitable[None] | None]) -> None:
        self.clients: set[ServerConnection] = set()
        self._send = send

    def add(self, ws: ServerConnection) -> None:
        self.clients.add(ws)

    def remove(self, ws: ServerConnection) -> None:
        self.clients.discard(ws)

    def deliver(self, data: bytes) -> Awaitable[None] | None:
        return self._send(self.clients, data)

    def count(self) -> int:
        return len(self.clients)

    def stats(self) -> dict[str, Any]:
        buffered = [_wsio.buffered(ws) for ws in self.clients]
        return {
            "buffered_clients": sum(1 for b in buffered if b),
            "buffered_bytes": sum(buffered),
        }


def _broadcast(clients: set[ServerConnection], data: bytes) -> None:
    broadcast(clients, data, text=True)


async def _sequential(clients: set[ServerConnection], data: bytes) -> None:
    for ws in list(clients):
        with contextlib.suppress(ConnectionClosed):
            await ws.send(data, text=True)


async def _send_quietly(ws: ServerConnection, data: bytes) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(data, text=True)


async def _tasks(clients: set[ServerConnection], data: bytes) -> None:
    # asyncio.wait() refuses bare coroutines since Python 3.11: one task per client is the valid form.
    if clients:
        await asyncio.wait([asyncio.create_task(_send_quietly(ws, data)) for ws in clients])


class _Framecast:
    """The gateway's own fan-out, driven the way its server drives it.

    Args:
        options: :class:`gateway.policy.Limits` fields that differ from the gateway's defaults.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        from gateway.fanout import Fanout
        from gateway.policy import Counters, Limits

        self._counts = Counters()
        self._fanout = Fanout(Limits(**options), observer=self._counts)
        self._clients: set[ServerConnection] = set()

    def add(self, ws: ServerConnection) -> None:
        self._clients.add(ws)
        self._fanout.add(STREAM, ws)

    def remove(self, ws: ServerConnection) -> None:
        self._clients.discard(ws)
        self._fanout.discard(ws)

    def deliver(self, data: bytes) -> None:
        self._fanout.deliver(STREAM, data)

    def count(self) -> int:
        return len(self._clients)

    def stats(self) -> dict[str, Any]:
        buffered = [_wsio.buffered(ws) for ws in self._clients]
        stats = self._counts
        return {
            "buffered_clients": sum(1 for b in buffered if b),
            "buffered_bytes": sum(buffered),
            "lagging": self._fanout.lagging,
            "in_flight": self._fanout.in_flight(),
            "slow_closes": stats.slow_closes,
            "drops": dict(stats.drops),
        }


class _Floor:
    """What fan-out cannot do for less: one frame, one write per connection, nothing else.

    Args:
        raw: Write with the socket's own ``send()`` while the transport has nothing
            queued (so bytes never overtake each other), handing only what the kernel
            did not take to ``transport.write()``.
    """

    def __init__(self, *, raw: bool) -> None:
        self._raw = raw
        # Per connection, the bound methods the loop calls: no attribute chain per delivery.
        self._writers: dict[
            ServerConnection, tuple[Callable[[bytes], int] | None, Callable[[bytes], None], Callable[[], int]]
        ] = {}

    def add(self, ws: ServerConnection) -> None:
        send, write, buffered = _wsio.writers(ws)
        self._writers[ws] = (send if self._raw else None, write, buffered)

    def remove(self, ws: ServerConnection) -> None:
        self._writers.pop(ws, None)

    def deliver(self, data: bytes) -> None:
        frame = _wsio.frame(data, False)
        writers = self._writers.values()
        if not self._raw:
            for _, write, _ in writers:
                write(frame)
            return
        size = len(frame)
        for send, write, buffered in writers:
            if send is None or buffered():
                write(frame)
                continue
            try:
                sent = send(frame)
            except (BlockingIOError, InterruptedError):
                write(frame)
                continue
            except OSError:
                # A dead connection: its handler removes it; the transport reports the error.
                write(frame)
                continue
            if sent < size:
                write(frame[sent:])

    def count(self) -> int:
        return len(self._writers)

    def stats(self) -> dict[str, Any]:
        buffered = [sizes() for _, _, sizes in self._writers.values()]
        return {
            "buffered_clients": sum(1 for b in buffered if b),
            "buffered_bytes": sum(buffered),
        }


def make(name: str, *, framecast_options: dict[str, Any] | None = None) -> Strategy:
    """Build a strategy by name (one of :data:`NAMES`).

    Raises:
        ValueError: Unknown name.
    """
    if name == "broadcast":
        return _Set(_broadcast)
    if name == "sequential":
        return _Set(_sequential)
    if name == "tasks":
        return _Set(_tasks)
    if name == "framecast":
        return _Framecast(framecast_options or {})
    if name == "framecast-noprobe":
        return _Framecast({**(framecast_options or {}), "lag_threshold": 0.0})
    if name == "floor-transport":
        return _Floor(raw=False)
    if name == "floor-socket":
        return _Floor(raw=True)
    raise ValueError(f"unknown strategy {name!r} (expected one of {', '.join(NAMES)})")
