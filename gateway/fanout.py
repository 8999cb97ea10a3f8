"""Fan-out: one message in, every local client of its stream out, none able to hurt the others.

The hot path (:meth:`Fanout.deliver`) never awaits and does, per message,
one JSON parse (:func:`framecast.wire.peek`), one frame serialisation and then
one ``transport.write()`` per client: what :func:`websockets.asyncio.server.broadcast`
does, minus framing the same bytes again for every connection. Streams with
more than ``chunk`` clients are written in slices, one event-loop callback each
(in FIFO order, so per-client order holds), so that one message to thousands of
clients does not hold the loop for the whole fan-out. On top of that comes the
backpressure policy that ``broadcast()`` lacks:

* A message older than ``max_age`` (by its capture time) is dropped for everyone
  (reason ``stale``): a late result is worse than none for live video.
* A client with more than ``client_buffer`` bytes unsent is **lagging**: it is not
  written to. It keeps only the newest pending message per stream and kind
  (result, status, preview, notice; older ones are dropped, reason ``conflated``),
  and a drain task waits, in steps of ``send_deadline``, for its buffer to fall to
  the low-water mark; then the pending messages still younger than ``max_age``
  are written and the client is back on the synchronous path.
* A client lagging for longer than ``max_lag`` is closed with 4008 (slow
  consumer); if even the close frame cannot get through within ``close_timeout``
  the TCP connection is aborted.

Memory per client is therefore bounded by about ``client_buffer`` plus one
message per stream and kind. The fan-out never awaits clients one after
another, creates no task per client per message, and updates its counters once
per message.

Example (standalone, e.g. in a benchmark)::

    fanout = Fanout(client_buffer=1 << 20, max_age=2.0)
    async def handler(connection):
        fanout.add("cam1", connection)
        try:
            await connection.wait_closed()
        finally:
            fanout.discard(connection)
    ...
    fanout.deliver("cam1", encoded_result)   # from the Redis reader, synchronously

This module has no Redis and no Prometheus dependency: counters live in a
plain :class:`FanoutStats`, and per-message timings go to an optional callback.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from websockets.asyncio.connection import Connection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from framecast import wire

__all__ = ["Fanout", "FanoutStats", "MessageHook"]

log = logging.getLogger(__name__)

_OPEN = State.OPEN

# Messages of one stream that may wait behind the one going out in slices before the oldest
# waiting result is shed: a memory cap for a stream that is over capacity. Latency has its own
# bound, --max-age, applied when a waiting message's turn comes; a burst (a backlog Redis hands
# over at once) within the cap is delivered whole.
_MAX_WAITING = 64

# Clients written between two looks at the clock in a slice: a clock read costs about a write's 1%.
_TIME_CHECK_EVERY = 16

# Pending slots a lagging client keeps per stream: one message of each kind.
_RESULT, _STATUS, _PREVIEW, _NOTICE = "result", "status", "preview", "notice"

MessageHook = Callable[[str, float, float | None, int], None]
"""Called once per delivered message with ``(kind, fanout_seconds, age_seconds or None, clients_written)``."""


@dataclass
class FanoutStats:
    """Counters of a :class:`Fanout`, updated once per message (never per client).

    Attributes:
        messages: Messages handed to the fan-out, by kind.
        deliveries: Messages written to client sockets.
        bytes_out: Bytes of WebSocket frames written to client sockets (payload
            bytes, before compression, for permessage-deflate connections).
        drops: Deliveries not made, by reason: ``stale`` (older than
            ``max_age``), ``conflated`` (replaced by a newer one while the client
            lagged), ``malformed`` (not a valid stream message: dropped for all),
            ``join-overflow`` (too many live messages while a replay ran),
            ``overload`` (the stream's messages arrived faster than they could be
            written to its audience: the oldest waiting ones were skipped).
        slow_closes: Clients closed with 4008.
    """

    messages: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    deliveries: int = 0
    bytes_out: int = 0
    drops: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    slow_closes: int = 0


class _Client:
    """Fan-out state of one connection."""

    __slots__ = (
        "closing",
        "connection",
        "deflate",
        "drain_task",
        "joining",
        "lagging_since",
        "pending",
        "streams",
        "transport",
    )

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.transport = connection.transport
        # permessage-deflate compresses with per-connection state: no shared frame possible.
        self.deflate = bool(connection.protocol.extensions)
        self.lagging_since: float | None = None
        # (stream, kind) -> (data, binary, captured_at or None); dict order = arrival order.
        self.pending: dict[tuple[str, str], tuple[bytes, bool, float | None]] = {}
        self.drain_task: asyncio.Task[None] | None = None
        self.closing = False
        self.streams: dict[str, bool] = {}  # stream -> previews wanted
        self.joining: dict[str, collections.deque[tuple[wire.Peek | None, bytes]]] = {}


class _Job:
    """One message on its way to a stream's clients (possibly across several loop callbacks)."""

    __slots__ = (
        "age",
        "captured",
        "conflated",
        "data",
        "frame",
        "framed_bytes",
        "index",
        "kind",
        "members",
        "opcode",
        "sent",
        "slot",
        "spent",
    )

    def __init__(
        self,
        slot: tuple[str, str],
        data: bytes,
        opcode: Opcode,
        captured: float | None,
        age: float | None,
        kind: str,
    ) -> None:
        self.slot = slot
        self.data = data
        self.opcode = opcode
        self.captured = captured
        self.age = age
        self.kind = kind
        self.frame: bytes | None = None
        self.members: list[_Client] | None = None
        self.index = 0
        self.sent = self.conflated = self.framed_bytes = 0
        self.spent = 0.0


class Fanout:
    """Local clients per stream, and the policy for writing to them.

    Args:
        client_buffer: Unsent bytes above which a client is lagging. The
            fan-out sets each transport's write-buffer high-water mark to it.
        low_water: Unsent bytes at or below which a lagging client has caught up
            (default ``client_buffer // 4``).
        send_deadline: Seconds between checks of a lagging client.
        max_lag: Seconds a client may stay lagging before it is closed with 4008.
        max_age: Seconds since capture after which a message is not sent
            (0 disables the check).
        close_timeout: Seconds the 4008 closing handshake may take before the
            TCP connection is aborted.
        join_limit: Live messages kept per joining client and stream while its
            replay is sent.
        chunk: Clients written per event-loop callback at most; a stream with
            more clients is served in slices so the loop stays responsive (0: no
            count limit, slices end on ``slice_time`` alone).
        slice_time: Seconds one slice may hold the event loop at most: a slice
            also ends early when it has run this long (checked every 16
            clients), because the cost of a write varies several-fold between
            machines and with the kernel's load (0: count only).
        clock: Wall clock in Unix seconds (for ``max_age``; captured_at is Unix time).
        on_message: Optional :data:`MessageHook` (metrics).
        stats: Counters to update (a new :class:`FanoutStats` by default).
    """

    def __init__(
        self,
        *,
        client_buffer: int = 1 << 20,
        low_water: int | None = None,
        send_deadline: float = 1.0,
        max_lag: float = 10.0,
        max_age: float = 0.0,
        close_timeout: float = 2.0,
        join_limit: int = 1024,
        chunk: int = 128,
        slice_time: float = 0.001,
        clock: Callable[[], float] = time.time,
        on_message: MessageHook | None = None,
        stats: FanoutStats | None = None,
    ) -> None:
        if client_buffer <= 0:
            raise ValueError("client_buffer must be greater than 0")
        self.client_buffer = client_buffer
        self.low_water = client_buffer // 4 if low_water is None else min(low_water, client_buffer)
        self.send_deadline = send_deadline
        self.max_lag = max_lag
        self.max_age = max_age
        self.close_timeout = close_timeout
        self.join_limit = join_limit
        self.chunk = chunk
        self.slice_time = slice_time
        self._clock = clock
        self.on_message = on_message
        self.stats = stats if stats is not None else FanoutStats()
        self._clients: dict[Connection, _Client] = {}
        self._live: dict[str, dict[_Client, None]] = {}
        self._previews: dict[str, dict[_Client, None]] = {}
        self._joining: dict[str, dict[_Client, None]] = {}
        self._lagging: set[_Client] = set()
        # Per stream, the messages going out in slices, oldest first (absent: none in flight).
        self._sliced: dict[str, collections.deque[_Job]] = {}

    # ------------------------------------------------------------------
    # Membership

    def add(
        self, stream: str, connection: Connection, *, previews: bool = False, joining: bool = False
    ) -> None:
        """Add a client to a stream.

        Args:
            stream: Stream name.
            connection: An open websockets asyncio connection.
            previews: Also send this client the stream's binary previews.
            joining: Buffer the stream's live messages for this client instead of
                sending them, until :meth:`go_live` (used while a replay is sent,
                so that replay and live meet with no gap and no duplicate).
        """
        client = self._clients.get(connection)
        if client is None:
            client = self._clients[connection] = _Client(connection)
            with contextlib.suppress(AttributeError, RuntimeError):
                client.transport.set_write_buffer_limits(high=self.client_buffer, low=self.low_water)
        self._detach(stream, client)
        client.streams[stream] = previews
        if joining:
            client.joining[stream] = collections.deque(maxlen=self.join_limit)
            self._joining.setdefault(stream, {})[client] = None
        else:
            self._attach(stream, client)

    def go_live(self, stream: str, connection: Connection, *, epoch: str | None = None, seq: int = 0) -> None:
        """End a client's joining state: send what was buffered, then deliver live.

        Buffered results of ``epoch`` with ``seq`` at or below ``seq`` (already
        sent by the replay) are skipped; everything else is sent in order.
        """
        client = self._clients.get(connection)
        if client is None or stream not in client.streams:
            return
        buffered = client.joining.pop(stream, None)
        members = self._joining.get(stream)
        if members is not None:
            members.pop(client, None)
            if not members:
                del self._joining[stream]
        if buffered:
            if len(buffered) == buffered.maxlen:
                # The deque may have dropped older entries: say so rather than pretend.
                self.stats.drops["join-overflow"] += 1
                self._send_one(
                    client, (stream, _NOTICE), wire.encode(wire.Gap(stream=stream, reason="overflow"))
                )
            now = self._clock()
            for peeked, data in buffered:
                if peeked is None:
                    self._send_one(client, (stream, _NOTICE), data)
                    continue
                if peeked.type == _RESULT and peeked.epoch == epoch and peeked.seq <= seq:
                    continue
                if self.max_age and now - peeked.captured_at > self.max_age:
                    self.stats.drops["stale"] += 1
                    continue
                captured = peeked.captured_at if peeked.type == _RESULT else None
                self._send_one(client, (stream, peeked.type), data, captured=captured)
        self._attach(stream, client)

    def remove(self, stream: str, connection: Connection) -> None:
        """Remove a client from one stream (its pending messages for it are dropped)."""
        client = self._clients.get(connection)
        if client is None:
            return
        self._detach(stream, client)
        client.streams.pop(stream, None)
        if not client.streams:
            self._forget(client)

    def discard(self, connection: Connection) -> None:
        """Remove a client from every stream (call when its connection ends)."""
        client = self._clients.get(connection)
        if client is None:
            return
        for stream in list(client.streams):
            self._detach(stream, client)
        client.streams.clear()
        self._forget(client)

    def streams(self) -> list[str]:
        """Streams with at least one client (live or joining)."""
        return sorted(set(self._live) | set(self._joining))

    def clients(self, stream: str | None = None) -> int:
        """Clients of ``stream`` (live and joining), or all clients."""
        if stream is None:
            return len(self._clients)
        return len(self._live.get(stream, ())) + len(self._joining.get(stream, ()))

    def subscriptions(self) -> int:
        """Client-stream pairs."""
        return sum(len(c.streams) for c in self._clients.values())

    @property
    def lagging(self) -> int:
        """Clients currently lagging."""
        return len(self._lagging)

    def in_flight(self) -> int:
        """Messages still going out in slices or waiting behind one, over every stream."""
        return sum(len(queue) for queue in self._sliced.values())

    def max_buffered(self) -> int:
        """Largest unsent byte count of any client's socket (for a gauge; O(clients))."""
        return max((c.transport.get_write_buffer_size() for c in self._clients.values()), default=0)

    def is_lagging(self, connection: Connection) -> bool:
        """Whether a client is currently lagging."""
        client = self._clients.get(connection)
        return client is not None and client.lagging_since is not None

    # ------------------------------------------------------------------
    # Delivery (synchronous: called from the Redis reader)

    def deliver(self, stream: str, data: bytes) -> wire.Peek | None:
        """Send a stream message (result or status, encoded) to the stream's clients.

        The bytes are forwarded unchanged. Returns the message's routing fields,
        or None if it was malformed (then it is dropped for everyone).
        """
        try:
            peeked = wire.peek(data)
        except wire.WireError as exc:
            self.stats.drops["malformed"] += 1
            log.debug("dropped a malformed message on %s: %s", stream, exc)
            return None
        kind = peeked.type
        self.stats.messages[kind] += 1
        joiners = self._joining.get(stream)
        if joiners:
            for client in joiners:
                self._buffer_joining(client, stream, peeked, data)
        clients = self._live.get(stream)
        if not clients:
            return peeked
        age = self._clock() - peeked.captured_at
        if self.max_age and age > self.max_age:
            self.stats.drops["stale"] += len(clients)
            return peeked
        captured = peeked.captured_at if kind == _RESULT else None
        self._fan(
            clients, (stream, kind), data, Opcode.TEXT, captured, age if kind == _RESULT else None, kind
        )
        return peeked

    def deliver_preview(self, stream: str, data: bytes) -> bool:
        """Send an encoded binary preview to the stream's clients that asked for previews.

        Returns False if it was malformed (dropped).
        """
        clients = self._previews.get(stream)
        if not clients:
            return True
        try:
            captured = wire.decode_preview(data).captured_at
        except wire.WireError:
            self.stats.drops["malformed"] += 1
            return False
        self.stats.messages[_PREVIEW] += 1
        age = self._clock() - captured
        if self.max_age and age > self.max_age:
            self.stats.drops["stale"] += len(clients)
            return True
        self._fan(clients, (stream, _PREVIEW), data, Opcode.BINARY, captured, None, _PREVIEW)
        return True

    def announce(self, stream: str, data: bytes, *, kind: str = _NOTICE) -> None:
        """Send a gateway-made text message (gap, offline status) to every client of a stream.

        Never dropped as stale; joining clients get it after their replay.
        """
        self.stats.messages[kind] += 1
        joiners = self._joining.get(stream)
        if joiners:
            for client in joiners:
                self._buffer_joining(client, stream, None, data)
        clients = self._live.get(stream)
        if clients:
            self._fan(clients, (stream, kind), data, Opcode.TEXT, None, None, kind)

    def _fan(
        self,
        clients: dict[_Client, None],
        slot: tuple[str, str],
        data: bytes,
        opcode: Opcode,
        captured: float | None,
        age: float | None,
        kind: str,
    ) -> None:
        job = _Job(slot, data, opcode, captured, age, kind)
        stream = slot[0]
        queued = self._sliced.get(stream)
        if queued is not None:
            # An earlier message of this stream is still going out in slices: a newer one must
            # not overtake it at any client, so it waits its turn whatever its audience.
            job.members = list(clients)
            if len(queued) > _MAX_WAITING:
                self._shed(queued)
            queued.append(job)
            return
        # Audiences up to `chunk` are written in one go: slicing costs a loop turn and a copy of
        # the membership, which a hundred writes (about a millisecond) do not justify.
        if len(clients) > (self.chunk or (_TIME_CHECK_EVERY if self.slice_time else len(clients))):
            # Big audiences are served in slices, each its own event-loop callback, so that
            # handshakes, pings and health checks get a turn between them.
            job.members = list(clients)
            self._sliced[stream] = collections.deque([job])
            self._step(stream)
            return
        started = time.perf_counter()
        self._write_all(clients, job)
        job.spent = time.perf_counter() - started
        self._finish(job)

    def _step(self, stream: str) -> None:
        """Write the next slice of the oldest sliced message of ``stream``, then yield to the loop.

        One message of a stream is in flight at a time and each runs to its last client before
        the next starts, so every client sees a stream's messages in publication order however
        the slices fall (their size depends on the clock).
        """
        queue = self._sliced[stream]
        job = queue[0]
        # A message that waited behind others: is it still fresh enough to be worth sending?
        if (
            job.index == 0
            and job.captured is not None
            and self.max_age
            and self._clock() - job.captured > self.max_age
        ):
            assert job.members is not None
            self.stats.drops["stale"] += len(job.members)
            queue.popleft()
            if queue:
                self._next(stream)
            else:
                del self._sliced[stream]
            return
        started = time.perf_counter()
        members = job.members
        assert members is not None
        # Membership may have changed since the message arrived: skip clients that left.
        current = (self._previews if job.opcode is Opcode.BINARY else self._live).get(stream)
        index = job.index
        stop = min(index + self.chunk, len(members)) if self.chunk else len(members)
        budget = started + self.slice_time if self.slice_time else None
        while index < stop:
            end = min(index + _TIME_CHECK_EVERY, stop)
            if current:
                self._write_all([c for c in members[index:end] if c in current], job)
            index = end
            if budget is not None and time.perf_counter() >= budget:
                break
        job.index = index
        job.spent += time.perf_counter() - started
        if index >= len(members):
            queue.popleft()
            self._finish(job)
            if not queue:
                del self._sliced[stream]
                return
        self._next(stream)

    def _next(self, stream: str) -> None:
        try:
            asyncio.get_running_loop().call_soon(self._step, stream)
        except RuntimeError:  # no loop (synchronous use): finish now
            self._step(stream)

    def _shed(self, queue: collections.deque[_Job]) -> None:
        """Drop the oldest waiting result or preview of an overloaded stream (never the one in flight).

        Messages arrive faster than this process can write them to the stream's audience: like a
        lagging client, the stream as a whole skips to the present rather than fall ever further
        behind, and memory stays bounded. Status and gateway notices are never shed.
        """
        for position in range(1, len(queue)):
            if queue[position].kind in (_RESULT, _PREVIEW):
                shed = queue[position]
                del queue[position]
                assert shed.members is not None
                self.stats.drops["overload"] += len(shed.members)
                return

    def _write_all(self, clients: Iterable[_Client], job: _Job) -> None:
        """The hot loop: one check and one write per client, nothing else."""
        slot, data, captured = job.slot, job.data, job.captured
        binary = job.opcode is Opcode.BINARY
        limit = self.client_buffer
        frame = job.frame
        sent = conflated = framed_bytes = 0
        for client in clients:
            if client.lagging_since is not None:
                if self._hold(client, slot, data, binary, captured):
                    conflated += 1
                continue
            connection = client.connection
            if connection.protocol.state is not _OPEN or connection.send_in_progress is not None:
                continue
            transport = client.transport
            if transport.get_write_buffer_size() > limit:
                self._hold(client, slot, data, binary, captured)
                self._start_lagging(client)
                continue
            if client.deflate:
                try:
                    if binary:
                        connection.protocol.send_binary(data)
                    else:
                        connection.protocol.send_text(data)
                    connection.send_data()
                except Exception as exc:  # a dying connection: its handler will clean up
                    log.debug("write failed: %s", exc)
                    continue
                framed_bytes += len(data)
            else:
                if frame is None:
                    frame = job.frame = Frame(job.opcode, data).serialize(mask=False)
                transport.write(frame)
                framed_bytes += len(frame)
            sent += 1
        job.sent += sent
        job.conflated += conflated
        job.framed_bytes += framed_bytes

    def _finish(self, job: _Job) -> None:
        stats = self.stats
        stats.deliveries += job.sent
        stats.bytes_out += job.framed_bytes
        if job.conflated:
            stats.drops["conflated"] += job.conflated
        if self.on_message is not None:
            self.on_message(job.kind, job.spent, job.age, job.sent)

    # ------------------------------------------------------------------
    # One client (joining flush, lag flush)

    def _send_one(
        self,
        client: _Client,
        slot: tuple[str, str],
        data: bytes,
        *,
        binary: bool = False,
        captured: float | None = None,
    ) -> bool:
        """Apply the same policy as the hot path to a single client; True if written."""
        if client.lagging_since is not None:
            if self._hold(client, slot, data, binary, captured):
                self.stats.drops["conflated"] += 1
            return False
        connection = client.connection
        if connection.protocol.state is not _OPEN:
            return False
        if client.transport.get_write_buffer_size() > self.client_buffer:
            self._hold(client, slot, data, binary, captured)
            self._start_lagging(client)
            return False
        return self._write(client, data, binary)

    def _write(self, client: _Client, data: bytes, binary: bool) -> bool:
        connection = client.connection
        try:
            if binary:
                connection.protocol.send_binary(data)
            else:
                connection.protocol.send_text(data)
            connection.send_data()
        except Exception as exc:
            log.debug("write failed: %s", exc)
            return False
        self.stats.deliveries += 1
        self.stats.bytes_out += len(data)
        return True

    def _buffer_joining(self, client: _Client, stream: str, peeked: wire.Peek | None, data: bytes) -> None:
        buffered = client.joining.get(stream)
        if buffered is not None:
            buffered.append((peeked, data))

    @staticmethod
    def _hold(
        client: _Client, slot: tuple[str, str], data: bytes, binary: bool, captured: float | None
    ) -> bool:
        """Keep only the newest message of a slot; True if an older one was replaced."""
        replaced = client.pending.pop(slot, None) is not None
        client.pending[slot] = (data, binary, captured)  # re-inserted last: arrival order kept
        return replaced

    # ------------------------------------------------------------------
    # Lagging clients

    def _start_lagging(self, client: _Client) -> None:
        loop = asyncio.get_running_loop()
        client.lagging_since = loop.time()
        self._lagging.add(client)
        if client.drain_task is None or client.drain_task.done():
            client.drain_task = loop.create_task(self._drain(client))

    async def _drain(self, client: _Client) -> None:
        """Wait for a lagging client to catch up, flush its newest messages, or close it."""
        loop = asyncio.get_running_loop()
        connection = client.connection
        try:
            while client.lagging_since is not None:
                if connection.protocol.state is not _OPEN:
                    return
                if client.transport.get_write_buffer_size() <= self.low_water:
                    self._flush(client)
                    continue
                try:
                    async with asyncio.timeout(self.send_deadline):
                        await connection.drain()
                except TimeoutError:
                    pass
                else:
                    if client.transport.get_write_buffer_size() > self.low_water and not connection.paused:
                        # Not paused yet above low water (limits changed under us): poll gently.
                        await asyncio.sleep(self.send_deadline / 10)
                self._expire(client)
                if client.lagging_since is not None and loop.time() - client.lagging_since > self.max_lag:
                    await self._close_slow(client)
                    return
        except (ConnectionError, OSError):
            return
        finally:
            if client.lagging_since is not None and connection.protocol.state is not _OPEN:
                self._lagging.discard(client)

    def _flush(self, client: _Client) -> None:
        """Write a caught-up client's pending messages (newest per slot), skipping stale ones."""
        client.lagging_since = None
        self._lagging.discard(client)
        now = self._clock()
        while client.pending:
            slot = next(iter(client.pending))
            data, binary, captured = client.pending.pop(slot)
            if self.max_age and captured is not None and now - captured > self.max_age:
                self.stats.drops["stale"] += 1
                continue
            if client.connection.protocol.state is not _OPEN:
                client.pending.clear()
                return
            self._write(client, data, binary)
            if client.transport.get_write_buffer_size() > self.client_buffer and client.pending:
                client.lagging_since = asyncio.get_running_loop().time()
                self._lagging.add(client)
                return

    def _expire(self, client: _Client) -> None:
        """Drop pending messages that became stale while the client lagged."""
        if not self.max_age:
            return
        now = self._clock()
        for slot, (_, _, captured) in list(client.pending.items()):
            if captured is not None and now - captured > self.max_age:
                del client.pending[slot]
                self.stats.drops["stale"] += 1

    async def _close_slow(self, client: _Client) -> None:
        client.closing = True
        client.pending.clear()
        self._lagging.discard(client)
        client.lagging_since = None
        self.stats.slow_closes += 1
        connection = client.connection
        log.info(
            "closing slow consumer %s (lagging for over %.1f s)", connection.remote_address, self.max_lag
        )
        try:
            async with asyncio.timeout(self.close_timeout):
                await connection.close(wire.CLOSE_SLOW_CONSUMER, "slow consumer")
        except TimeoutError:
            # Its buffer is full, so the close frame is stuck behind it: cut the connection.
            client.transport.abort()

    # ------------------------------------------------------------------
    # Bookkeeping

    def _attach(self, stream: str, client: _Client) -> None:
        self._live.setdefault(stream, {})[client] = None
        if client.streams.get(stream):
            self._previews.setdefault(stream, {})[client] = None

    def _detach(self, stream: str, client: _Client) -> None:
        for table in (self._live, self._previews, self._joining):
            members = table.get(stream)
            if members is not None and client in members:
                del members[client]
                if not members:
                    del table[stream]
        client.joining.pop(stream, None)
        for slot in [s for s in client.pending if s[0] == stream]:
            del client.pending[slot]

    def _forget(self, client: _Client) -> None:
        self._clients.pop(client.connection, None)
        self._lagging.discard(client)
        client.lagging_since = None
        client.pending.clear()
        task = client.drain_task
        if task is not None and not task.done() and not client.closing:
            task.cancel()

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._clients))

    async def aclose(self) -> None:
        """Cancel every drain task (at shutdown)."""
        tasks = [c.drain_task for c in self._clients.values() if c.drain_task and not c.drain_task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
