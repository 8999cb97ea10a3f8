"""The fan-out strategies compared inside one gateway process.

Each strategy keeps a set of open connections and delivers one message to all
of them; ``deliver`` returns ``None`` when it finished synchronously and an
awaitable when the caller has to wait for it.

* ``broadcast``: :func:`websockets.asyncio.server.broadcast` (synchronous, no backpressure).
* ``sequential``: ``await ws.send(m)`` for each client in turn.
* ``tasks``: the article's recipe made valid: ``asyncio.wait`` over one task per client.
* ``framecast``: :class:`gateway.fanout.Fanout`, the gateway's own fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed

__all__ = ["NAMES", "Strategy", "make"]

NAMES = ("framecast", "broadcast", "sequential", "tasks")
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
        buffered = [ws.transport.get_write_buffer_size() for ws in self.clients]
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
    """The gateway's own fan-out, driven the way its server drives it."""

    def __init__(self, options: dict[str, Any]) -> None:
        from gateway.fanout import Fanout

        self._fanout = Fanout(**options)
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
        buffered = [ws.transport.get_write_buffer_size() for ws in self._clients]
        stats = self._fanout.stats
        return {
            "buffered_clients": sum(1 for b in buffered if b),
            "buffered_bytes": sum(buffered),
            "lagging": self._fanout.lagging,
            "in_flight": self._fanout.in_flight(),
            "slow_closes": stats.slow_closes,
            "drops": dict(stats.drops),
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
    raise ValueError(f"unknown strategy {name!r} (expected one of {', '.join(NAMES)})")
