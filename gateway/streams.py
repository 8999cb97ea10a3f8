"""The gateway's streams: what comes in from Redis, and what its sessions ask of them.

Two small classes over the same parts (the fan-out, the Redis subscription, the producers'
heartbeats, the history reads):

* :class:`Route` takes what the subscriber reads and routes it (step 9 of the route in
  docs/development.md): each stream message to the fan-out, whose ``wire.peek()`` reads its
  routing fields, and to the heartbeats; previews and video to the fan-out; a resubscription's gap to
  every client of the streams it touched;
* :class:`Streams` is the :class:`gateway.session.Desk` the sessions use: join a stream
  (fan-out, subscription, heartbeat watch together), read its replay, go live, leave.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.server import ServerConnection

from framecast import wire
from gateway.fanout import Fanout
from gateway.heartbeats import Heartbeats
from gateway.history import Replay
from gateway.reads import Snapshot, SubscribeReads
from gateway.subscriber import Subscriber, Wants

__all__ = ["Route", "Streams"]


class Route:
    """The subscriber's callbacks: Redis messages into the fan-out and the heartbeats.

    Args:
        fanout: Where messages go to the clients.
        heartbeats: Where producers' messages count as signs of life.
    """

    def __init__(self, *, fanout: Fanout, heartbeats: Heartbeats) -> None:
        self._fanout = fanout
        self._heartbeats = heartbeats

    def message(self, stream: str, data: bytes) -> None:
        """A result or status of ``stream``."""
        peeked = self._fanout.deliver(stream, data)
        if peeked is not None:
            self._heartbeats.seen(stream, peeked)

    def preview(self, stream: str, data: bytes) -> None:
        """A binary preview of ``stream``."""
        self._fanout.deliver_preview(stream, data)

    def video(self, stream: str, data: bytes) -> None:
        """A binary video frame of ``stream``."""
        self._fanout.deliver_video(stream, data)

    def video_end(self, stream: str) -> None:
        """The gateway gave ``stream``'s video channel up: no more frames of it come."""
        self._fanout.end_video(stream)

    def gap(self, streams: list[str]) -> None:
        """The subscription came back after a drop: these streams' clients may have missed messages."""
        for stream in streams:
            self._fanout.announce(stream, wire.encode(wire.Gap(stream=stream)))


class Streams:
    """Join, replay, go live, leave: the gateway's streams as a session sees them.

    Args:
        fanout: The clients per stream.
        subscriber: The Redis subscription (acquired per stream while it has clients).
        heartbeats: Producers' signs of life, watched while a stream has clients.
        reads: Replay and status reads, bounded and shared.
    """

    def __init__(
        self, *, fanout: Fanout, subscriber: Subscriber, heartbeats: Heartbeats, reads: SubscribeReads
    ) -> None:
        self._fanout = fanout
        self._subscriber = subscriber
        self._heartbeats = heartbeats
        self._reads = reads

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
        """Join ``stream`` (live messages buffered until :meth:`go_live`); done once Redis confirmed."""
        self._fanout.add(
            stream,
            connection,
            previews=wants.previews,
            video=wants.video,
            joining=True,
            kinds=kinds,
            max_rate=max_rate,
        )
        subscribed = self._subscriber.acquire(stream, wants)
        if previously is not None:
            self._subscriber.release(stream, previously)
        self._heartbeats.watch(stream)
        return subscribed

    async def snapshot(
        self,
        stream: str,
        *,
        since: int | None,
        epoch: str | None,
        event_since: int | None = None,
        event_epoch: str | None = None,
    ) -> Snapshot:
        """The replays and stored status for a joining subscriber (see :class:`SubscribeReads`)."""
        return await self._reads.read(
            stream, since=since, epoch=epoch, event_since=event_since, event_epoch=event_epoch
        )

    def current_status(self, stream: str, plan: Replay, raw: bytes | None) -> bytes | None:
        """The stream's latest heartbeat (``raw``), or an offline status if its producer is silent."""
        if raw is not None:
            try:
                if isinstance(wire.decode(raw), wire.Status):
                    return raw
            except wire.WireError:
                pass
        epoch, seq = self._heartbeats.last(stream)
        if not epoch and plan.epoch:
            epoch, seq = plan.epoch, plan.seq
        self._heartbeats.mark_offline(stream)
        return self._heartbeats.offline_status(stream, epoch=epoch, seq=seq)

    def go_live(
        self,
        stream: str,
        connection: ServerConnection,
        *,
        epoch: str | None,
        seq: int,
        events: tuple[str, int] | None = None,
    ) -> None:
        """The replay ended at ``(epoch, seq)`` (events at ``events``): what was buffered after, then live."""
        self._fanout.go_live(stream, connection, epoch=epoch, seq=seq, events=events)

    def leave(self, stream: str, connection: ServerConnection, *, wants: Wants) -> None:
        """Stop ``stream`` for ``connection``."""
        self._fanout.remove(stream, connection)
        self._release(stream, wants)

    def forget(self, connection: ServerConnection, streams: dict[str, Wants]) -> None:
        """``connection`` ended: out of the fan-out, and its subscriptions released."""
        self._fanout.discard(connection)
        for stream, wants in streams.items():
            self._release(stream, wants)

    def _release(self, stream: str, wants: Wants) -> None:
        self._subscriber.release(stream, wants)
        if not self._fanout.clients(stream):
            self._heartbeats.unwatch(stream)
