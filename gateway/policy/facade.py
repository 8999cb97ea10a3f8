"""The fan-out policy, sans I/O: who gets which message, when, and what to do with a slow client.

Like websockets' own protocol core, :class:`Policy` does no I/O of its own: no
asyncio, no sockets, no websockets. Events go in as method calls (a message
arrived, a client joined, went live or left, a slice's turn came, a clock
tick); the effects come out two ways:

* **Writes** go straight to each client's :class:`Sink`, synchronously, because
  a write to a buffer with room cannot block and the hot path must not allocate
  an action per client per message. A sink reports its buffer level and state.
* **Actions** that need waiting are queued and collected with
  :meth:`Policy.actions`: :class:`Step` (write the next slice of a stream on the
  next loop turn), :class:`Wait` (this client must drain: await it) and
  :class:`Close` (close this client with 4008, it lagged too long).

The driver (:class:`gateway.fanout.Fanout`) turns sinks into websockets
connections and actions into loop callbacks and one ``asyncio.wait``;
tests drive the policy with fake sinks and fake clocks.

Rules, per message and client:

* A message older than ``max_age`` by its capture time is dropped (``stale``),
  when it arrives, when its turn comes after waiting behind a sliced one, and
  when a lagging client's pending copy is flushed or expires.
* A client with more than ``client_buffer`` bytes unsent is lagging: it keeps
  only the newest message per stream and kind (``conflated``), until a tick
  finds its buffer at ``low_water``: then its pending messages are written, in
  arrival order. A client lagging longer than ``max_lag`` gets a :class:`Close`.
* Lag measured end to end (``lag_threshold``): every :meth:`Policy.probe` (one per
  probe interval) sends a wave of probes to the clients of each stream whose
  fan-outs carried ``probe_messages`` messages or ``probe_bytes`` bytes since its
  last wave: each client's next write carries a WebSocket ping right behind the data, and the
  client answers it only once it has read everything before it, through any
  number of proxies. A probe unanswered for more than ``lag_threshold`` makes the
  client lagging (as above; catching up also needs the answer,
  :meth:`Policy.pong`), and one unanswered for more than ``max_lag`` gets a
  :class:`Close`. The cost is the answer (a frame the gateway must read and
  parse, tens of microseconds): one per client per ``probe_messages`` deliveries
  at most, none without traffic.
* A stream with more than ``chunk`` clients is written in slices; one message
  per stream is in flight at a time so per-client order holds; more than
  ``max_waiting`` waiting behind it shed their oldest result or preview
  (``overload``).
* A joining client's live messages are buffered (at most ``join_limit``
  messages and ``join_bytes`` bytes, oldest dropped first and a gap announced)
  until :meth:`Policy.go_live`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from framecast import wire

__all__ = [
    "OVER",
    "SKIP",
    "WRITTEN",
    "Close",
    "FanoutStats",
    "Framer",
    "MessageHook",
    "PingFramer",
    "Policy",
    "Sink",
    "Step",
    "Wait",
    "WriteHook",
]

log = logging.getLogger(__name__)

# Messages of one stream that may wait behind the one going out in slices before the oldest
# waiting result is shed: a memory cap for a stream that is over capacity. Latency has its own
# bound, max_age, applied when a waiting message's turn comes.
MAX_WAITING = 64

# Clients written between two looks at the clock in a slice: a clock read costs about a write's 1%.
_TIME_CHECK_EVERY = 16

RESULT, STATUS, PREVIEW, NOTICE = "result", "status", "preview", "notice"

# What Sink.offer did: written, over the buffer limit (not written), not writable (not written).
WRITTEN, OVER, SKIP = 0, 1, 2

MessageHook = Callable[[str, float, float | None, int], None]
"""Called once per delivered message with ``(kind, fanout_seconds, age_seconds or None, clients_written)``."""

WriteHook = Callable[[str, float, int], None]
"""Called at write time, once per slice or flush, with ``(kind, capture_age_seconds, clients_written)``."""

Framer = Callable[[bytes, bool], bytes]
"""Frames a message once for every client that can share the bytes: ``(data, binary) -> frame``."""

PingFramer = Callable[[bytes], bytes]
"""Frames a lag probe (a WebSocket ping) with the given payload: ``payload -> frame``."""

# Lag probes carry 8 bytes, this prefix and a round number: never equal to the 4 random bytes of
# websockets' own keepalive pings, so both can be outstanding on one connection.
_PROBE_PREFIX = b"fcl:"


class Sink(Protocol):
    """One client's output, as the policy sees it (implemented by :mod:`gateway._wsio`)."""

    @property
    def shared(self) -> bool:
        """Whether the shared pre-framed bytes can be written (no per-connection extension)."""

    def buffered(self) -> int:
        """Bytes written but not yet sent."""

    def writable(self) -> bool:
        """Open, and not in the middle of a fragmented message of its own."""

    def closed(self) -> bool:
        """Closing or closed: nothing will ever be written again."""

    def write_frame(self, frame: bytes) -> None:
        """Write bytes framed by the :data:`Framer`."""

    def offer(self, frame: bytes, limit: int) -> int:
        """The hot path's one call: if writable with at most ``limit`` bytes unsent, write ``frame``.

        Returns:
            :data:`WRITTEN` (0), :data:`OVER` (1: more than ``limit`` unsent, nothing
            written) or :data:`SKIP` (2: not writable, nothing written).
        """

    def write_message(self, data: bytes, binary: bool) -> int:
        """Frame (and compress) ``data`` for this connection and write it; returns the bytes counted.

        Raises:
            Exception: The connection is dying (the policy skips it).
        """

    def expect_pong(self, payload: bytes) -> None:
        """A lag probe with ``payload`` was written behind the data: report its pong.

        The driver calls :meth:`Policy.pong` with the client's key when the answer comes.
        """


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """Call :meth:`Policy.step` for ``stream`` on the next event-loop turn."""

    stream: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """``key`` is lagging: await its drain and :meth:`Policy.tick` when it or the deadline comes."""

    key: Hashable


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    """Close ``key`` with 4008 (slow consumer); abort it if the close cannot get through."""

    key: Hashable


Action = Step | Wait | Close


@dataclass
class FanoutStats:
    """Counters of a fan-out, updated once per message (never per client).

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
        probes: Lag probes (pings behind the data) written.
        pongs: Lag probes answered.
        probe_lags: Clients that started lagging because a probe went unanswered
            for more than ``lag_threshold`` (the others started on their buffer level).
    """

    messages: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    deliveries: int = 0
    bytes_out: int = 0
    drops: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    slow_closes: int = 0
    probes: int = 0
    pongs: int = 0
    probe_lags: int = 0


# One pending or buffered message: (data, binary, captured_at or None).
_Held = tuple[bytes, bool, float | None]


class _Join:
    """Live messages buffered for a joining client, bounded in count and bytes."""

    __slots__ = ("bytes", "items", "overflowed")

    def __init__(self) -> None:
        self.items: collections.deque[tuple[wire.Peek | None, bytes]] = collections.deque()
        self.bytes = 0
        self.overflowed = False


class _Client:
    """Policy state of one client; the sink's methods are bound once, for the hot loop.

    ``direct`` is the hot loop's one test per client: it shares the pre-framed bytes, is
    not lagging and is not due a lag probe, so :meth:`Sink.offer` alone decides. Only
    :meth:`lag` and :meth:`due` change it.
    """

    __slots__ = (
        "buffered",
        "closing",
        "direct",
        "joining",
        "key",
        "lagging_since",
        "offer",
        "pending",
        "probe_due",
        "probe_sent",
        "shared",
        "sink",
        "streams",
        "writable",
        "write_frame",
    )

    def __init__(self, key: Hashable, sink: Sink) -> None:
        self.key = key
        self.sink = sink
        self.shared = sink.shared
        self.buffered = sink.buffered
        self.writable = sink.writable
        self.write_frame = sink.write_frame
        self.offer = sink.offer
        self.lagging_since: float | None = None
        self.direct = self.shared
        self.probe_due = False  # the next write carries a lag probe
        self.probe_sent: float | None = None  # monotonic time of the unanswered probe
        # (stream, kind) -> newest held message; dict order = arrival order.
        self.pending: dict[tuple[str, str], _Held] = {}
        self.closing = False
        self.streams: dict[str, bool] = {}  # stream -> previews wanted
        self.joining: dict[str, _Join] = {}

    def lag(self, since: float | None) -> None:
        """Start (``since``: a monotonic time) or end (None) lagging."""
        self.lagging_since = since
        self.direct = since is None and self.shared and not self.probe_due

    def due(self, due: bool) -> None:
        """Owe (or no longer owe) a lag probe with the next write."""
        self.probe_due = due
        self.direct = not due and self.lagging_since is None and self.shared


class _Job:
    """One message on its way to a stream's clients (possibly across several steps)."""

    __slots__ = (
        "age",
        "binary",
        "captured",
        "conflated",
        "data",
        "frame",
        "framed_bytes",
        "index",
        "kind",
        "members",
        "probe",
        "sent",
        "slot",
        "spent",
    )

    def __init__(
        self, slot: tuple[str, str], data: bytes, binary: bool, captured: float | None, age: float | None
    ) -> None:
        self.slot = slot
        self.kind = slot[1]
        self.data = data
        self.binary = binary
        self.captured = captured
        self.age = age
        self.frame: bytes | None = None
        self.probe: tuple[bytes, bytes] | None = None  # (ping payload, frame + ping frame)
        self.members: list[_Client] = []
        self.index = 0
        self.sent = self.conflated = self.framed_bytes = 0
        self.spent = 0.0


class Policy:
    """Local clients per stream, and the rules for writing to them; see the module docstring.

    Args:
        framer: Frames a message once for the clients that share frames.
        client_buffer: Unsent bytes above which a client is lagging.
        low_water: Unsent bytes at or below which a lagging client has caught up
            (default ``client_buffer // 4``).
        max_lag: Seconds a client may stay lagging, or leave a lag probe unanswered,
            before it gets a :class:`Close`.
        lag_threshold: Seconds a lag probe may go unanswered before the client
            counts as lagging (0: no lag probes).
        ping_framer: Frames a lag probe; lag probes need it (None: none are sent).
        probe_messages: Messages a stream's fan-outs must carry after its last wave of
            probes before the next (or ``probe_bytes``, whichever comes first).
        probe_bytes: Bytes a stream's fan-outs must carry after its last wave of probes
            before the next.
        max_age: Seconds since capture after which a message is not sent (0: never).
        join_limit: Live messages kept per joining client and stream while its replay is sent.
        join_bytes: Bytes of live messages kept per joining client and stream (0: no byte bound).
        chunk: Clients written per step at most; bigger audiences are served in
            slices (0: no count limit, slices end on ``slice_time`` alone).
        slice_time: Seconds one slice may run at most, checked every 16 clients (0: count only).
        max_waiting: Messages of a stream that may wait behind a sliced one before the
            oldest waiting result or preview is shed.
        clock: Wall clock in Unix seconds (captured_at is Unix time).
        monotonic: Clock for lag durations.
        timer: High-resolution clock for slice budgets and the fan-out's own timing.
        on_message: Optional :data:`MessageHook`, at fan-out entry (once per message).
        on_write: Optional :data:`WriteHook`, at write time (once per slice or flush).
        stats: Counters to update (a new :class:`FanoutStats` by default).
    """

    def __init__(
        self,
        *,
        framer: Framer,
        client_buffer: int = 1 << 20,
        low_water: int | None = None,
        max_lag: float = 10.0,
        lag_threshold: float = 0.0,
        ping_framer: PingFramer | None = None,
        probe_messages: int = 256,
        probe_bytes: int = 64 << 10,
        max_age: float = 0.0,
        join_limit: int = 1024,
        join_bytes: int = 8 << 20,
        chunk: int = 128,
        slice_time: float = 0.001,
        max_waiting: int = MAX_WAITING,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        timer: Callable[[], float] = time.perf_counter,
        on_message: MessageHook | None = None,
        on_write: WriteHook | None = None,
        stats: FanoutStats | None = None,
    ) -> None:
        if client_buffer <= 0:
            raise ValueError("client_buffer must be greater than 0")
        self.framer = framer
        self.client_buffer = client_buffer
        self.low_water = client_buffer // 4 if low_water is None else min(low_water, client_buffer)
        self.max_lag = max_lag
        self.lag_threshold = lag_threshold if ping_framer is not None else 0.0
        self.ping_framer = ping_framer
        self.probe_messages = probe_messages
        self.probe_bytes = probe_bytes
        self.max_age = max_age
        self.join_limit = join_limit
        self.join_bytes = join_bytes
        self.chunk = chunk
        self.slice_time = slice_time
        self.max_waiting = max_waiting
        self.clock = clock
        self.monotonic = monotonic
        self.timer = timer
        self.on_message = on_message
        self.on_write = on_write
        self.stats = stats if stats is not None else FanoutStats()
        self._clients: dict[Hashable, _Client] = {}
        self._live: dict[str, dict[_Client, None]] = {}
        self._previews: dict[str, dict[_Client, None]] = {}
        self._joining: dict[str, dict[_Client, None]] = {}
        self._lagging: dict[_Client, None] = {}
        # Per stream, the messages going out in slices, oldest first (absent: none in flight).
        self._sliced: dict[str, collections.deque[_Job]] = {}
        # Streams whose live clients were told of a run of stale results (until a fresh one).
        self._stale_told: set[str] = set()
        self._actions: list[Action] = []
        # The current probe round: (ping payload, ping frame), renewed by every probe().
        self._round = 0
        self._probe: tuple[bytes, bytes] = (b"", b"")
        # Per stream, since its last wave of probes: [messages, bytes, previews, preview bytes].
        self._traffic: dict[str, list[int]] = {}
        # Clients with a probe out, for the rounds' lag check (not a pass over every client).
        self._outstanding: dict[_Client, None] = {}

    # ------------------------------------------------------------------
    # Queries

    def actions(self) -> list[Action]:
        """Take the actions queued since the last call (the driver calls it after every event)."""
        actions, self._actions = self._actions, []
        return actions

    def sink(self, key: Hashable) -> Sink | None:
        """The sink of a client, if it is known."""
        client = self._clients.get(key)
        return None if client is None else client.sink

    def client_keys(self) -> list[Hashable]:
        """Every client's key."""
        return list(self._clients)

    def streams_of(self, key: Hashable) -> list[str]:
        """The streams a client is on, live or joining."""
        client = self._clients.get(key)
        return [] if client is None else list(client.streams)

    def max_buffered(self) -> int:
        """Largest unsent byte count of any client (for a gauge; O(clients))."""
        return max((client.buffered() for client in self._clients.values()), default=0)

    def lagging_keys(self) -> list[Hashable]:
        """Keys of the clients currently lagging."""
        return [client.key for client in self._lagging]

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

    def is_lagging(self, key: Hashable) -> bool:
        """Whether a client is currently lagging."""
        client = self._clients.get(key)
        return client is not None and client.lagging_since is not None

    def probe_age(self, key: Hashable) -> float | None:
        """Seconds a client's lag probe has gone unanswered, or None if it has none out."""
        client = self._clients.get(key)
        if client is None or client.probe_sent is None:
            return None
        return self.monotonic() - client.probe_sent

    def max_probe_age(self) -> float:
        """The oldest unanswered lag probe's age over every client, in seconds (for a gauge; O(clients))."""
        sent = [c.probe_sent for c in self._outstanding if c.probe_sent is not None]
        return self.monotonic() - min(sent) if sent else 0.0

    def held_bytes(self, key: Hashable) -> int:
        """Bytes the policy itself holds for a client: pending (lagging) and join buffers."""
        client = self._clients.get(key)
        if client is None:
            return 0
        return sum(len(held[0]) for held in client.pending.values()) + sum(
            join.bytes for join in client.joining.values()
        )

    def pending(self, key: Hashable) -> list[tuple[str, str]]:
        """The (stream, kind) slots a lagging client holds a message for, in arrival order."""
        client = self._clients.get(key)
        return [] if client is None else list(client.pending)

    # ------------------------------------------------------------------
    # Membership events

    def add(
        self, stream: str, key: Hashable, sink: Sink, *, previews: bool = False, joining: bool = False
    ) -> None:
        """A client joined a stream (``joining``: buffer its live messages until :meth:`go_live`)."""
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = _Client(key, sink)
        self._detach(stream, client)
        client.streams[stream] = previews
        if joining:
            client.joining[stream] = _Join()
            self._joining.setdefault(stream, {})[client] = None
        else:
            self._attach(stream, client)

    def go_live(self, stream: str, key: Hashable, *, epoch: str | None = None, seq: int = 0) -> None:
        """A joining client's replay is done: send what was buffered, then deliver live.

        Buffered results of ``epoch`` with ``seq`` at or below ``seq`` (already
        sent by the replay) are skipped; everything else is sent in order.
        """
        client = self._clients.get(key)
        if client is None or stream not in client.streams:
            return
        join = client.joining.pop(stream, None)
        members = self._joining.get(stream)
        if members is not None:
            members.pop(client, None)
            if not members:
                del self._joining[stream]
        if join is not None:
            if join.overflowed:
                # Older entries were dropped to stay within the bound: say so rather than pretend.
                self.stats.drops["join-overflow"] += 1
                self._send_one(
                    client, (stream, NOTICE), wire.encode(wire.Gap(stream=stream, reason="overflow"))
                )
            now = self.clock()
            stale_told = False
            for peeked, data in join.items:
                if peeked is None:
                    self._send_one(client, (stream, NOTICE), data)
                    continue
                if peeked.type == RESULT and peeked.epoch == epoch and peeked.seq <= seq:
                    continue
                if self.max_age and now - peeked.captured_at > self.max_age:
                    self.stats.drops["stale"] += 1
                    if peeked.type == RESULT and not stale_told:
                        # A result this client was owed is skipped: one notice, so it can resume.
                        stale_told = True
                        gap = wire.Gap(stream=stream, reason="stale")
                        self._send_one(client, (stream, NOTICE), wire.encode(gap))
                    continue
                captured = peeked.captured_at if peeked.type == RESULT else None
                self._send_one(client, (stream, peeked.type), data, captured=captured)
        self._attach(stream, client)

    def remove(self, stream: str, key: Hashable) -> None:
        """A client left one stream (its pending messages for it are dropped)."""
        client = self._clients.get(key)
        if client is None:
            return
        self._detach(stream, client)
        client.streams.pop(stream, None)
        if not client.streams:
            self._forget(client)

    def discard(self, key: Hashable) -> bool:
        """A client's connection ended: remove it from every stream.

        Returns:
            Whether the client was being closed by the policy (a :class:`Close` in progress).
        """
        client = self._clients.get(key)
        if client is None:
            return False
        for stream in list(client.streams):
            self._detach(stream, client)
        client.streams.clear()
        self._forget(client)
        return client.closing

    # ------------------------------------------------------------------
    # Message events

    def deliver(self, stream: str, data: bytes) -> wire.Peek | None:
        """A stream message (result or status, encoded) arrived: forward it unchanged.

        Returns its routing fields, or None if it was malformed (dropped for everyone).
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
            self._buffer_joining(joiners, stream, peeked, data)
        clients = self._live.get(stream)
        age = self.clock() - peeked.captured_at
        if self.max_age and age > self.max_age:
            if clients:
                self.stats.drops["stale"] += len(clients)
                self._tell_stale(stream, kind, clients)
            return peeked
        if kind == RESULT:
            self._stale_told.discard(stream)
        if not clients:
            return peeked
        if kind == RESULT:
            self._fan(clients, _Job((stream, kind), data, False, peeked.captured_at, age))
        else:
            self._fan(clients, _Job((stream, kind), data, False, None, None))
        return peeked

    def _tell_stale(self, stream: str, kind: str, clients: dict[_Client, None]) -> None:
        """A result arrived already older than ``max_age`` and was dropped for every live client.

        The gateway was late, not the client (a Redis link that thawed, a stalled loop): the
        live clients are told ``gap`` ``stale`` once per run of such results, before the fresh
        ones, so a resuming client asks for the hole. Joining clients hold the result in their
        buffer and are told at :meth:`go_live`, by the same clock: one notice each, not two.
        """
        if kind != RESULT or stream in self._stale_told:
            return
        self._stale_told.add(stream)
        self.stats.messages[NOTICE] += 1
        data = wire.encode(wire.Gap(stream=stream, reason="stale"))
        self._fan(clients, _Job((stream, NOTICE), data, False, None, None))

    def deliver_preview(self, stream: str, data: bytes) -> bool:
        """An encoded binary preview arrived, for the clients that asked. False if malformed."""
        clients = self._previews.get(stream)
        if not clients:
            return True
        try:
            captured = wire.decode_preview(data).captured_at
        except wire.WireError:
            self.stats.drops["malformed"] += 1
            return False
        self.stats.messages[PREVIEW] += 1
        age = self.clock() - captured
        if self.max_age and age > self.max_age:
            self.stats.drops["stale"] += len(clients)
            return True
        self._fan(clients, _Job((stream, PREVIEW), data, True, captured, None))
        return True

    def announce(self, stream: str, data: bytes, *, kind: str = NOTICE) -> None:
        """A gateway-made text message (gap, offline status) for every client of a stream.

        Never dropped as stale; joining clients get it after their replay.
        """
        self.stats.messages[kind] += 1
        joiners = self._joining.get(stream)
        if joiners:
            self._buffer_joining(joiners, stream, None, data)
        clients = self._live.get(stream)
        if clients:
            self._fan(clients, _Job((stream, kind), data, False, None, None))

    # ------------------------------------------------------------------
    # Slicing

    def _fan(self, clients: dict[_Client, None], job: _Job) -> None:
        stream = job.slot[0]
        queued = self._sliced.get(stream)
        if queued is not None:
            # An earlier message of this stream is still going out in slices: a newer one must
            # not overtake it at any client, so it waits its turn whatever its audience.
            job.members = list(clients)
            if len(queued) > self.max_waiting:
                self._shed(queued)
            queued.append(job)
            return
        # Audiences up to `chunk` are written in one go: slicing costs a loop turn and a copy of
        # the membership, which a hundred writes (about a millisecond) do not justify.
        if len(clients) > (self.chunk or (_TIME_CHECK_EVERY if self.slice_time else len(clients))):
            job.members = list(clients)
            self._sliced[stream] = collections.deque([job])
            self.step(stream)
            return
        if self.lag_threshold:
            self._carried(job)
        started = self.timer()
        self._write_all(clients, job)
        job.spent = self.timer() - started
        self._finish(job)

    def step(self, stream: str) -> None:
        """A slice's turn came: write the next slice of the oldest sliced message of ``stream``.

        One message of a stream is in flight at a time and each runs to its last client before
        the next starts, so every client sees a stream's messages in publication order however
        the slices fall (their size depends on the clock). Queues a :class:`Step` while more remain.
        """
        queue = self._sliced.get(stream)
        if not queue:
            return
        job = queue[0]
        # A message that waited behind others: is it still fresh enough to be worth sending?
        # Checked when its fan-out starts only: once some clients have it, the rest of its
        # audience gets it too (its slices follow within milliseconds), all or none.
        if (
            job.index == 0
            and job.captured is not None
            and self.max_age
            and self.clock() - job.captured > self.max_age
        ):
            self.stats.drops["stale"] += len(job.members)
            queue.popleft()
            self._next(stream, queue)
            return
        if job.index == 0 and self.lag_threshold:
            self._carried(job)
        started = self.timer()
        # Membership may have changed since the message arrived: _detach takes leavers out of
        # every message still going out, so the audience needs no look-up per client here.
        members = job.members
        index = job.index
        stop = min(index + self.chunk, len(members)) if self.chunk else len(members)
        budget = started + self.slice_time if self.slice_time else None
        while index < stop:
            end = min(index + _TIME_CHECK_EVERY, stop)
            self._write_all(members[index:end], job)
            index = end
            if budget is not None and self.timer() >= budget:
                break
        job.index = index
        job.spent += self.timer() - started
        if index >= len(members):
            queue.popleft()
            self._finish(job)
        self._next(stream, queue)

    def _next(self, stream: str, queue: collections.deque[_Job]) -> None:
        if queue:
            self._actions.append(Step(stream=stream))
        else:
            del self._sliced[stream]

    def _shed(self, queue: collections.deque[_Job]) -> None:
        """Drop the oldest waiting result or preview of an overloaded stream (never the one in flight).

        Messages arrive faster than they can be written to the stream's audience: like a lagging
        client, the stream as a whole skips to the present rather than fall ever further behind,
        and memory stays bounded. Status and gateway notices are never shed.
        """
        for position in range(1, len(queue)):
            if queue[position].kind in (RESULT, PREVIEW):
                shed = queue[position]
                del queue[position]
                self.stats.drops["overload"] += len(shed.members)
                return

    def _write_all(self, clients: Iterable[_Client], job: _Job) -> None:
        """The hot loop: per ready client one flag test and one sink call (check and write in one)."""
        slot, data, captured, binary = job.slot, job.data, job.captured, job.binary
        limit = self.client_buffer
        frame = job.frame
        if frame is None:
            # Framed up front: one framing per message even when no client shares it, against
            # a per-client "framed yet?" test in the loop.
            frame = job.frame = self.framer(data, binary)
        size = len(frame)
        direct = sent = conflated = framed_bytes = 0
        for client in clients:
            if client.direct:
                outcome = client.offer(frame, limit)
                if not outcome:
                    direct += 1
                elif outcome == OVER:
                    self._hold(client, slot, data, binary, captured)
                    self._start_lagging(client)
                continue
            # The slow path: lagging, due a lag probe, or framed (compressed) per connection.
            if client.lagging_since is not None:
                if self._hold(client, slot, data, binary, captured):
                    conflated += 1
                continue
            if client.shared:
                # Due a lag probe: the same frame with the round's ping right behind it, built
                # once per message, written in the same call (no extra write per probe).
                probe = job.probe
                if probe is None:
                    payload, ping = self._probe
                    probe = job.probe = (payload, frame + ping)
                outcome = client.offer(probe[1], limit)
                if not outcome:
                    sent += 1
                    framed_bytes += size
                    self._probed(client, probe[0])
                elif outcome == OVER:
                    self._hold(client, slot, data, binary, captured)
                    self._start_lagging(client)
                continue
            if not client.writable():
                continue
            if client.buffered() > limit:
                self._hold(client, slot, data, binary, captured)
                self._start_lagging(client)
                continue
            try:
                framed_bytes += client.sink.write_message(data, binary)
                if client.probe_due:
                    payload, ping = self._probe
                    client.write_frame(ping)  # control frames are never compressed
                    self._probed(client, payload)
            except Exception as exc:  # a dying connection: its handler will clean up
                log.debug("write failed: %s", exc)
                continue
            sent += 1
        sent += direct
        framed_bytes += direct * size
        job.sent += sent
        job.conflated += conflated
        job.framed_bytes += framed_bytes
        if sent and captured is not None and self.on_write is not None:
            self.on_write(job.kind, self.clock() - captured, sent)

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
        """Apply the same rules as the hot loop to a single client; True if written."""
        if client.lagging_since is not None:
            if self._hold(client, slot, data, binary, captured):
                self.stats.drops["conflated"] += 1
            return False
        if not client.writable():
            return False
        if client.buffered() > self.client_buffer:
            self._hold(client, slot, data, binary, captured)
            self._start_lagging(client)
            return False
        return self._write(client, slot[1], data, binary, captured)

    def _write(self, client: _Client, kind: str, data: bytes, binary: bool, captured: float | None) -> bool:
        probe = client.probe_due
        payload, ping = self._probe
        try:
            if client.shared:
                frame = self.framer(data, binary)
                written = len(frame)
                client.write_frame(frame + ping if probe else frame)
            else:
                written = client.sink.write_message(data, binary)
                if probe:
                    client.write_frame(ping)
        except Exception as exc:
            log.debug("write failed: %s", exc)
            return False
        if probe:
            self._probed(client, payload)
        self.stats.deliveries += 1
        self.stats.bytes_out += written
        if captured is not None and self.on_write is not None:
            self.on_write(kind, self.clock() - captured, 1)
        return True

    def _buffer_joining(
        self, joiners: dict[_Client, None], stream: str, peeked: wire.Peek | None, data: bytes
    ) -> None:
        size = len(data)
        for client in joiners:
            join = client.joining.get(stream)
            if join is None:
                continue
            join.items.append((peeked, data))
            join.bytes += size
            # Oldest first out, but never the message that just came: the newest is worth most.
            while len(join.items) > 1 and (
                len(join.items) > self.join_limit or (self.join_bytes and join.bytes > self.join_bytes)
            ):
                join.bytes -= len(join.items.popleft()[1])
                join.overflowed = True

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

    def _start_lagging(self, client: _Client, since: float | None = None) -> None:
        client.lag(self.monotonic() if since is None else since)
        self._lagging[client] = None
        self._actions.append(Wait(key=client.key))

    def tick(self) -> None:
        """A lagging client drained, or the deadline of a wait passed: check every lagging client.

        A client at or below ``low_water`` with no overdue lag probe is flushed (its
        newest pending messages, minus the stale ones) and is back on the synchronous
        path; the others drop what went stale meanwhile, and one lagging (or with a
        probe unanswered) longer than ``max_lag`` gets a :class:`Close`. Buffer levels
        and probe ages decide, not which wait ended the tick.
        """
        now = self.monotonic()
        for client in list(self._lagging):
            if client.sink.closed():
                # Its handler will discard it; nothing will be written to it again.
                del self._lagging[client]
                client.lag(None)
                client.pending.clear()
                continue
            probed = client.probe_sent
            overdue = probed is not None and now - probed > self.lag_threshold
            if not overdue and client.buffered() <= self.low_water:
                self._flush(client)
                continue
            self._expire(client)
            since = client.lagging_since
            if since is not None and probed is not None:
                since = min(since, probed)
            if since is not None and now - since > self.max_lag:
                self._close(client)

    # ------------------------------------------------------------------
    # Lag probes

    def probe(self) -> None:
        """A probe interval passed: start a round of lag probes, and find the clients that lag.

        Probes go out in waves per stream: once a stream's fan-outs carried ``probe_messages``
        messages or ``probe_bytes`` bytes since its last wave, each of its clients with no
        probe out owes one, written right behind its next message (counting previews too for
        the clients that take them). A client whose probe has gone unanswered for more than
        ``lag_threshold`` starts lagging, counted from the probe's send time. Cost per round:
        the streams, the clients with a probe out, and the audience of a stream due a wave;
        never a pass over every client, and no write of its own.
        """
        if not self.lag_threshold:
            return
        assert self.ping_framer is not None
        self._round = (self._round + 1) & 0xFFFFFFFF
        payload = _PROBE_PREFIX + self._round.to_bytes(4, "big")
        self._probe = (payload, self.ping_framer(payload))
        now = self.monotonic()
        threshold = self.lag_threshold
        for client in self._outstanding:
            sent = client.probe_sent
            if (
                sent is not None
                and client.lagging_since is None
                and not client.closing
                and now - sent > threshold
            ):
                self.stats.probe_lags += 1
                self._start_lagging(client, since=sent)
        most, size = self.probe_messages, self.probe_bytes
        for stream, carried in list(self._traffic.items()):
            if stream not in self._live and stream not in self._joining:
                del self._traffic[stream]  # nobody left to probe: a stream's entry goes with it
                continue
            messages, bytes_, previews, preview_bytes = carried
            if messages >= most or bytes_ >= size:
                self._wave(self._live.get(stream))
                carried[:] = (0, 0, 0, 0)
            elif messages + previews >= most or bytes_ + preview_bytes >= size:
                # Previews go to their takers only: they may owe a probe before the rest.
                self._wave(self._previews.get(stream))
                carried[2] = carried[3] = 0

    @staticmethod
    def _wave(clients: dict[_Client, None] | None) -> None:
        for client in clients or ():
            if client.probe_sent is None and not client.probe_due and not client.closing:
                client.due(True)

    def _carried(self, job: _Job) -> None:
        """Count a message whose fan-out starts towards its clients' next probe (per message, not
        per client). Messages dropped before their fan-out (stale, overload) reach nobody: not counted.
        """
        stream = job.slot[0]
        carried = self._traffic.get(stream)
        if carried is None:
            carried = self._traffic[stream] = [0, 0, 0, 0]
        index = 2 if job.kind == PREVIEW else 0
        carried[index] += 1
        carried[index + 1] += len(job.data)

    def pong(self, key: Hashable) -> None:
        """A client answered its lag probe: it has read everything written before it.

        A lagging client whose buffer is at ``low_water`` has caught up: its newest
        pending messages are written now, and it owes a fresh probe behind them.
        """
        client = self._clients.get(key)
        if client is None or client.probe_sent is None:
            return
        client.probe_sent = None
        self._outstanding.pop(client, None)
        self.stats.pongs += 1
        if client.lagging_since is None or client.closing or client.sink.closed():
            return
        if client.buffered() <= self.low_water:
            self._flush(client)

    def _probed(self, client: _Client, payload: bytes) -> None:
        """A probe went out behind the data just written to ``client``."""
        client.due(False)
        client.probe_sent = self.monotonic()
        self._outstanding[client] = None
        self.stats.probes += 1
        client.sink.expect_pong(payload)

    def _flush(self, client: _Client) -> None:
        """Write a caught-up client's pending messages (newest per slot), skipping stale ones.

        With lag probes on, a probe follows the flushed messages (with the next write, as
        for any client that owes one), so a client that stalls again is found as soon as
        one that never lagged.
        """
        client.due(False)  # not in the middle of the flush: behind all of it
        client.lag(None)
        self._lagging.pop(client, None)
        now = self.clock()
        while client.pending:
            slot = next(iter(client.pending))
            data, binary, captured = client.pending.pop(slot)
            if self.max_age and captured is not None and now - captured > self.max_age:
                self.stats.drops["stale"] += 1
                continue
            if client.sink.closed():
                client.pending.clear()
                return
            self._write(client, slot[1], data, binary, captured)
            if client.buffered() > self.client_buffer and client.pending:
                self._start_lagging(client)
                return
        if self.lag_threshold and client.probe_sent is None and client.lagging_since is None:
            client.due(True)

    def _expire(self, client: _Client) -> None:
        """Drop pending messages that went stale while the client lagged."""
        if not self.max_age:
            return
        now = self.clock()
        for slot, (_, _, captured) in list(client.pending.items()):
            if captured is not None and now - captured > self.max_age:
                del client.pending[slot]
                self.stats.drops["stale"] += 1

    def _close(self, client: _Client) -> None:
        client.closing = True
        self._outstanding.pop(client, None)
        client.pending.clear()
        self._lagging.pop(client, None)
        client.lag(None)
        self.stats.slow_closes += 1
        self._actions.append(Close(key=client.key))

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
        # Out of the audience of messages still going out in slices: if it comes back (and
        # goes live) before their slices reach it, they must not arrive after newer ones.
        for job in self._sliced.get(stream, ()):
            audience = job.members
            with contextlib.suppress(ValueError):
                del audience[audience.index(client, job.index)]

    def _forget(self, client: _Client) -> None:
        self._clients.pop(client.key, None)
        self._outstanding.pop(client, None)
        self._lagging.pop(client, None)
        client.lag(None)
        client.pending.clear()
