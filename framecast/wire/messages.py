"""The messages of the wire format, as typed, frozen, keyword-only dataclasses.

Three families of message exist:

* **Stream messages**, published by a producer on Redis and forwarded by the
  gateways byte for byte: :class:`Result` (one per processed frame),
  :class:`Event` (a track entered or left a zone, or crossed a line),
  :class:`Status` (a heartbeat, at least once per second) and :class:`Preview`
  (an annotated JPEG, binary, only to clients that ask for it).
* **Gateway replies**, sent by a gateway to one client: :class:`Hello`,
  :class:`Subscribed`, :class:`Unsubscribed`, :class:`Reset`, :class:`Gap`
  and :class:`Error`.
* **Client operations**, sent by a client to a gateway: :class:`Subscribe`
  and :class:`Unsubscribe`.

Every field is keyword-only (``Result(stream=..., seq=..., frame=...)``): two
integers of one message cannot be swapped without anyone noticing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_GOING_AWAY",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_TRY_AGAIN_LATER",
    "KINDS",
    "MAX_RATE",
    "MAX_SEQ",
    "VERSION",
    "ClientOp",
    "Detection",
    "Error",
    "Event",
    "EventKind",
    "Gap",
    "GatewayReply",
    "Hello",
    "Kind",
    "Peek",
    "PredictorState",
    "Preview",
    "Reset",
    "Result",
    "Status",
    "StreamMessage",
    "StreamState",
    "Subscribe",
    "Subscribed",
    "TextMessage",
    "Unsubscribe",
    "Unsubscribed",
]

VERSION = 1
"""Format version carried in every stream message as ``v``.

A reader accepts messages whose ``v`` it knows; unknown *fields* are ignored
so that minor additions never break old clients.
"""

MAX_SEQ = 2**64 - 1
"""The largest ``seq`` (and ``since``): Redis stream ids are pairs of 64-bit unsigned numbers."""

Kind = Literal["result", "event", "status"]
"""A kind of stream message a subscriber can choose to receive (``kinds``)."""
KINDS: tuple[Kind, ...] = ("result", "event", "status")
"""Every :data:`Kind`, in the order the protocol lists them; the default subscription takes all."""
MAX_RATE = 1000.0
"""The largest ``max_rate`` (results per second) a subscriber may ask for."""

# WebSocket close codes a gateway uses, beyond RFC 6455's own (1001 going
# away, 1007 invalid UTF-8, 1008 policy violation, 1009 message too big).
CLOSE_GOING_AWAY = 1001
"""The gateway is shutting down: reconnect, the load balancer picks another."""
CLOSE_BAD_REQUEST = 1008
"""Repeated malformed or unknown control messages."""
CLOSE_TRY_AGAIN_LATER = 1013
"""The gateway lost Redis for too long: reconnect (the load balancer picks a ready one), resume with since."""
CLOSE_TOKEN_EXPIRED = 4001
"""The connection's token expired: get a new one and reconnect."""
CLOSE_SLOW_CONSUMER = 4008
"""The client did not read for longer than the gateway's ``--max-lag``."""


# --------------------------------------------------------------------------
# Stream messages (producer -> Redis -> gateway -> client, unchanged)


@dataclass(frozen=True, slots=True, kw_only=True)
class Detection:
    """One detected object.

    Attributes:
        label: What was found (a class name, or the text a QR code holds).
        confidence: 0.0 to 1.0.
        box: ``(x1, y1, x2, y2)`` in pixels of the source frame, with
            ``0 <= x1 <= x2 <= width`` and ``0 <= y1 <= y2 <= height``.
        track: With tracking on, the object's id: an integer from 1, the same from frame to
            frame, unique within the producer's epoch and never reused in it. None when
            tracking is off or the tracker has not confirmed the object yet.
    """

    label: str
    confidence: float
    box: tuple[float, float, float, float]
    track: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The predictions for one processed frame.

    Attributes:
        stream: Stream name.
        epoch: Random id of the producer run; ``seq`` restarts with each epoch.
        seq: Strictly increasing from 1 within an epoch, one per result.
            A gap in ``seq`` means results were lost on the way.
        frame: Index of the source frame (frames that were skipped to stay
            real-time leave gaps here; that is expected, unlike gaps in seq).
        captured_at: Unix time (seconds) the frame was captured.
        published_at: Unix time (seconds) the result was published.
        width: Frame width in pixels.
        height: Frame height in pixels.
        detections: What the predictor found, possibly nothing.
        occupancy: With zones: tracks inside each zone now (every zone listed, 0 included).
        crossings: With lines: ``(in, out)`` crossings of each line since the epoch began.
    """

    stream: str
    epoch: str
    seq: int
    frame: int
    captured_at: float
    published_at: float
    width: int
    height: int
    detections: tuple[Detection, ...] = ()
    occupancy: Mapping[str, int] | None = None
    crossings: Mapping[str, tuple[int, int]] | None = None
    type: Literal["result"] = field(default="result", init=False)


EventKind = Literal["enter", "leave", "cross"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something a track did: entered or left a zone, or crossed a line.

    Events are derived by the producer from tracks (``--track`` with ``--zones``) and are never
    conflated or dropped as stale by a gateway: an application counts them. They have their own
    ``seq`` (from 1 within an epoch, without gaps) and their own history, apart from results'.

    Attributes:
        stream: Stream name.
        epoch: Producer run id (as in :class:`Result`).
        seq: Strictly increasing from 1 within an epoch, one per event; a gap means events
            were lost on the way.
        kind: ``"enter"`` or ``"leave"`` (a zone), ``"cross"`` (a line).
        track: The track's id (:attr:`Detection.track`).
        label: The track's class.
        frame: Source frame index of the frame the event was seen on.
        captured_at: Unix time that frame was captured.
        published_at: Unix time the event was published.
        zone: The zone (``enter``/``leave``).
        line: The line (``cross``).
        direction: ``"in"`` or ``"out"`` (``cross``; see docs/producer.md for which side is in).
        lost: ``leave`` only: True when the track was lost inside the zone (the tracker gave
            it up) rather than seen leaving it.
        dwell: ``leave`` only: seconds from the ``enter`` to the ``leave`` (capture times).
    """

    stream: str
    epoch: str
    seq: int
    kind: EventKind
    track: int
    label: str
    frame: int
    captured_at: float
    published_at: float
    zone: str | None = None
    line: str | None = None
    direction: Literal["in", "out"] | None = None
    lost: bool | None = None
    dwell: float | None = None
    type: Literal["event"] = field(default="event", init=False)


StreamState = Literal["online", "offline"]
PredictorState = Literal["ready", "down"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """A producer heartbeat: sent at least once per second, detections or not.

    Clients and gateways tell "quiet" (heartbeats, no detections) from "dead"
    (no heartbeat) with it.

    Attributes:
        stream: Stream name.
        epoch: Producer run id (as in :class:`Result`).
        seq: ``seq`` of the last result published in this epoch (0 if none):
            a client that has a smaller one knows it missed results.
        sent_at: Unix time the heartbeat was sent.
        state: ``"online"`` while the source delivers frames, ``"offline"``
            while the producer is reopening it.
        reconnects: Times the source was reopened in this epoch.
        capture_fps: Frames captured per second (recent average).
        process_fps: Frames processed per second (recent average).
        skipped: Frames dropped to stay real-time, in this epoch.
        active: False while the predictor is paused for lack of viewers.
        source: A short, credential-free description of the source.
        event_seq: ``seq`` of the last :class:`Event` published in this epoch (0 if none).
        zones: With zones: each zone's polygon (frame pixels), so a viewer can draw it.
        lines: With lines: each line's two points (the first to the second: ``in`` is left
            to right of that direction on the picture).
        video: The codec of the stream's video (``"vp8"``, ``"vp9"``, ``"h264"``, ``"av1"``), or
            ``""`` when its producer encodes none.
        predictor: For a producer whose predictor is a shared inference worker: ``"ready"``,
            or ``"down"`` while the worker is unreachable (restarting) and no frame is predicted.
            None (absent on the wire) when the predictor runs in the producer.
        predictor_restarts: With ``predictor``: times the shared worker was lost and found
            again in this epoch.
    """

    stream: str
    epoch: str
    seq: int
    sent_at: float
    state: StreamState = "online"
    reconnects: int = 0
    capture_fps: float = 0.0
    process_fps: float = 0.0
    skipped: int = 0
    active: bool = True
    source: str = ""
    event_seq: int = 0
    zones: Mapping[str, tuple[tuple[float, float], ...]] | None = None
    lines: Mapping[str, tuple[tuple[float, float], tuple[float, float]]] | None = None
    video: str = ""
    predictor: PredictorState | None = None
    predictor_restarts: int | None = None
    type: Literal["status"] = field(default="status", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Preview:
    """An annotated JPEG of a processed frame (sent as a binary message).

    Attributes:
        stream: Stream name.
        epoch: Producer run id.
        seq: ``seq`` of the :class:`Result` this picture shows.
        frame: Source frame index.
        captured_at: Unix time the frame was captured.
        width: JPEG width in pixels (may be smaller than the source frame:
            scale the result's boxes by ``width / result.width``).
        height: JPEG height in pixels.
        jpeg: The JPEG bytes.
    """

    stream: str
    epoch: str
    seq: int
    frame: int
    captured_at: float
    width: int
    height: int
    jpeg: bytes
    type: Literal["preview"] = field(default="preview", init=False)


StreamMessage: TypeAlias = Result | Event | Status


# --------------------------------------------------------------------------
# Gateway replies (gateway -> one client)


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """First message on every connection: who serves it and which protocol.

    Attributes:
        gateway: Id of the gateway process serving this connection.
        v: Format version the gateway speaks.
    """

    gateway: str
    v: int = VERSION
    type: Literal["hello"] = field(default="hello", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribed:
    """A subscription is in place; stream messages follow.

    Attributes:
        stream: Stream name.
        previews: Whether binary previews were asked for and will be sent.
        kinds: The kinds of stream message that will be sent, when the subscription chose
            (None: all of them).
        max_rate: The cap on results per second, when the subscription set one.
        video: Whether video was asked for and this gateway will send it.
    """

    stream: str
    previews: bool = False
    kinds: tuple[Kind, ...] | None = None
    max_rate: float | None = None
    video: bool = False
    type: Literal["subscribed"] = field(default="subscribed", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribed:
    """A subscription ended; no more messages for ``stream`` follow."""

    stream: str
    type: Literal["unsubscribed"] = field(default="unsubscribed", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reset:
    """A replay could not be served in full: history is not contiguous.

    Sent instead of replayed messages when the history no longer reaches back
    to ``since``, or the producer restarted (new epoch). The latest result
    follows, then live messages: the client should drop what it derived from
    the old sequence.

    Attributes:
        stream: Stream name.
        reason: ``"history-expired"``, ``"epoch-changed"``, ``"no-history"`` or
            ``"position-ahead"`` (``since`` is beyond the newest result of its epoch: the
            client drops its position for the stream, or it would drop every result up to
            it as already seen). (Redis unreadable while subscribing is a ``gap`` with
            ``"history-unavailable"``: the client keeps its position.)
        kind: ``"event"`` when the replay that could not be served is of events (resumed with
            ``event_since``); None (absent) for results.
    """

    stream: str
    reason: str
    kind: Literal["event"] | None = None
    type: Literal["reset"] = field(default="reset", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap:
    """The gateway lost its Redis link: messages may have been missed.

    Sent to every client of the stream once the link is back. Clients that
    need every result reconnect or resubscribe with ``since``.
    """

    stream: str
    reason: str = "redis-reconnected"
    type: Literal["gap"] = field(default="gap", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    """A request was refused; the connection stays open unless told otherwise.

    Attributes:
        code: Machine-readable: ``"bad-message"``, ``"unknown-op"``,
            ``"bad-stream"``, ``"forbidden"``, ``"too-many-streams"``.
        message: Human-readable explanation.
        stream: The stream concerned, if any.
    """

    code: str
    message: str
    stream: str | None = None
    type: Literal["error"] = field(default="error", init=False)


# --------------------------------------------------------------------------
# Client operations (client -> gateway)


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe:
    """Ask for a stream's messages.

    Attributes:
        stream: Stream name.
        since: Last result ``seq`` the client has; the gateway replays what came
            after it (within ``epoch``) before going live.
        epoch: The epoch ``since`` belongs to; required with ``since``.
        previews: Also send binary :class:`Preview` frames.
        kinds: Only these kinds of stream message (None: all of :data:`KINDS`). Gateway
            replies (``subscribed``, ``reset``, ``gap``, ``error``...) always come.
        max_rate: At most this many results per second, conflated to the newest (None: every
            result). Events and status are never capped.
        event_since: Last event ``seq`` the client has; the gateway replays the events after it
            before going live (events of later epochs included).
        event_epoch: The epoch ``event_since`` belongs to; required with ``event_since``.
        video: Also send the encoded video (binary :class:`~framecast.wire.VideoFrame` messages),
            starting at a keyframe.
    """

    stream: str
    since: int | None = None
    epoch: str | None = None
    previews: bool = False
    kinds: tuple[Kind, ...] | None = None
    max_rate: float | None = None
    event_since: int | None = None
    event_epoch: str | None = None
    video: bool = False
    op: Literal["subscribe"] = field(default="subscribe", init=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe:
    """Stop a stream's messages."""

    stream: str
    op: Literal["unsubscribe"] = field(default="unsubscribe", init=False)


ClientOp: TypeAlias = Subscribe | Unsubscribe
GatewayReply: TypeAlias = Hello | Subscribed | Unsubscribed | Reset | Gap | Error
TextMessage: TypeAlias = Result | Event | Status | Hello | Subscribed | Unsubscribed | Reset | Gap | Error


@dataclass(frozen=True, slots=True, kw_only=True)
class Peek:
    """What a gateway reads of a stream message to route it, without a full decode.

    Attributes:
        type: ``"result"``, ``"event"`` or ``"status"``.
        epoch: Producer run id.
        seq: Result sequence number (for an event: the event's own ``seq``; for status: the
            last result's).
        captured_at: Capture time for results and events; ``sent_at`` for status.
        state: For status messages, ``"online"`` or ``"offline"``.
    """

    type: str
    epoch: str
    seq: int
    captured_at: float
    state: str | None = None
