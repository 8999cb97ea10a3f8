"""The policy's vocabulary: message kinds and their delivery rules, sinks, actions, per-client state.

Every sub-machine of the policy works on these; none of them does I/O.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from framecast import wire

__all__ = [
    "DELIVERY",
    "NOTICE",
    "OVER",
    "PREVIEW",
    "RESULT",
    "SKIP",
    "STATUS",
    "WRITTEN",
    "Action",
    "Client",
    "Close",
    "Delivery",
    "Framer",
    "Held",
    "Job",
    "Join",
    "PingFramer",
    "Sink",
    "Step",
    "Wait",
]

RESULT, STATUS, PREVIEW, NOTICE = "result", "status", "preview", "notice"

# What Sink.offer did: written, over the buffer limit (not written), not writable (not written).
WRITTEN, OVER, SKIP = 0, 1, 2

Framer = Callable[[bytes, bool], bytes]
"""Frames a message once for every client that can share the bytes: ``(data, binary) -> frame``."""

PingFramer = Callable[[bytes], bytes]
"""Frames a lag probe (a WebSocket ping) with the given payload: ``payload -> frame``."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """How the messages of one kind are delivered, where the rules differ by kind.

    Every kind shares the rest: written in arrival order per client, the newest per
    ``(stream, kind)`` kept while a client lags. A new kind (an ``event`` never conflated nor
    dropped as stale, video by group of pictures) is a new entry here and a new branch where
    these flags are read, nowhere else.

    Attributes:
        sheds: An overloaded stream may skip it while it waits behind a sliced message.
        expires: A held or waiting copy is dropped once older than ``max_age`` by its capture
            time (it carries one).
    """

    sheds: bool
    expires: bool


DELIVERY: dict[str, Delivery] = {
    RESULT: Delivery(sheds=True, expires=True),
    PREVIEW: Delivery(sheds=True, expires=True),
    STATUS: Delivery(sheds=False, expires=False),
    NOTICE: Delivery(sheds=False, expires=False),
}
"""The delivery rule of each kind (a kind not listed is delivered like a notice)."""

_PLAIN = DELIVERY[NOTICE]


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

        The driver calls :meth:`gateway.policy.Policy.pong` with the client's key when the answer comes.
        """


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """Call :meth:`gateway.policy.Policy.step` for ``stream`` on the next event-loop turn."""

    stream: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """``key`` is lagging: await its drain, and :meth:`gateway.policy.Policy.tick` when it drains or
    the deadline comes."""

    key: Hashable


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    """Close ``key`` with 4008 (slow consumer); abort it if the close cannot get through."""

    key: Hashable


Action = Step | Wait | Close

Held = tuple[bytes, bool, float | None]
"""One pending message of a lagging client: ``(data, binary, captured_at or None)``."""


class Join:
    """Live messages buffered for a joining client, bounded in count and bytes."""

    __slots__ = ("bytes", "items", "overflowed")

    def __init__(self) -> None:
        self.items: collections.deque[tuple[wire.Peek | None, bytes]] = collections.deque()
        self.bytes = 0
        self.overflowed = False


class Client:
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
        self.pending: dict[tuple[str, str], Held] = {}
        self.closing = False
        self.streams: dict[str, bool] = {}  # stream -> previews wanted
        self.joining: dict[str, Join] = {}

    def lag(self, since: float | None) -> None:
        """Start (``since``: a monotonic time) or end (None) lagging."""
        self.lagging_since = since
        self.direct = since is None and self.shared and not self.probe_due

    def due(self, due: bool) -> None:
        """Owe (or no longer owe) a lag probe with the next write."""
        self.probe_due = due
        self.direct = not due and self.lagging_since is None and self.shared


class Job:
    """One message on its way to clients: a stream's audience (possibly across several slices) or one client.

    The write rule adds what it did to ``sent``, ``framed_bytes`` and ``conflated``; whoever
    drives it reports them to the observer once per slice or single write.
    """

    __slots__ = (
        "age",
        "binary",
        "captured",
        "conflated",
        "data",
        "delivery",
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
        self.delivery = DELIVERY.get(self.kind, _PLAIN)
        self.data = data
        self.binary = binary
        self.captured = captured
        self.age = age
        self.frame: bytes | None = None
        self.probe: tuple[bytes, bytes] | None = None  # (ping payload, frame + ping frame)
        self.members: list[Client] = []
        self.index = 0
        self.sent = self.conflated = self.framed_bytes = 0
        self.spent = 0.0
