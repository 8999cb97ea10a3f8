"""One WebSocket connection's session: its subscriptions and the operations that change them.

A :class:`Session` runs the client's ``subscribe``/``unsubscribe`` operations: it joins the
fan-out, acquires the Redis subscription, sends the replay and the current status, then lets
the stream go live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from framecast import wire
from framecast.exceptions import BrokerError
from gateway._wsio import close_or_abort
from gateway.auth import Grant
from gateway.history import Replay
from gateway.reads import Snapshot

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["MAX_BAD_OPS", "Session"]

log = logging.getLogger("gateway")

MAX_BAD_OPS = 5
"""Malformed or unknown operations in a row before the connection is closed with 1008."""

_READ_ATTEMPTS = 50  # reads of a subscriber's snapshot while Redis does not answer (time-bounded too)
_READ_RETRY_PAUSE = 0.2  # seconds between them


class Session:
    """One connection's subscriptions and the operations that change them."""

    def __init__(self, gateway: Gateway, connection: ServerConnection, grant: Grant) -> None:
        self.gateway = gateway
        self.connection = connection
        self.grant = grant
        self.streams: dict[str, bool] = {}  # stream -> previews
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
                self.gateway.metrics.closes.labels("bad-requests").inc()
                await self.connection.close(wire.CLOSE_BAD_REQUEST, f"{bad} bad operations in a row")
                return

    async def error(self, code: str, message: str, stream: str | None = None) -> None:
        self.gateway.metrics.client_errors.labels(code).inc()
        await self.connection.send(
            wire.encode(wire.Error(code=code, message=message, stream=stream)), text=True
        )

    async def subscribe(self, op: wire.Subscribe) -> None:
        """Subscribe (or re-subscribe, e.g. with ``since`` after a gap) to a stream."""
        gateway, stream = self.gateway, op.stream
        config = gateway.config
        if not self.grant.allows(stream):
            await self.error("forbidden", f"token does not allow stream {stream!r}", stream)
            return
        if stream not in self.streams and len(self.streams) >= config.max_streams_per_client:
            await self.error(
                "too-many-streams", f"at most {config.max_streams_per_client} streams per connection", stream
            )
            return
        if op.since is not None and not op.epoch:
            await self.error("bad-message", "since needs epoch (the epoch the seq belongs to)", stream)
            return
        previously = self.streams.get(stream)
        # Joining first: live messages from now on are buffered, so replay and live meet exactly.
        gateway.fanout.add(stream, self.connection, previews=op.previews, joining=True)
        subscribed = gateway.subscriber.acquire(stream, previews=op.previews)
        if previously is not None:
            gateway.subscriber.release(stream, previews=previously)
        self.streams[stream] = op.previews
        gateway.heartbeats.watch(stream)
        # Bounded: with Redis down the client still gets 'subscribed' now and a 'gap' later.
        await asyncio.wait([subscribed], timeout=config.ready_timeout)
        unavailable = False
        try:
            snapshot = await self._read_waiting(op, timeout=config.ready_timeout)
            plan = snapshot.plan
            status = self._current_status(stream, plan, snapshot.status)
        except (BrokerError, TimeoutError) as exc:
            log.info("stream %s: history unavailable for a subscriber: %s", stream, exc)
            # The resume position is kept (live from `since` on) and the client told `gap`: it
            # subscribes again with `since`, and that replay fills the hole once Redis answers.
            unavailable = op.since is not None
            plan = Replay(epoch=op.epoch, seq=op.since or 0)
            status = None
        try:
            async with asyncio.timeout(config.max_lag):
                await self.connection.send(
                    wire.encode(wire.Subscribed(stream=stream, previews=op.previews)), text=True
                )
                if plan.reset is not None:
                    await self.connection.send(
                        wire.encode(wire.Reset(stream=stream, reason=plan.reset)), text=True
                    )
                if unavailable:
                    await self.connection.send(
                        wire.encode(wire.Gap(stream=stream, reason="history-unavailable")), text=True
                    )
                for message in plan.messages:
                    await self.connection.send(message, text=True)
                if status is not None:
                    await self.connection.send(status, text=True)
        except TimeoutError:
            gateway.fanout.stats.slow_closes += 1
            gateway.metrics.closes.labels("slow-consumer").inc()
            await close_or_abort(
                self.connection, wire.CLOSE_SLOW_CONSUMER, "slow consumer", config.close_timeout
            )
            return
        if stream in self.streams:  # not unsubscribed meanwhile
            gateway.fanout.go_live(stream, self.connection, epoch=plan.epoch, seq=plan.seq)
            if not subscribed.done():
                # Went ahead unconfirmed: whatever was published until Redis confirms the
                # SUBSCRIBE is lost for this client, so it is told once the subscription holds.
                subscribed.add_done_callback(lambda done: self._confirmed_late(stream, done))

    async def _read_waiting(self, op: wire.Subscribe, *, timeout: float) -> Snapshot:
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
                    return await self.gateway.reads.read(op.stream, since=op.since, epoch=op.epoch)
                except BrokerError:
                    if attempt == _READ_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(min(_READ_RETRY_PAUSE, timeout / 4))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _current_status(self, stream: str, plan: Replay, raw: bytes | None) -> bytes | None:
        """The stream's latest heartbeat (``raw``), or an offline status if its producer is silent."""
        gateway = self.gateway
        if raw is not None:
            try:
                if isinstance(wire.decode(raw), wire.Status):
                    return raw
            except wire.WireError:
                pass
        epoch, seq = gateway.heartbeats.last(stream)
        if not epoch and plan.epoch:
            epoch, seq = plan.epoch, plan.seq
        gateway.heartbeats.mark_offline(stream)
        return gateway.offline_status(stream, epoch=epoch, seq=seq)

    async def unsubscribe(self, stream: str) -> None:
        """Stop a stream (idempotent: always answered with ``unsubscribed``)."""
        previews = self.streams.pop(stream, None)
        if previews is not None:
            self.gateway.fanout.remove(stream, self.connection)
            self._release(stream, previews)
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
        self.gateway.fanout.discard(self.connection)
        for stream, previews in self.streams.items():
            self._release(stream, previews)
        self.streams.clear()

    def _release(self, stream: str, previews: bool) -> None:
        gateway = self.gateway
        gateway.subscriber.release(stream, previews=previews)
        if not gateway.fanout.clients(stream):
            gateway.heartbeats.unwatch(stream)
