"""Publishing to Redis: results into history then the channel, heartbeats, subscriber counts.

Every result is one round trip: ``MULTI; XADD history <epoch_ms>-<seq> m <bytes>; PUBLISH channel
<bytes>; EXEC``, so a result a gateway sees live is already in the history it replays from, and
the history entry id encodes the result's epoch start and ``seq``. The events of the result's
frame go first in the same ``MULTI``, each ``XADD events <epoch_ms>-<event seq> m <bytes>;
PUBLISH channel <bytes>`` (:meth:`Publisher._event_ops`): events are ordered before the result
whose counters include them, and each is in the events history before anyone sees it. Every
Redis call goes through the :class:`~framecast.broker.Broker`: on a sharded one every PUBLISH is
an SPUBLISH (accepted inside MULTI by a standalone server) and subscribers are counted with PUBSUB
SHARDNUMSUB; on a Redis Cluster the MULTI goes to the shard owning the stream (all of its names
share one hash tag, so one slot) and SHARDNUMSUB asks that shard.

When Redis cannot be reached the publisher keeps only the newest result (older ones would be
stale by the time Redis is back) but every event (up to ``event_backlog``: events are what an
application counts), retries with capped exponential backoff and jitter, and logs once when the
link is lost and once when it is back, never per result.

A Redis that *answers* with an error (``WRONGTYPE``, ``ERR value is out of range``...) is not a
lost link: retrying the same command cannot help, so the result is dropped (counted in
:attr:`Publisher.refused`; its events in :attr:`Publisher.events_dropped`), the link stays up,
and the error is logged once per distinct reply, as what it is: Redis refusing the write.
Replies that do mean "try elsewhere or later" (a read-only replica after a failover, a cluster
that is down or moving a slot, a server out of memory) count as the link being down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from framecast import wire
from framecast.broker import Append, Broker, Count, Delete, Op, Publish, Put
from framecast.exceptions import BrokerError
from framecast.retry import backoff
from producer.analytics import EventDraft

__all__ = ["Draft", "Publisher"]

log = logging.getLogger(__name__)

_LinkState = Literal["unknown", "up", "down"]


@dataclass(frozen=True, slots=True)
class Draft:
    """A result before publishing: the publisher adds stream, epoch, seq and publish time."""

    frame: int
    captured_at: float
    width: int
    height: int
    detections: tuple[wire.Detection, ...] = ()
    events: tuple[EventDraft, ...] = ()
    """Events seen on this frame (and, after an outage, on the frames whose results were dropped)."""
    event_frames: tuple[tuple[int, float], ...] = ()
    """``(frame, captured_at)`` of each event, when it is not this draft's own frame."""
    occupancy: dict[str, int] | None = None
    crossings: dict[str, tuple[int, int]] | None = None

    def event_frame(self, index: int) -> tuple[int, float]:
        """``(frame, captured_at)`` of the ``index``-th event."""
        return self.event_frames[index] if self.event_frames else (self.frame, self.captured_at)


def _carry_events(old: Draft, new: Draft, *, limit: int) -> tuple[Draft, int]:
    """``new`` with ``old``'s events before its own (each keeping its frame); and how many of
    the oldest had to go to stay within ``limit``."""
    events = old.events + new.events
    frames = tuple(old.event_frame(i) for i in range(len(old.events))) + tuple(
        new.event_frame(i) for i in range(len(new.events))
    )
    over = max(0, len(events) - limit)
    return replace(new, events=events[over:], event_frames=frames[over:]), over


class Publisher:
    """Writes one stream's results, heartbeats and previews; survives Redis outages.

    Args:
        broker: Where to publish (its timeout bounds every call; it knows standalone from
            cluster, classic from sharded pub/sub).
        stream: Stream name.
        history: Approximate length the history is trimmed to.
        status_ttl: Seconds the status key outlives the last heartbeat.
        epoch: Run id; a random one when None.
        where: How Redis is named in logs (no password).
        backoff_base: First retry delay in seconds, doubled per failure, with jitter.
        backoff_cap: Largest retry delay in seconds.
        on_link: Called with True/False when the link comes up or goes down.
        on_publish: Called with the seconds from capture to the write, once per result written.
        events: Whether this producer publishes events (then the epoch start also clears the
            newest id of the events history).
        event_history: Approximate length the events history is trimmed to.
        event_backlog: Events kept while Redis is unreachable; past it the oldest are dropped
            (counted in :attr:`events_dropped` and logged).
    """

    def __init__(
        self,
        broker: Broker,
        *,
        stream: str,
        history: int = 1000,
        status_ttl: float = 5.0,
        epoch: str | None = None,
        where: str = "Redis",
        backoff_base: float = 0.25,
        backoff_cap: float = 5.0,
        on_link: Callable[[bool], None] | None = None,
        on_publish: Callable[[float], None] | None = None,
        events: bool = False,
        event_history: int = 10000,
        event_backlog: int = 10000,
    ) -> None:
        self._on_publish = on_publish
        self._broker = broker
        self.stream = wire.check_stream_name(stream)
        self._channel = wire.channel(stream)
        self._preview_channel = wire.preview_channel(stream)
        self._video_channel = wire.video_channel(stream)
        self._history_key = wire.history_key(stream)
        self._events_key = wire.events_key(stream)
        self._status_key = wire.status_key(stream)
        self._history = history
        self._events = events
        self._event_history = event_history
        self._event_backlog = event_backlog
        self._status_ttl_ms = max(1000, round(status_ttl * 1000))
        self.epoch = epoch or secrets.token_hex(4)
        """Run id carried by every message."""
        self.seq = 0
        """``seq`` of the last result written."""
        self.event_seq = 0
        """``seq`` of the last event written (this epoch)."""
        self.events_published = 0
        """Events written so far (all epochs)."""
        self.events_dropped = 0
        """Events never published: past ``event_backlog`` during an outage, or parked at close."""
        self.errors = 0
        """Failed Redis calls so far (unreachable or refused)."""
        self.refused = 0
        """Redis calls Redis answered with an error reply (see the module docstring)."""
        self._refusals: dict[str, str] = {}  # what was refused -> the error reply, logged once
        self.published = 0
        """Results written so far (all epochs)."""
        self.parked: Draft | None = None
        """The newest result waiting for Redis to come back."""
        self.dropped = 0
        """Results never published: replaced by a newer one while Redis was unreachable, or
        still parked at :meth:`close`."""
        self._epoch_ms: int | None = None
        self._attempted: tuple[int, Draft] | None = None
        self._where = where
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._on_link = on_link
        self._state: _LinkState = "unknown"
        self._reconnecting: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """Whether the last Redis call succeeded."""
        return self._state == "up"

    @property
    def epoch_ms(self) -> int | None:
        """Millisecond part of this epoch's history ids (known after the first write)."""
        return self._epoch_ms

    # ----------------------------------------------------------------- results

    async def publish(self, draft: Draft) -> wire.Result | None:
        """Write a result to history and channel.

        Returns:
            The published result, or None when Redis is unreachable: the draft is then parked
            (replacing an older parked one) and published once the link is back.
        """
        if self._state == "down":
            self._park(draft)
            return None
        try:
            result = await self._write(draft)
        except BrokerError as exc:
            if exc.refused:
                self.dropped += 1  # the same write would be refused again
                self.events_dropped += len(draft.events)
            else:
                self._park(draft)
            self._failed(exc, "result")
            return None
        self._up()
        self._accepted("result")
        return result

    def _park(self, draft: Draft) -> None:
        old = self.parked
        if old is not None and old is not draft:
            self.dropped += 1
            if old.events:
                # The older result goes, its events stay: they go out first, in order, with the newer.
                draft, over = _carry_events(old, draft, limit=self._event_backlog)
                if over:
                    if not self.events_dropped:
                        log.error(
                            "more than %d events waiting for %s: dropping the oldest (counted)",
                            self._event_backlog,
                            self._where,
                        )
                    self.events_dropped += over
        self.parked = draft

    async def flush(self) -> None:
        """Return once nothing is parked and the link is up (cancel it to give up)."""
        while self.parked is not None or self._state == "down":
            await asyncio.sleep(0.05)

    async def _write(self, draft: Draft) -> wire.Result:
        if self._epoch_ms is None:
            self._epoch_ms = await self._epoch_start()
        seq = self.seq + 1
        now = time.time()
        result = wire.Result(
            stream=self.stream,
            epoch=self.epoch,
            seq=seq,
            frame=draft.frame,
            captured_at=draft.captured_at,
            published_at=now,
            width=draft.width,
            height=draft.height,
            detections=draft.detections,
            occupancy=draft.occupancy,
            crossings=draft.crossings,
        )
        data = wire.encode(result)
        self._attempted = (seq, draft)
        entry = Append(self._history_key, f"{self._epoch_ms}-{seq}", data, self._history)
        try:
            ops = [*self._event_ops(draft, now), entry, Publish(self._channel, data)]
            await self._broker.write(ops, atomic=True)
        except BrokerError as exc:
            if not exc.stale_id:
                if exc.refused:
                    self._attempted = None  # not applied; a lost link leaves it to _reconcile
                raise
            if await self._landed(seq):
                # The client retried a transaction whose first try was applied but whose reply
                # was lost with its connection: the result is in history and on the channel.
                self._attempted = None
                self.seq = seq
                self._count(draft)
                return result
            self._attempted = None
            # Someone wrote newer ids into our history (a second producer on this stream?):
            # start a new epoch rather than publish results that replay can never find.
            old = self.epoch
            self.epoch, self.seq, self.event_seq, self._epoch_ms = secrets.token_hex(4), 0, 0, None
            log.error(
                "stream %s: the history has entries newer than epoch %s (is another producer "
                "publishing this stream?); starting epoch %s",
                self.stream,
                old,
                self.epoch,
            )
            return await self._write(draft)
        self._attempted = None
        self.seq = seq
        self._count(draft)
        return result

    def _event_ops(self, draft: Draft, now: float) -> list[Op]:
        """Each event of ``draft``: ``XADD events <epoch_ms>-<event seq>``, then PUBLISH.

        The events take the seqs after :attr:`event_seq`, which :meth:`_count` advances once the
        transaction is applied. They share the channel with results and status: one
        subscription, and one order, per stream.
        """
        ops: list[Op] = []
        for index, event in enumerate(draft.events):
            frame, captured_at = draft.event_frame(index)
            message = wire.Event(
                stream=self.stream,
                epoch=self.epoch,
                seq=self.event_seq + index + 1,
                kind=event.kind,
                track=event.track,
                label=event.label,
                frame=frame,
                captured_at=captured_at,
                published_at=now,
                zone=event.zone,
                line=event.line,
                direction=event.direction,
                lost=event.lost,
                dwell=event.dwell,
            )
            data = wire.encode(message)
            ops.append(Append(self._events_key, f"{self._epoch_ms}-{message.seq}", data, self._event_history))
            ops.append(Publish(self._channel, data))
        return ops

    def _count(self, draft: Draft) -> None:
        self.published += 1
        self.event_seq += len(draft.events)
        self.events_published += len(draft.events)
        if self._on_publish is not None:
            self._on_publish(max(time.time() - draft.captured_at, 0.0))

    async def _epoch_start(self) -> int:
        """max(now, newest history ids' ms + 1): ids keep increasing across producer restarts.

        Both histories count when this producer publishes events: their entries of one epoch
        share its start, so the events key stays one increasing log across epochs.
        """
        now_ms = int(time.time() * 1000)
        for key in [self._history_key, *([self._events_key] if self._events else [])]:
            newest = await self._broker.latest(key)
            if newest is not None:
                now_ms = max(now_ms, newest.ms + 1)
        return now_ms

    async def _landed(self, seq: int) -> bool:
        """Whether the newest history entry is this epoch's ``seq`` (our own write)."""
        newest = await self._broker.latest(self._history_key)
        return newest is not None and newest.id == f"{self._epoch_ms}-{seq}"

    async def _reconcile(self) -> None:
        """After a failed write whose outcome is unknown, learn whether Redis applied it."""
        if self._attempted is None or self._epoch_ms is None:
            return
        seq, draft = self._attempted
        landed = await self._landed(seq)
        self._attempted = None
        if landed:
            self.seq = seq
            self._count(draft)
            if self.parked is draft:
                self.parked = None

    # ----------------------------------------------------------------- heartbeats and demand

    async def heartbeat(self, status: wire.Status, *, previews: bool = False) -> int | None:
        """Publish a status, refresh the status key and optionally count preview subscribers.

        Returns:
            Preview subscribers when asked for, 0 when not; None when Redis is unreachable.
        """
        if self._state == "down":
            return None
        data = wire.encode(status)
        ops: list[Op] = [Publish(self._channel, data), Put(self._status_key, data, self._status_ttl_ms)]
        if previews:
            ops.append(Count(self._preview_channel))
        try:
            counts = await self._broker.write(ops)
        except BrokerError as exc:
            self._failed(exc, "heartbeat")
            return None
        self._up()
        self._accepted("heartbeat")
        return counts[0] if previews else 0

    async def subscribers(self) -> int | None:
        """Subscribers of the stream's channel (on this Redis node), or None when unreachable."""
        count = await self._subscribers(self._channel)
        if count is not None:
            self._up()
        return count

    async def video_viewers(self) -> int | None:
        """Subscribers of the stream's video channel (gateways with video clients), None if unreachable."""
        return await self._subscribers(self._video_channel)

    async def preview(self, data: bytes) -> bool:
        """Publish an encoded preview; False when Redis is unreachable (previews are not kept)."""
        return await self._publish_one(self._preview_channel, data, "preview")

    async def video(self, data: bytes) -> bool:
        """Publish an encoded video frame; False when Redis did not take it (frames are not kept)."""
        return await self._publish_one(self._video_channel, data, "video frame")

    async def _subscribers(self, channel: str) -> int | None:
        if self._state == "down":
            return None
        try:
            return await self._broker.subscribers(channel)
        except BrokerError as exc:
            self._failed(exc, "subscriber count")
            return None

    async def _publish_one(self, channel: str, data: bytes, what: str) -> bool:
        """One PUBLISH outside the results' transaction: what is not taken is not kept."""
        if self._state == "down":
            return False
        try:
            await self._broker.publish(channel, data)
        except BrokerError as exc:
            self._failed(exc, what)
            return False
        return True

    async def close(self, final: wire.Status | None = None, *, timeout: float = 2.0) -> None:
        """Send a last status (if reachable), remove the status key and close the client."""
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        if self.parked is not None:
            self.dropped += 1
            self.events_dropped += len(self.parked.events)
            log.warning(
                "closing with %s unreachable: the last result (frame %d) was not published; "
                "%d result%s in all never reached Redis",
                self._where,
                self.parked.frame,
                self.dropped,
                "" if self.dropped == 1 else "s",
            )
            self.parked = None
        elif self.dropped:
            log.info("%d results were dropped during Redis outages (only the newest is kept)", self.dropped)
        if final is not None and self._state != "down":
            with contextlib.suppress(BrokerError, TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._broker.write(
                        [Publish(self._channel, wire.encode(final)), Delete(self._status_key)]
                    )
        with contextlib.suppress(BrokerError):
            await self._broker.aclose()

    # ----------------------------------------------------------------- link state

    def _failed(self, exc: BrokerError, what: str) -> None:
        """A Redis call failed: a refusal (Redis answered) or a lost link."""
        if exc.reply is None:
            self._lost(exc)
            return
        self.errors += 1
        self.refused += 1
        reply = exc.reply
        if self._refusals.get(what) != reply:
            self._refusals[what] = reply
            log.error(
                "%s refused the %s of stream %s: %s (Redis answered, the link is fine: a setting "
                "or data problem, e.g. --history, or a key of another type)%s",
                self._where,
                what,
                self.stream,
                reply,
                "; dropping each refused result" if what == "result" else "",
            )

    def _accepted(self, what: str) -> None:
        if self._refusals.pop(what, None) is not None:
            log.info("%s accepts the %s of stream %s again", self._where, what, self.stream)

    def _up(self) -> None:
        if self._state == "up":
            return
        if self._state == "unknown":
            log.info("publishing stream %s to %s (epoch %s)", self.stream, self._where, self.epoch)
        self._state = "up"
        if self._on_link is not None:
            self._on_link(True)

    def _lost(self, exc: BrokerError) -> None:
        self.errors += 1
        if self._state == "down":
            return
        log.warning(
            "%s unreachable (%s); retrying with backoff, keeping only the newest result",
            self._where,
            exc,
        )
        self._state = "down"
        if self._on_link is not None:
            self._on_link(False)
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(
                self._reconnect(), name="redis-reconnect"
            )

    async def _reconnect(self) -> None:
        delays = backoff(initial=self._backoff_base, maximum=self._backoff_cap)
        started = time.monotonic()
        while True:
            await asyncio.sleep(next(delays))
            try:
                await self._broker.ping()
                await self._reconcile()
                while self.parked is not None:
                    draft = self.parked
                    self.parked = None
                    try:
                        await self._write(draft)
                    except BaseException:
                        if self.parked is None:
                            self.parked = draft
                        raise
            except BrokerError as exc:
                self.errors += 1
                log.debug("%s still unreachable: %s", self._where, exc)
                continue
            log.info("%s reachable again after %.1f s", self._where, time.monotonic() - started)
            self._state = "up"
            if self._on_link is not None:
                self._on_link(True)
            return
