"""Rate caps: a client's results at most ``max_rate`` a second, conflated to the newest.

A capped client is written a result when ``1 / max_rate`` seconds have passed since the last
one it was written on that stream; results that come sooner are not written to it, and when its
time comes it is written the stream's newest (the ones it skipped count as ``conflated``). So it
always ends up with the newest result, and never more than its cap. A newest result older than
``max_age`` by then is dropped like any stale result.

The cost is per delivery, not per result: per stream, the newest result is kept once, and a
capped client is either *idle* (its interval is over: the next result is written to it at once)
or *waiting* (in a heap by the time its interval ends). A result costs nothing for the waiting
clients, a :class:`~gateway.policy.state.Timer` the driver arms wakes the policy when the
earliest interval ends, and the clients then due share one fan-out of the newest result (one
framing), through the slicer: behind whatever of the stream is still going out in slices, so a
capped client's results never overtake an earlier message.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from gateway.policy.limits import Limits
from gateway.policy.observer import Observer
from gateway.policy.slicing import Slicer
from gateway.policy.state import RESULT, Action, Cap, Client, Job, Timer

__all__ = ["Caps"]


class _Stream:
    """One stream's capped clients and its newest result."""

    __slots__ = ("count", "idle", "newest", "waiting")

    def __init__(self) -> None:
        self.idle: dict[Client, Cap] = {}  # interval over: the next result goes to them at once
        self.waiting: dict[Client, Cap] = {}  # interval running (and in the heap)
        self.newest: tuple[bytes, float | None] | None = None
        self.count = 0  # results seen: Cap.got says up to which one a client has


class Caps:
    """The capped clients of every stream, and when the next of them is due.

    Args:
        limits: ``max_age``.
        slicer: Where due results go out, in stream order.
        observer: Told of conflated and stale drops.
        clock: Wall clock (capture times are Unix time).
        monotonic: Clock for the caps' intervals.
        actions: Where :class:`~gateway.policy.state.Timer` actions are queued.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        slicer: Slicer,
        observer: Observer,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        actions: list[Action],
    ) -> None:
        self._max_age = limits.max_age
        self._slicer = slicer
        self._observer = observer
        self._clock = clock
        self._monotonic = monotonic
        self._actions = actions
        self._streams: dict[str, _Stream] = {}
        self._heap: list[tuple[float, int, Client, str]] = []
        self._order = itertools.count()  # heap ties broken by arrival, never by comparing clients
        self._armed: float | None = None  # the time of the Timer asked for, if one is out

    def members(self, stream: str) -> dict[Client, None] | None:
        """The capped clients of ``stream`` (for a notice that concerns them), or None."""
        state = self._streams.get(stream)
        if state is None:
            return None
        return dict.fromkeys([*state.idle, *state.waiting])

    def attach(self, stream: str, client: Client, cap: Cap) -> None:
        """``client`` is live on ``stream`` with a cap (``cap.next_at`` in the future: it was just
        written a result, and waits)."""
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _Stream()
        cap.got = state.count
        if cap.next_at > self._monotonic():
            state.waiting[client] = cap
            self._push(cap.next_at, client, stream)
        else:
            state.idle[client] = cap

    def written(self, client: Client, stream: str) -> None:
        """A result was written to ``client`` late (held while it lagged): its interval starts now."""
        state = self._streams.get(stream)
        if state is None:
            return
        cap = state.waiting.get(client) or state.idle.pop(client, None)
        if cap is None:
            return
        state.waiting[client] = cap
        cap.next_at = self._monotonic() + cap.interval
        self._push(cap.next_at, client, stream)  # an older heap entry no longer matches: skipped

    def forget(self, client: Client, stream: str) -> None:
        """``client`` left ``stream`` (or changed its choices): no longer capped there."""
        state = self._streams.get(stream)
        if state is None:
            return
        state.idle.pop(client, None)
        state.waiting.pop(client, None)  # its heap entry is skipped when it comes up
        if not state.idle and not state.waiting:
            del self._streams[stream]

    def offer(self, stream: str, data: bytes, captured: float | None, age: float | None) -> None:
        """A result of ``stream``: kept as its newest, written now to the idle capped clients."""
        state = self._streams.get(stream)
        if state is None:
            return
        state.count += 1
        state.newest = (data, captured)
        idle = state.idle
        if not idle:
            return  # every capped client waits: nothing to do per client
        now = self._monotonic()
        count = state.count
        for client, cap in idle.items():
            cap.got = count
            cap.next_at = now + cap.interval
            state.waiting[client] = cap
            self._push(cap.next_at, client, stream)
        state.idle = {}
        self._slicer.fan(dict.fromkeys(idle), Job((stream, RESULT), data, False, captured, age))

    def wake(self) -> None:
        """The armed time came: the clients due get their stream's newest result, if newer."""
        self._armed = None
        now = self._monotonic()
        heap = self._heap
        due: dict[str, dict[Client, None]] = {}
        conflated = stale = 0
        while heap and heap[0][0] <= now:
            at, _, client, stream = heapq.heappop(heap)
            state = self._streams.get(stream)
            cap = None if state is None else state.waiting.get(client)
            if state is None or cap is None or cap.next_at != at:
                continue  # left, or re-entered the heap since
            newest = state.newest
            if newest is None or state.count == cap.got or client.closing:
                del state.waiting[client]
                state.idle[client] = cap  # nothing new: the next result goes at once
                continue
            if self._max_age and newest[1] is not None and self._clock() - newest[1] > self._max_age:
                stale += 1
                cap.got = state.count
                del state.waiting[client]
                state.idle[client] = cap
                continue
            conflated += state.count - cap.got - 1
            cap.got = state.count
            cap.next_at = now + cap.interval
            self._push(cap.next_at, client, stream, arm=False)
            due.setdefault(stream, {})[client] = None
        if conflated:
            self._observer.dropped("conflated", conflated)
        if stale:
            self._observer.dropped("stale", stale)
        wall = self._clock()
        for stream, members in due.items():
            newest = self._streams[stream].newest
            assert newest is not None
            data, captured = newest
            age = None if captured is None else wall - captured
            self._slicer.fan(members, Job((stream, RESULT), data, False, captured, age))
        if heap:
            self._arm(heap[0][0])

    def _push(self, at: float, client: Client, stream: str, *, arm: bool = True) -> None:
        heapq.heappush(self._heap, (at, next(self._order), client, stream))
        if arm:
            self._arm(at)

    def _arm(self, at: float) -> None:
        if self._armed is None or at < self._armed:
            self._armed = at
            self._actions.append(Timer(at=at))
