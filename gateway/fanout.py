"""Fan-out: one message in, every local client of its stream out, none able to hurt the others.

:class:`Fanout` is the asyncio driver of :class:`gateway.policy.Policy` (the
rules, sans I/O) over websockets connections (:mod:`gateway._wsio`, the only
module touching websockets internals). The hot path (:meth:`Fanout.deliver`)
never awaits: per message one JSON parse, one frame serialisation, then per
client with buffer room one non-blocking ``socket.send()`` (or, while its
transport still holds bytes, one ``transport.write()``). What the policy asks to wait
for, the driver awaits:

* a :class:`~gateway.policy.Step` (the next slice of a big audience) becomes an
  event-loop callback, so one message to thousands of clients does not hold the
  loop for the whole fan-out;
* lagging clients (over ``client_buffer`` bytes unsent) are awaited **together**:
  one task runs ticks, each one ``asyncio.wait`` over every lagging client's
  drain with ``timeout=send_deadline``; the tick ends when the first of them
  drains or the deadline passes, and the policy then flushes the caught-up
  ones, expires stale pending messages and closes those lagging past ``max_lag``.
  This is the founding "push with ``asyncio.wait`` and a deadline" recipe, kept
  where awaiting is real (no task per client, none per message);
* a :class:`~gateway.policy.Close` becomes a close with 4008 (aborted after
  ``close_timeout``);
* a :class:`~gateway.policy.Timer` (a rate-capped client's held result falls due)
  becomes a ``loop.call_later`` that calls :meth:`~gateway.policy.Policy.wake`;
* lag probes: a task calls :meth:`~gateway.policy.Policy.probe` every
  ``probe_interval``; the probes themselves ride on the next write of each client
  (a ping behind the data), and websockets' pong handling reports each answer
  back to :meth:`~gateway.policy.Policy.pong`. A balancer between gateway and
  client buffers what the gateway writes, so the gateway's own buffer level
  alone cannot see a client stall behind it; the pong's delay can.

Example (standalone, e.g. in a benchmark)::

    fanout = Fanout(Limits(client_buffer=1 << 20, max_age=2.0))
    async def handler(connection):
        fanout.add("cam1", connection)
        try:
            await connection.wait_closed()
        finally:
            fanout.discard(connection)
    ...
    fanout.deliver("cam1", encoded_result)   # from the Redis reader, synchronously

This module has no Redis and no Prometheus dependency: what the fan-out did goes to
the :class:`~gateway.policy.Observer` it is given (plain :class:`~gateway.policy.Counters`
by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Hashable, Iterator

from framecast import wire
from gateway import _wsio
from gateway._wsio import Connection, WsSink
from gateway.policy import Close, Limits, Observer, Policy, Step, Timer, Wait

__all__ = ["Fanout"]

log = logging.getLogger(__name__)


class Fanout:
    """Local clients per stream, and the policy for writing to them.

    Args:
        limits: The fan-out's limits (:meth:`Limits.from_config` for a gateway's; the
            settings' defaults when None). Each transport's write-buffer high-water mark
            is set to ``client_buffer``; ``send_deadline`` bounds one wait for lagging
            clients to drain (a client that drains sooner is flushed at once);
            ``close_timeout`` bounds the 4008 closing handshake; ``probe_interval``
            spaces the rounds of lag probes.
        observer: Receives what the fan-out did (a new :class:`~gateway.policy.Counters`
            when None): metrics, a benchmark's counts.
        clock: Wall clock in Unix seconds (for ``max_age``; captured_at is Unix time).
        timer: High-resolution clock for slice budgets and the fan-out's own timing.
        raw_send: Write shared frames with the socket's own ``send()`` while a
            transport's buffer is empty (the transport path alone when False, or
            where the loop's transport has no socket to offer, e.g. uvloop).
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
        raw_send: bool = True,
    ) -> None:
        self.limits = limits = limits if limits is not None else Limits()
        self.policy = Policy(
            limits,
            framer=_wsio.frame,
            ping_framer=_wsio.ping_frame,
            observer=observer,
            clock=clock,
            timer=timer,
        )
        self.observer = self.policy.observer
        self.raw_send = raw_send
        self._prober: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._closing: dict[Connection, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------
    # Membership

    def add(
        self,
        stream: str,
        connection: Connection,
        *,
        previews: bool = False,
        video: bool = False,
        joining: bool = False,
        kinds: tuple[str, ...] | None = None,
        max_rate: float | None = None,
    ) -> None:
        """Add a client to a stream.

        Args:
            stream: Stream name.
            connection: An open websockets asyncio connection.
            previews: Also send this client the stream's binary previews.
            video: Also send this client the stream's video (from the current GOP on).
            joining: Buffer the stream's live messages for this client instead of
                sending them, until :meth:`go_live` (used while a replay is sent,
                so that replay and live meet with no gap and no duplicate).
            kinds: Only these kinds of stream message (None: all).
            max_rate: At most this many results a second, the newest (None: every one).
        """
        policy = self.policy
        sink = policy.sink(connection)
        if sink is None:
            sink = WsSink(
                connection,
                high=self.limits.client_buffer,
                low=self.limits.low_water,
                raw=self.raw_send,
                on_pong=functools.partial(self._pong, connection),
            )
            if policy.probing and (self._prober is None or self._prober.done()):
                with contextlib.suppress(RuntimeError):  # no running loop: no probes
                    self._prober = asyncio.get_running_loop().create_task(self._probe_every())
        policy.add(
            stream,
            connection,
            sink,
            previews=previews,
            video=video,
            joining=joining,
            kinds=kinds,
            max_rate=max_rate,
        )

    def go_live(
        self,
        stream: str,
        connection: Connection,
        *,
        epoch: str | None = None,
        seq: int = 0,
        events: tuple[str, int] | None = None,
    ) -> None:
        """End a client's joining state: send what was buffered, then deliver live.

        Buffered results of ``epoch`` with ``seq`` at or below ``seq`` (already sent by the
        replay) are skipped, and events at or below ``events`` (the events replay's last
        ``(epoch, seq)``); everything else is sent in order.
        """
        self.policy.go_live(stream, connection, epoch=epoch, seq=seq, events=events)
        self._act()

    def remove(self, stream: str, connection: Connection) -> None:
        """Remove a client from one stream (its pending messages for it are dropped)."""
        self.policy.remove(stream, connection)

    def discard(self, connection: Connection) -> None:
        """Remove a client from every stream (call when its connection ends)."""
        self.policy.discard(connection)

    def streams(self) -> list[str]:
        """Streams with at least one client (live or joining)."""
        return self.policy.streams()

    def clients(self, stream: str | None = None) -> int:
        """Clients of ``stream`` (live and joining), or all clients."""
        return self.policy.clients(stream)

    def subscriptions(self) -> int:
        """Client-stream pairs."""
        return self.policy.subscriptions()

    @property
    def lagging(self) -> int:
        """Clients currently lagging."""
        return self.policy.lagging

    def in_flight(self) -> int:
        """Messages still going out in slices or waiting behind one, over every stream."""
        return self.policy.in_flight()

    def max_buffered(self) -> int:
        """Largest unsent byte count of any client's socket (for a gauge; O(clients))."""
        return self.policy.max_buffered()

    def is_lagging(self, connection: Connection) -> bool:
        """Whether a client is currently lagging."""
        return self.policy.is_lagging(connection)

    def __iter__(self) -> Iterator[Connection]:
        return iter([key for key in self.policy.client_keys() if isinstance(key, Connection)])

    # ------------------------------------------------------------------
    # Delivery (synchronous: called from the Redis reader)

    def deliver(self, stream: str, data: bytes) -> wire.Peek | None:
        """Send a stream message (result or status, encoded) to the stream's clients.

        The bytes are forwarded unchanged. Returns the message's routing fields,
        or None if it was malformed (then it is dropped for everyone).
        """
        peeked = self.policy.deliver(stream, data)
        self._act()
        return peeked

    def deliver_preview(self, stream: str, data: bytes) -> bool:
        """Send an encoded binary preview to the stream's clients that asked for previews.

        Returns False if it was malformed (dropped).
        """
        ok = self.policy.deliver_preview(stream, data)
        self._act()
        return ok

    def deliver_video(self, stream: str, data: bytes) -> bool:
        """Send an encoded video frame to the stream's video clients (by group of pictures).

        Returns False if it was malformed (dropped).
        """
        ok = self.policy.deliver_video(stream, data) is not None
        self._act()
        return ok

    def end_video(self, stream: str) -> None:
        """The stream's video stopped coming (its channel given up): its current GOP is dropped."""
        self.policy.end_video(stream)

    def announce(self, stream: str, data: bytes, *, kind: str = "notice") -> None:
        """Send a gateway-made text message (gap, offline status) to every client of a stream.

        Never dropped as stale; joining clients get it after their replay.
        """
        self.policy.announce(stream, data, kind=kind)
        self._act()

    # ------------------------------------------------------------------
    # Actions

    def _act(self) -> None:
        """Carry out what the policy asked for; without a running loop, slices run at once."""
        actions = self.policy.actions()
        if not actions:
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for _ in range(1_000_000):  # synchronous use: every slice until each stream is done
            for action in actions:
                if isinstance(action, Step):
                    if loop is None:
                        self.policy.step(action.stream)
                    else:
                        loop.call_soon(self._step, action.stream)
                elif loop is not None:
                    if isinstance(action, Wait):
                        self._await_lagging(loop)
                    elif isinstance(action, Close):
                        self._close(loop, action.key)
                    elif isinstance(action, Timer):
                        loop.call_later(max(0.0, action.at - time.monotonic()), self._wake_caps)
            actions = self.policy.actions()
            if not actions:
                return

    def _pong(self, connection: Connection) -> None:
        self.policy.pong(connection)
        self._act()

    async def _probe_every(self) -> None:
        """One round of lag probes per ``probe_interval`` (each is a pass over the clients)."""
        policy = self.policy
        while True:
            await asyncio.sleep(self.limits.probe_interval)
            if policy.clients():
                policy.probe()
                self._act()

    def _wake_caps(self) -> None:
        self.policy.wake()
        self._act()

    def _step(self, stream: str) -> None:
        self.policy.step(stream)
        self._act()

    def _await_lagging(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = loop.create_task(self._tick_while_lagging())
        elif self._wake is not None and not self._wake.done():
            # A new lagging client: the running wait does not include it yet.
            self._wake.set_result(None)

    async def _tick_while_lagging(self) -> None:
        """While any client lags: one ``asyncio.wait`` over all their drains, deadline ``send_deadline``."""
        loop = asyncio.get_running_loop()
        policy = self.policy
        while policy.lagging:
            # First the clients that drained before they could be awaited (or since the last wait).
            policy.tick()
            self._act()
            if not policy.lagging:
                return
            waits: list[tuple[WsSink, asyncio.Future[None]]] = []
            for key in policy.lagging_keys():
                sink = policy.sink(key)
                if isinstance(sink, WsSink):
                    waiter = sink.drain_waiter()
                    if waiter is not None:
                        waits.append((sink, waiter))
            wake = self._wake = loop.create_future()
            try:
                await asyncio.wait(
                    [wake, *(waiter for _, waiter in waits)],
                    timeout=self.limits.send_deadline,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                self._wake = None
                wake.cancel()
                for sink, waiter in waits:
                    sink.forget_waiter(waiter)

    def _close(self, loop: asyncio.AbstractEventLoop, key: Hashable) -> None:
        sink = self.policy.sink(key)
        if not isinstance(sink, WsSink) or sink.connection in self._closing:
            return
        task = loop.create_task(sink.close_slow(timeout=self.limits.close_timeout))
        self._closing[sink.connection] = task
        task.add_done_callback(lambda _: self._closing.pop(sink.connection, None))

    async def aclose(self) -> None:
        """Cancel the fan-out's own tasks (at shutdown)."""
        tasks = [
            t for t in (self._ticker, self._prober, *self._closing.values()) if t is not None and not t.done()
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._ticker = self._prober = None
