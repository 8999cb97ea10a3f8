"""The fan-out policy's façade, sans I/O: who gets which message, when, and what to do with a slow client.

Like websockets' own protocol core, :class:`Policy` does no I/O of its own: no asyncio, no
sockets, no websockets. Events go in as method calls (a message arrived, a client joined, went
live or left, a slice's turn came, a tick, a probe round, a probe's answer); effects come out
two ways: **writes** straight to each client's :class:`~gateway.policy.state.Sink`,
synchronously (a write to a buffer with room cannot block, and the hot path must not allocate
an action per client per message), and **actions** that need waiting, collected with
:meth:`Policy.actions`: :class:`Step` (the next slice of a stream on the next loop turn),
:class:`Wait` (await this client's drain) and :class:`Close` (close this client with 4008).
What it did besides goes to one :class:`~gateway.policy.observer.Observer`. The driver
(:class:`gateway.fanout.Fanout`) turns sinks into websockets connections and actions into loop
callbacks and one ``asyncio.wait``; tests drive the policy with fake sinks and fake clocks.

The rules live in the sub-machines this façade wires and feeds (see :mod:`gateway.policy`):
membership, join buffers, slicing and overload, the one write rule, lag and conflation, lag
probes, rate caps, video; a message's arrival (:mod:`gateway.policy.arrival`) and a lagging
client's flush or close (:mod:`gateway.policy.recovery`) are flows across them. The façade
keeps the flows of membership: a client's choices on joining, go-live (a join buffer released
through the write rule), and leaving every sub-machine at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from framecast import wire
from gateway.policy.arrival import Arrival
from gateway.policy.caps import Caps
from gateway.policy.joins import Joins
from gateway.policy.lag import Lag
from gateway.policy.limits import Limits
from gateway.policy.membership import Membership
from gateway.policy.observer import Counters, Observer
from gateway.policy.probes import Probes
from gateway.policy.recovery import Recovery
from gateway.policy.slicing import Slicer
from gateway.policy.state import FILTERED, NOTICE, RESULT, Action, Cap, Client, Framer, PingFramer, Sink
from gateway.policy.video import Video
from gateway.policy.writer import Writer

__all__ = ["Policy"]


class Policy:
    """Local clients per stream, and the rules for writing to them; see the module docstring.

    Args:
        limits: The fan-out's limits (:meth:`Limits.from_config` for a gateway's).
        framer: Frames a message once for the clients that share frames.
        ping_framer: Frames a lag probe; lag probes need it (None: none are sent).
        observer: Receives what the fan-out did (a new :class:`Counters` by default).
        clock: Wall clock in Unix seconds (captured_at is Unix time).
        monotonic: Clock for lag durations.
        timer: High-resolution clock for slice budgets and the fan-out's own timing.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        framer: Framer,
        ping_framer: PingFramer | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.limits = limits = limits if limits is not None else Limits()
        self.observer: Observer = observer if observer is not None else Counters()
        self._clock = clock
        self._actions: list[Action] = []
        threshold = limits.lag_threshold if ping_framer is not None and limits.probing else 0.0
        self._members = Membership()
        self._lag = Lag(
            limits,
            threshold=threshold,
            observer=self.observer,
            clock=clock,
            monotonic=monotonic,
            actions=self._actions,
        )
        self._probes = Probes(
            limits, ping_framer=ping_framer, lag=self._lag, observer=self.observer, monotonic=monotonic
        )
        self._writer = Writer(
            limits, framer=framer, lag=self._lag, probes=self._probes, observer=self.observer, clock=clock
        )
        self._slicer = Slicer(
            limits,
            writer=self._writer,
            probes=self._probes if self._probes.threshold else None,
            observer=self.observer,
            clock=clock,
            timer=timer,
            actions=self._actions,
        )
        self._joins = Joins(limits, observer=self.observer, clock=clock)
        self._caps = Caps(
            limits,
            slicer=self._slicer,
            observer=self.observer,
            clock=clock,
            monotonic=monotonic,
            actions=self._actions,
        )
        self._monotonic = monotonic
        self._video = Video(limits, framer=framer, observer=self.observer, clock=clock, probes=self._probes)
        self._arrival = Arrival(
            limits,
            members=self._members,
            joins=self._joins,
            caps=self._caps,
            slicer=self._slicer,
            observer=self.observer,
            clock=clock,
        )
        self._recovery = Recovery(
            limits,
            lag=self._lag,
            probes=self._probes,
            writer=self._writer,
            caps=self._caps,
            observer=self.observer,
            clock=clock,
        )

    @property
    def probing(self) -> bool:
        """Whether lag probes are on (a threshold, a probe interval and a ping framer)."""
        return bool(self._probes.threshold)

    # ------------------------------------------------------------------
    # Queries

    def actions(self) -> list[Action]:
        """Take the actions queued since the last call (the driver calls it after every event)."""
        actions = self._actions[:]
        self._actions.clear()  # the sub-machines hold this list: emptied, never replaced
        return actions

    def sink(self, key: Hashable) -> Sink | None:
        """The sink of a client, if it is known."""
        client = self._members.clients.get(key)
        return None if client is None else client.sink

    def client_keys(self) -> list[Hashable]:
        """Every client's key."""
        return list(self._members.clients)

    def streams_of(self, key: Hashable) -> list[str]:
        """The streams a client is on, live or joining."""
        client = self._members.clients.get(key)
        return [] if client is None else list(client.streams)

    def max_buffered(self) -> int:
        """Largest unsent byte count of any client (for a gauge; O(clients))."""
        return max((client.buffered() for client in self._members.clients.values()), default=0)

    def lagging_keys(self) -> list[Hashable]:
        """Keys of the clients currently lagging."""
        return [client.key for client in self._lag.clients]

    def streams(self) -> list[str]:
        """Streams with at least one client (live or joining)."""
        return self._members.streams()

    def clients(self, stream: str | None = None) -> int:
        """Clients of ``stream`` (live and joining), or all clients."""
        return self._members.count(stream)

    def subscriptions(self) -> int:
        """Client-stream pairs."""
        return sum(len(c.streams) for c in self._members.clients.values())

    @property
    def lagging(self) -> int:
        """Clients currently lagging."""
        return len(self._lag.clients)

    def in_flight(self) -> int:
        """Messages still going out in slices or waiting behind one, over every stream."""
        return self._slicer.in_flight()

    def is_lagging(self, key: Hashable) -> bool:
        """Whether a client is currently lagging."""
        client = self._members.clients.get(key)
        return client is not None and client.lagging_since is not None

    def probe_age(self, key: Hashable) -> float | None:
        """Seconds a client's lag probe has gone unanswered, or None if it has none out."""
        client = self._members.clients.get(key)
        return None if client is None else self._probes.age(client)

    def max_probe_age(self) -> float:
        """The oldest unanswered lag probe's age over every client, in seconds (for a gauge)."""
        return self._probes.oldest()

    def held_bytes(self, key: Hashable) -> int:
        """Bytes the policy itself holds for a client: pending (lagging) and join buffers."""
        client = self._members.clients.get(key)
        if client is None:
            return 0
        return sum(len(held[0]) for held in client.pending.values()) + sum(
            join.bytes for join in client.joining.values()
        )

    def pending(self, key: Hashable) -> list[tuple[str, str]]:
        """The (stream, kind) of each message a lagging client holds, in arrival order."""
        client = self._members.clients.get(key)
        return [] if client is None else [(stream, kind) for stream, kind, _ in client.pending]

    # ------------------------------------------------------------------
    # Membership events

    def add(
        self,
        stream: str,
        key: Hashable,
        sink: Sink,
        *,
        previews: bool = False,
        video: bool = False,
        joining: bool = False,
        kinds: tuple[str, ...] | None = None,
        max_rate: float | None = None,
    ) -> None:
        """A client joined a stream (``joining``: buffer its live messages until :meth:`go_live`).

        ``video``: it also gets the stream's video, from the current GOP when it goes live
        (video follows its own rules: neither ``kinds`` nor ``max_rate`` applies to it).
        ``kinds``: only these kinds of stream message (None: all); ``max_rate``: at most this
        many results a second, conflated to the newest (None: every result).
        """
        client = self._members.client(key, sink)
        self._detach(stream, client)
        client.streams[stream] = previews
        wanted = frozenset(FILTERED if kinds is None else kinds)
        if wanted == frozenset(FILTERED) and not max_rate:
            client.caps.pop(stream, None)  # no filter: the plain path
        else:
            client.caps[stream] = Cap(wanted, max_rate)
        self._video.want(stream, client, video)
        if joining:
            self._members.join(stream, client)
        else:
            self._attach(stream, client)

    def go_live(
        self,
        stream: str,
        key: Hashable,
        *,
        epoch: str | None = None,
        seq: int = 0,
        events: tuple[str, int] | None = None,
    ) -> None:
        """A joining client's replay is done: send what was buffered, then deliver live.

        Buffered results of ``epoch`` with ``seq`` at or below ``seq`` (already sent by the
        replay) are skipped, and so are events at or below ``events`` (the events replay's
        last ``(epoch, seq)``); everything else the client takes is sent in order.
        """
        client = self._members.clients.get(key)
        if client is None or stream not in client.streams:
            return
        join = self._members.joined(stream, client)
        cap = client.caps.get(stream)
        if join is not None:
            released = self._joins.release(join, stream, epoch=epoch, seq=seq, events=events, cap=cap)
            for kind, data, captured in released:
                if kind == RESULT and cap is not None and cap.interval:
                    cap.next_at = self._monotonic() + cap.interval
                self._writer.send(client, (stream, kind), data, captured=captured)
        self._attach(stream, client)

    def remove(self, stream: str, key: Hashable) -> None:
        """A client left one stream (its pending messages for it are dropped)."""
        client = self._members.clients.get(key)
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
        client = self._members.clients.get(key)
        if client is None:
            return False
        for stream in list(client.streams):
            self._detach(stream, client)
        client.streams.clear()
        self._forget(client)
        return client.closing

    def _attach(self, stream: str, client: Client) -> None:
        self._members.attach(stream, client)
        self._video.attach(stream, client)
        cap = client.caps.get(stream)
        if cap is not None and cap.interval and RESULT in cap.kinds:
            self._caps.attach(stream, client, cap)

    def _detach(self, stream: str, client: Client) -> None:
        self._members.detach(stream, client)
        self._lag.clear(client, stream)
        self._caps.forget(client, stream)
        self._video.detach(stream, client)
        self._slicer.leave(stream, client)

    def _forget(self, client: Client) -> None:
        self._members.forget(client)
        self._probes.forget(client)
        self._lag.stop(client)
        self._lag.clear(client)

    # ------------------------------------------------------------------
    # Message events

    def deliver(self, stream: str, data: bytes) -> wire.Peek | None:
        """A stream message (result, status or event, encoded) arrived: forward it unchanged.

        Dropped for the live clients if it arrived older than ``max_age`` (events never are;
        see :mod:`gateway.policy.arrival`). Returns its routing fields, or None if it was
        malformed (dropped for everyone).
        """
        return self._arrival.deliver(stream, data)

    def deliver_preview(self, stream: str, data: bytes) -> bool:
        """An encoded binary preview arrived, for the clients that asked. False if malformed."""
        return self._arrival.deliver_preview(stream, data)

    def deliver_video(self, stream: str, data: bytes) -> wire.VideoPeek | None:
        """An encoded binary video frame arrived, for the stream's video clients (GOP rules:
        :mod:`gateway.policy.video`). Returns its routing fields, or None if it was malformed."""
        return self._video.deliver(stream, data)

    def end_video(self, stream: str) -> None:
        """The gateway no longer receives ``stream``'s video (its channel given up): its current
        GOP goes, since the next frame to come may be far from it."""
        self._video.end(stream)

    def video_viewers(self, stream: str) -> int:
        """Clients of ``stream``'s video."""
        return self._video.viewers(stream)

    def announce(self, stream: str, data: bytes, *, kind: str = NOTICE) -> None:
        """A gateway-made text message (gap, offline status) for every client of a stream.

        Never dropped as stale; joining clients get it after their replay.
        """
        self._arrival.announce(stream, data, kind)

    def step(self, stream: str) -> None:
        """A slice's turn came: write the next slice of the oldest sliced message of ``stream``."""
        self._slicer.step(stream)

    def wake(self) -> None:
        """A :class:`~gateway.policy.state.Timer`'s time came: rate-capped clients' due results."""
        self._caps.wake()

    # ------------------------------------------------------------------
    # Lagging clients and lag probes

    def tick(self) -> None:
        """A lagging client drained, or the deadline of a wait passed: check every lagging client.

        A client at or below ``low_water`` with no overdue lag probe is flushed (its
        newest pending messages, minus the stale ones) and is back on the synchronous
        path; the others drop what went stale meanwhile, and one lagging (or with a
        probe unanswered) longer than ``max_lag`` gets a :class:`Close`
        (:mod:`gateway.policy.recovery`).
        """
        self._recovery.tick()

    def probe(self) -> None:
        """A probe interval passed: start a round of lag probes, and find the clients that lag."""
        if self._probes.threshold:
            members = self._members
            self._probes.round(members.live, members.previews, members.joining)

    def pong(self, key: Hashable) -> None:
        """A client answered its lag probe: it has read everything written before it.

        A lagging client whose buffer is at ``low_water`` has caught up: its newest
        pending messages are written now, and it owes a fresh probe behind them.
        """
        client = self._members.clients.get(key)
        if client is not None:
            self._recovery.pong(client)
