"""One WebSocket connection's session: its subscriptions and the operations that change them.

A :class:`Session` runs the client's ``subscribe``/``unsubscribe`` operations: it joins the
stream (the fan-out buffers its live messages, the Redis subscription is acquired), sends the
replay and the current status, then lets the stream go live. It sees the rest of the gateway
through two narrow interfaces, :class:`Desk` (the streams: :class:`gateway.streams.Streams`)
and :class:`SessionMetrics` (what it counts), and its :class:`SessionLimits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from framecast import wire
from framecast.exceptions import BrokerError
from gateway._wsio import close_or_abort
from gateway.auth import Grant
from gateway.config import GatewayConfig
from gateway.history import Replay
from gateway.reads import Snapshot
from gateway.subscriber import Wants

__all__ = ["MAX_BAD_OPS", "Desk", "Session", "SessionLimits", "SessionMetrics"]

log = logging.getLogger("gateway")

MAX_BAD_OPS = 5
"""Malformed or unknown operations in a row before the connection is closed with 1008."""

_READ_ATTEMPTS = 50  # reads of a subscriber's snapshot while Redis does not answer (time-bounded too)
_READ_RETRY_PAUSE = 0.2  # seconds between them


class Desk(Protocol):
    """What a session needs of the gateway's streams (:class:`gateway.streams.Streams` is one)."""

    def join(
        self,
        stream: str,
        connection: ServerConnection,
        *,
        wants: Wants,
        previously: Wants | None,
        kinds: tuple[str, ...] | None = None,
        max_rate: float | None = None,
    ) -> asyncio.Future[Any]:
        """Join ``stream`` (its live messages buffered for the connection until :meth:`go_live`).

        ``wants``: previews and video besides; ``previously``: what the subscription this one
        replaces wanted (None: new). ``kinds`` and ``max_rate``: the subscription's choices.
        Returns a future done once Redis confirmed the subscription.
        """

    async def snapshot(
        self,
        stream: str,
        *,
        since: int | None,
        epoch: str | None,
        event_since: int | None = None,
        event_epoch: str | None = None,
    ) -> Snapshot:
        """The replays and stored status for a joining subscriber.

        Raises:
            BrokerError: Redis could not be read.
        """

    def current_status(self, stream: str, plan: Replay, raw: bytes | None) -> bytes | None:
        """The stream's status to send after the replay: ``raw`` if it is one, else an offline one."""

    def go_live(
        self,
        stream: str,
        connection: ServerConnection,
        *,
        epoch: str | None,
        seq: int,
        events: tuple[str, int] | None = None,
    ) -> None:
        """The replay ended at ``(epoch, seq)`` (the events replay at ``events``): send what was
        buffered after them, then live."""

    def leave(self, stream: str, connection: ServerConnection, *, wants: Wants) -> None:
        """Stop ``stream`` for the connection."""

    def forget(self, connection: ServerConnection, streams: dict[str, Wants]) -> None:
        """The connection ended: out of every stream (``streams``: stream -> what it wanted)."""


class SessionMetrics(Protocol):
    """What a session counts (:class:`gateway.metrics.GatewayMetrics` is one)."""

    def closed(self, reason: str) -> None:
        """The gateway closed a connection, for ``reason``."""

    def client_error(self, code: str) -> None:
        """A client operation was refused with ``code``."""


@dataclass(frozen=True, kw_only=True)
class SessionLimits:
    """A session's bounds.

    Attributes:
        max_streams: Streams one connection may subscribe to.
        ready_timeout: Seconds a subscribe waits for Redis (the subscription, the history).
        send_timeout: Seconds the replay may take to be sent before the client is closed with 4008.
        close_timeout: Seconds a closing handshake may take before the connection is aborted.
    """

    max_streams: int
    ready_timeout: float
    send_timeout: float
    close_timeout: float

    @classmethod
    def from_config(cls, config: GatewayConfig) -> SessionLimits:
        """The limits of a gateway's sessions."""
        return cls(
            max_streams=config.max_streams_per_client,
            ready_timeout=config.ready_timeout,
            send_timeout=config.max_lag,
            close_timeout=config.close_timeout,
        )


class Session:
    """One connection's subscriptions and the operations that change them.

    Args:
        connection: The client's connection.
        grant: What its token allows.
        desk: The gateway's streams.
        limits: The session's bounds.
        metrics: Where refusals and closes are counted.
    """

    def __init__(
        self,
        connection: ServerConnection,
        grant: Grant,
        *,
        desk: Desk,
        limits: SessionLimits,
        metrics: SessionMetrics,
    ) -> None:
        self.connection = connection
        self.grant = grant
        self._desk = desk
        self._limits = limits
        self._metrics = metrics
        self.streams: dict[str, Wants] = {}
        self._notices: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        """Read operations until the connection closes."""
        bad = 0
        async for message in self.connection:
            # Binary frames holding UTF-8 JSON are accepted too: some client libraries send bytes.
            try:
                op = wire.decode_op(message)
            except wire.WireError as exc:
                code, text, refused = exc.code, str(exc), exc.stream
            else:
                bad = 0
                if isinstance(op, wire.Subscribe):
                    await self.subscribe(op)
                else:
                    await self.unsubscribe(op.stream)
                continue
            bad += 1
            await self.error(code, text, refused)  # a bad stream name is echoed: clients match it
            if bad >= MAX_BAD_OPS:
                self._metrics.closed("bad-requests")
                await self.connection.close(wire.CLOSE_BAD_REQUEST, f"{bad} bad operations in a row")
                return

    async def error(self, code: str, message: str, stream: str | None = None) -> None:
        self._metrics.client_error(code)
        await self.connection.send(
            wire.encode(wire.Error(code=code, message=message, stream=stream)), text=True
        )

    async def subscribe(self, op: wire.Subscribe) -> None:
        """Subscribe (or re-subscribe, e.g. with ``since`` after a gap) to a stream."""
        stream, limits, desk = op.stream, self._limits, self._desk
        if not self.grant.allows(stream):
            await self.error("forbidden", f"token does not allow stream {stream!r}", stream)
            return
        if stream not in self.streams and len(self.streams) >= limits.max_streams:
            await self.error(
                "too-many-streams", f"at most {limits.max_streams} streams per connection", stream
            )
            return
        if op.since is not None and not op.epoch:
            await self.error("bad-message", "since needs epoch (the epoch the seq belongs to)", stream)
            return
        kinds = wire.KINDS if op.kinds is None else op.kinds
        if op.max_rate is not None and op.since is not None:
            # A capped client wants the present, not the results it missed: the latest only.
            op = dataclasses.replace(op, since=None, epoch=None)
        resume_events = op.event_since is not None and op.event_epoch is not None and "event" in kinds
        # Joining first: live messages from now on are buffered, so replay and live meet exactly.
        wants = Wants(previews=op.previews, video=op.video)
        subscribed = desk.join(
            stream,
            self.connection,
            wants=wants,
            previously=self.streams.get(stream),
            kinds=op.kinds,
            max_rate=op.max_rate,
        )
        self.streams[stream] = wants
        # Bounded: with Redis down the client still gets 'subscribed' now and a 'gap' later.
        await asyncio.wait([subscribed], timeout=limits.ready_timeout)
        unavailable = False
        events: Replay | None = None
        try:
            snapshot = await self._read_waiting(op, timeout=limits.ready_timeout, events=resume_events)
            plan = snapshot.plan
            events = snapshot.events
            status = desk.current_status(stream, plan, snapshot.status)
        except (BrokerError, TimeoutError) as exc:
            log.info("stream %s: history unavailable for a subscriber: %s", stream, exc)
            # The resume positions are kept (live from `since` on) and the client told `gap`: it
            # subscribes again with `since`, and that replay fills the hole once Redis answers.
            unavailable = op.since is not None or resume_events
            plan = Replay(epoch=op.epoch, seq=op.since or 0)
            if resume_events and op.event_epoch is not None and op.event_since is not None:
                events = Replay(epoch=op.event_epoch, seq=op.event_since)
            status = None
        if "status" not in kinds:
            status = None
        try:
            async with asyncio.timeout(limits.send_timeout):
                await self.connection.send(
                    wire.encode(
                        wire.Subscribed(
                            stream=stream,
                            previews=op.previews,
                            kinds=op.kinds,
                            max_rate=op.max_rate,
                            video=op.video,
                        )
                    ),
                    text=True,
                )
                if unavailable:
                    await self.connection.send(
                        wire.encode(wire.Gap(stream=stream, reason="history-unavailable")), text=True
                    )
                # Events first (an application counts them), then results, then the status.
                if events is not None:
                    if events.reset is not None:
                        reset = wire.Reset(stream=stream, reason=events.reset, kind="event")
                        await self.connection.send(wire.encode(reset), text=True)
                    for message in events.messages:
                        await self.connection.send(message, text=True)
                if "result" in kinds:
                    if plan.reset is not None:
                        await self.connection.send(
                            wire.encode(wire.Reset(stream=stream, reason=plan.reset)), text=True
                        )
                    for message in plan.messages:
                        await self.connection.send(message, text=True)
                if status is not None:
                    await self.connection.send(status, text=True)
        except TimeoutError:
            self._metrics.closed("slow-consumer")
            await close_or_abort(
                self.connection, wire.CLOSE_SLOW_CONSUMER, "slow consumer", limits.close_timeout
            )
            return
        if stream in self.streams:  # not unsubscribed meanwhile
            position = None if events is None or events.epoch is None else (events.epoch, events.seq)
            desk.go_live(stream, self.connection, epoch=plan.epoch, seq=plan.seq, events=position)
            if not subscribed.done():
                # Went ahead unconfirmed: whatever was published until Redis confirms the
                # SUBSCRIBE is lost for this client, so it is told once the subscription holds.
                subscribed.add_done_callback(lambda done: self._confirmed_late(stream, done))

    async def _read_waiting(self, op: wire.Subscribe, *, timeout: float, events: bool) -> Snapshot:
        """The subscriber's snapshot; while Redis does not answer, retried for up to ``timeout``.

        A Redis restarting refuses connections for a moment: a resume arriving then waits for
        it (bounded) rather than losing its position at once.

        Raises:
            BrokerError: Redis still could not be read after ``timeout``.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        async with asyncio.timeout_at(deadline):
            for attempt in range(_READ_ATTEMPTS):
                try:
                    return await self._desk.snapshot(
                        op.stream,
                        since=op.since,
                        epoch=op.epoch,
                        event_since=op.event_since if events else None,
                        event_epoch=op.event_epoch if events else None,
                    )
                except BrokerError:
                    if attempt == _READ_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(min(_READ_RETRY_PAUSE, timeout / 4))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def unsubscribe(self, stream: str) -> None:
        """Stop a stream (idempotent: always answered with ``unsubscribed``)."""
        wants = self.streams.pop(stream, None)
        if wants is not None:
            self._desk.leave(stream, self.connection, wants=wants)
        await self.connection.send(wire.encode(wire.Unsubscribed(stream=stream)), text=True)

    def _confirmed_late(self, stream: str, subscribed: asyncio.Future[object]) -> None:
        """Redis confirmed a subscription the client was already live on: send it a ``gap``."""
        if subscribed.cancelled() or subscribed.exception() is not None or stream not in self.streams:
            return
        log.info("stream %s: subscription confirmed after --ready-timeout, telling the client (gap)", stream)
        gap = wire.encode(wire.Gap(stream=stream, reason="redis-reconnected"))
        task = asyncio.get_running_loop().create_task(self._send_notice(gap))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _send_notice(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.connection.send(data, text=True)

    def close(self) -> None:
        """Forget the connection everywhere (its handler is ending)."""
        self._desk.forget(self.connection, self.streams)
        self.streams.clear()
