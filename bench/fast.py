"""A reference in the bench only: framecast's fan-out policy on the cost floor's write loop.

``framecast-fast`` and ``framecast-flat`` answered "which fast-path idea pays?"
before the raw write was ported into the gateway (``gateway/_wsio.py``,
``WsSink.offer``); they stay as references for it. Both keep what the
gateway's :class:`gateway.fanout.Fanout` does per message on the bench's one
stream (one :func:`framecast.wire.peek`, the ``max_age`` check, one frame for
everyone, writes in slices of ``chunk`` clients or ``slice_time`` seconds, a
client above ``client_buffer`` unsent bytes conflated to its newest result and
closed with 4008 after ``max_lag``), and change only the write loop:

* a **flat list of ready clients** (open, not lagging), each entry holding the
  bound methods the loop calls, instead of a ``_Client`` whose connection,
  protocol state and transport are looked up per delivery;
* (``framecast-fast`` only) the frame is written with the socket's own
  ``send()`` while the transport has nothing queued, the transport taking only
  what the kernel did not.

A client leaves the ready list when it starts lagging and when its connection
handler ends; unlike ``Fanout`` the loop does not look at the protocol state
per delivery (a port would take a client off the list when its state leaves
OPEN instead). Previews, status, joining and history are absent: the bench has
one stream of results.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode

from framecast import wire
from gateway._wsio import raw_send

__all__ = ["FastFanout"]

# Clients written between two looks at the clock in a slice (as in gateway/fanout.py).
_TIME_CHECK_EVERY = 16
# Messages that may wait behind the one going out in slices before the oldest is shed.
_MAX_WAITING = 64


class _Client:
    """One connection and the bound methods its writes go through."""

    __slots__ = ("buffered", "lagging_since", "pending", "send", "task", "write", "ws")

    def __init__(self, ws: ServerConnection, *, raw: bool) -> None:
        self.ws = ws
        transport = ws.transport
        self.send: Callable[[bytes], int] | None = raw_send(transport) if raw else None
        self.write: Callable[[bytes], None] = transport.write
        self.buffered: Callable[[], int] = transport.get_write_buffer_size
        self.lagging_since: float | None = None
        self.pending: tuple[bytes, float] | None = None  # newest frame held while lagging, captured_at
        self.task: asyncio.Task[None] | None = None


class _Job:
    """One message going out in slices to the ready clients of the moment it arrived."""

    __slots__ = ("captured", "frame", "index", "members")

    def __init__(self, frame: bytes, captured: float, members: list[_Client]) -> None:
        self.frame = frame
        self.captured = captured
        self.members = members
        self.index = 0


class FastFanout:
    """The experimental fan-out (see the module's docstring); a bench strategy.

    Args:
        raw: Write with ``socket.send()`` while a transport's buffer is empty.
        client_buffer: Unsent bytes above which a client is lagging.
        max_lag: Seconds a client may lag before it is closed with 4008.
        max_age: Drop messages older than this many seconds (0: never).
        send_deadline: Seconds between two looks at a lagging client.
        close_timeout: Seconds the 4008 close may take before the connection is aborted.
        chunk: Clients written per loop callback at most (0: no count limit).
        slice_time: Seconds one slice may hold the loop (0: count only).
        clock: Wall clock in Unix seconds (``captured_at`` is Unix time).
    """

    def __init__(
        self,
        *,
        raw: bool = True,
        client_buffer: int = 1 << 20,
        max_lag: float = 10.0,
        max_age: float = 0.0,
        send_deadline: float = 1.0,
        close_timeout: float = 2.0,
        chunk: int = 128,
        slice_time: float = 0.001,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._raw = raw
        self.client_buffer = client_buffer
        self.low_water = client_buffer // 4
        self.max_lag = max_lag
        self.max_age = max_age
        self.send_deadline = send_deadline
        self.close_timeout = close_timeout
        self.chunk = chunk
        self.slice_time = slice_time
        self._clock = clock
        self._clients: dict[ServerConnection, _Client] = {}
        self._ready: list[_Client] = []
        self._lagging: set[_Client] = set()
        self._queue: collections.deque[_Job] = collections.deque()
        self.drops: dict[str, int] = collections.defaultdict(int)
        self.slow_closes = 0

    # Membership --------------------------------------------------------

    def add(self, ws: ServerConnection) -> None:
        client = self._clients[ws] = _Client(ws, raw=self._raw)
        ws.transport.set_write_buffer_limits(high=self.client_buffer, low=self.low_water)
        self._ready.append(client)

    def remove(self, ws: ServerConnection) -> None:
        client = self._clients.pop(ws, None)
        if client is None:
            return
        if client.lagging_since is None:
            self._ready.remove(client)
        self._lagging.discard(client)
        # Marked lagging for good: a sliced message still holding it skips it.
        client.lagging_since = client.lagging_since or 1.0
        if client.task is not None and not client.task.done():
            client.task.cancel()

    def count(self) -> int:
        return len(self._clients)

    # Delivery ----------------------------------------------------------

    def deliver(self, data: bytes) -> None:
        captured = wire.peek(data).captured_at
        ready = self._ready
        if self.max_age and self._clock() - captured > self.max_age:
            self.drops["stale"] += len(ready)
            return
        frame = Frame(Opcode.TEXT, data).serialize(mask=False)
        for client in self._lagging:
            # Off the ready list, a lagging client keeps only the newest message.
            self._hold(client, frame, captured)
        if self._queue:
            # An earlier message is still going out: this one waits, so none overtakes another.
            if len(self._queue) > _MAX_WAITING:
                shed = self._queue[1]
                del self._queue[1]
                self.drops["overload"] += len(shed.members)
            self._queue.append(_Job(frame, captured, list(ready)))
            return
        if len(ready) <= (self.chunk or _TIME_CHECK_EVERY):
            self._write(ready, frame, captured)
            return
        self._queue.append(_Job(frame, captured, list(ready)))
        self._step()

    def _step(self) -> None:
        job = self._queue[0]
        if job.index == 0 and self.max_age and self._clock() - job.captured > self.max_age:
            self.drops["stale"] += len(job.members)
            self._queue.popleft()
        else:
            members = job.members
            index = job.index
            stop = min(index + self.chunk, len(members)) if self.chunk else len(members)
            budget = time.perf_counter() + self.slice_time if self.slice_time else None
            while index < stop:
                end = min(index + _TIME_CHECK_EVERY, stop)
                self._write(members[index:end], job.frame, job.captured)
                index = end
                if budget is not None and time.perf_counter() >= budget:
                    break
            job.index = index
            if index >= len(members):
                self._queue.popleft()
        if self._queue:
            asyncio.get_running_loop().call_soon(self._step)

    def _write(self, clients: list[_Client], frame: bytes, captured: float) -> None:
        """The hot loop: one look at the transport's queue, one write."""
        size = len(frame)
        limit = self.client_buffer
        for client in clients:
            if client.lagging_since is not None:
                # Started lagging while this message was going out in slices.
                self._hold(client, frame, captured)
                continue
            queued = client.buffered()
            send = client.send
            if queued or send is None:
                if queued > limit:
                    self._start_lagging(client, frame, captured)
                else:
                    client.write(frame)
                continue
            try:
                sent = send(frame)
            except (BlockingIOError, InterruptedError):
                client.write(frame)
                continue
            except OSError:
                # A dead connection: the transport's own write reports it and closes it.
                client.write(frame)
                continue
            if sent < size:
                client.write(frame[sent:])

    # Lagging clients ---------------------------------------------------

    def _hold(self, client: _Client, frame: bytes, captured: float) -> None:
        if client.pending is not None and client.pending[0] is not frame:
            self.drops["conflated"] += 1
        client.pending = (frame, captured)

    def _start_lagging(self, client: _Client, frame: bytes, captured: float) -> None:
        loop = asyncio.get_running_loop()
        client.lagging_since = loop.time()
        client.pending = (frame, captured)
        self._ready.remove(client)
        self._lagging.add(client)
        client.task = loop.create_task(self._drain(client))

    async def _drain(self, client: _Client) -> None:
        try:
            await self._wait_caught_up(client)
        finally:
            self._lagging.discard(client)

    async def _wait_caught_up(self, client: _Client) -> None:
        loop = asyncio.get_running_loop()
        ws = client.ws
        since = client.lagging_since or loop.time()
        while client.buffered() > self.low_water:
            if loop.time() - since > self.max_lag:
                await self._close_slow(client)
                return
            try:
                async with asyncio.timeout(self.send_deadline):
                    await ws.drain()
            except TimeoutError:
                pass
            except (ConnectionError, OSError):
                return
            if ws.transport.is_closing():
                return
            if client.buffered() > self.low_water:
                # drain() returned without the transport pausing (not above high water): poll gently.
                await asyncio.sleep(self.send_deadline / 10)
        if client.ws not in self._clients:
            return
        pending, client.pending = client.pending, None
        client.lagging_since = None
        self._lagging.discard(client)
        self._ready.append(client)
        if pending is not None:
            frame, captured = pending
            if self.max_age and self._clock() - captured > self.max_age:
                self.drops["stale"] += 1
            else:
                client.write(frame)

    async def _close_slow(self, client: _Client) -> None:
        self.slow_closes += 1
        client.pending = None
        try:
            async with asyncio.timeout(self.close_timeout):
                await client.ws.close(wire.CLOSE_SLOW_CONSUMER, "slow consumer")
        except TimeoutError:
            # The close frame is stuck behind the full buffer: cut the connection.
            client.ws.transport.abort()

    # Figures -----------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        buffered = [c.buffered() for c in self._clients.values()]
        return {
            "buffered_clients": sum(1 for b in buffered if b),
            "buffered_bytes": sum(buffered),
            "lagging": len(self._lagging),
            "in_flight": len(self._queue),
            "slow_closes": self.slow_closes,
            "drops": dict(self.drops),
        }
