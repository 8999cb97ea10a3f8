"""Rate caps: a client's results at most ``max_rate`` a second, conflated to the newest.

A capped client is written a result when ``1 / max_rate`` seconds have passed since the last
one it was written on that stream; results that come sooner are not written to it, and when its
time comes it is written the stream's newest (the ones it skipped count as ``conflated``). So it
always ends up with the newest result, and never more than its cap. A newest result older than
``max_age`` by then is dropped like any stale result.

The cost is per delivery, not per result: per stream, the newest result is kept once, and a
capped client is either *idle* (its interval is over: the next result is written to it at once)
or *waiting*, in a group of the clients whose intervals end at the same time (those written the
same result with the same cap), one heap entry per group. A result costs nothing for the waiting
clients; a :class:`~gateway.policy.state.Timer` the driver arms wakes the policy when the
earliest group is due, and its clients share one fan-out of the newest result (one framing),
through the slicer: behind whatever of the stream is still going out in slices, so a capped
client's results never overtake an earlier message.

**Groups merge on a grid.** A client's interval ends on the next multiple of ``interval /
GRID`` (at most that much later than ``1 / max_rate``: its rate stays within ``GRID / (GRID +
1)`` of its cap, never above it), and the clients of a stream due at the same grid time are one
group. Without the grid, clients that joined at different times stayed in groups of their own
forever (each woken at its own time, regrouped at its own time): 1000 clients capped at 2/s
made 2000 one-client fan-outs a second (``framecast bench``, part filters). With it, a stream's
capped clients of one cap cost at most ``GRID`` fan-outs per interval, however many they are;
and all the groups due at one wake share one fan-out per stream.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

from gateway.policy.limits import Limits
from gateway.policy.observer import Observer
from gateway.policy.slicing import Slicer
from gateway.policy.state import RESULT, Action, Cap, Client, Job, Timer

__all__ = ["GRID", "Caps"]

GRID = 8
"""Grid points per interval on which capped clients' intervals end (see the module's docstring)."""


Group = dict[Client, Cap]
"""Waiting capped clients of one stream whose intervals end at the same time."""


class _Stream:
    """One stream's capped clients and its newest result."""

    __slots__ = ("capped", "count", "idle", "newest")

    def __init__(self) -> None:
        self.capped: dict[Client, Cap] = {}  # all of them
        self.idle: Group = {}  # interval over: the next result goes to them at once
        self.newest: tuple[bytes, float | None] | None = None
        self.count = 0  # results seen: Cap.got says up to which one a client has


class Caps:
    """The capped clients of every stream, and when the next group of them is due.

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
        self._heap: list[tuple[float, int, str, Group]] = []
        self._pending: dict[tuple[str, float], Group] = {}  # the group in the heap per (stream, time)
        self._order = itertools.count()  # heap ties broken by arrival, never by comparing groups
        self._armed: float | None = None  # the time of the Timer asked for, if one is out

    def members(self, stream: str) -> dict[Client, None] | None:
        """The capped clients of ``stream`` (for a notice that concerns them), or None."""
        state = self._streams.get(stream)
        return None if state is None else dict.fromkeys(state.capped)

    def attach(self, stream: str, client: Client, cap: Cap) -> None:
        """``client`` is live on ``stream`` with a cap (``cap.next_at`` in the future: it was just
        written a result, and waits)."""
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _Stream()
        state.capped[client] = cap
        cap.got = state.count
        if cap.next_at > self._monotonic():
            self._wait(stream, {client: cap}, _on_grid(cap.next_at, cap.interval))
        else:
            cap.group = None
            state.idle[client] = cap

    def written(self, client: Client, stream: str) -> None:
        """A result was written to ``client`` late (held while it lagged): its interval starts now."""
        state = self._streams.get(stream)
        cap = None if state is None else state.capped.get(client)
        if state is None or cap is None:
            return
        self._leave(client, cap, state)
        self._wait(stream, {client: cap}, _on_grid(self._monotonic() + cap.interval, cap.interval))

    def forget(self, client: Client, stream: str) -> None:
        """``client`` left ``stream`` (or changed its choices): no longer capped there."""
        state = self._streams.get(stream)
        cap = None if state is None else state.capped.pop(client, None)
        if state is None or cap is None:
            return
        self._leave(client, cap, state)
        if not state.capped:
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
        state.idle = {}
        self._slicer.fan(dict.fromkeys(idle), Job((stream, RESULT), data, False, captured, age))
        self._regroup(stream, idle, state.count, self._monotonic())

    def wake(self) -> None:
        """The armed time came: the groups due get their stream's newest result, if newer."""
        self._armed = None
        now = self._monotonic()
        wall = self._clock()
        heap = self._heap
        conflated = stale = 0
        dues: dict[str, Group] = {}  # per stream, every client due at this wake: one fan-out
        while heap and heap[0][0] <= now:
            at, _, stream, group = heapq.heappop(heap)
            if self._pending.get((stream, at)) is group:
                del self._pending[stream, at]
            state = self._streams.get(stream)
            if state is None:
                continue
            newest = state.newest
            count = state.count
            expired = (
                bool(self._max_age)
                and newest is not None
                and newest[1] is not None
                and wall - newest[1] > self._max_age
            )
            due = dues.get(stream)
            if due is None:
                due = dues[stream] = {}
            for client, cap in group.items():
                if cap.group is not group:
                    continue  # left, or moved since
                if newest is None or count == cap.got or client.closing or expired:
                    if expired and count != cap.got:
                        stale += 1
                        cap.got = count
                    cap.group = None
                    state.idle[client] = cap  # nothing new: the next result goes at once
                    continue
                conflated += count - cap.got - 1
                due[client] = cap
        for stream, due in dues.items():
            state = self._streams.get(stream)
            if not due or state is None or state.newest is None:
                continue
            data, captured = state.newest
            age = None if captured is None else wall - captured
            self._slicer.fan(dict.fromkeys(due), Job((stream, RESULT), data, False, captured, age))
            self._regroup(stream, due, state.count, now, arm=False)
        if conflated:
            self._observer.dropped("conflated", conflated)
        if stale:
            self._observer.dropped("stale", stale)
        if heap:
            self._arm(heap[0][0])

    def _regroup(self, stream: str, written: Group, count: int, now: float, *, arm: bool = True) -> None:
        """``written`` were just written result ``count``: they wait, grouped by their interval."""
        groups: dict[float, Group] = {}
        for client, cap in written.items():
            cap.got = count
            group = groups.get(cap.interval)
            if group is None:
                group = groups[cap.interval] = {}
            group[client] = cap
        for interval, group in groups.items():
            self._wait(stream, group, _on_grid(now + interval, interval), arm=arm)

    def _wait(self, stream: str, group: Group, at: float, *, arm: bool = True) -> None:
        """``group`` waits until ``at`` (a grid time), in the group already due then, if any."""
        pending = self._pending.get((stream, at))
        if pending is not None:
            pending.update(group)
            group = pending
        for cap in group.values():
            cap.next_at = at
            cap.group = group
        if pending is not None:
            return  # its heap entry and its timer are out already
        self._pending[stream, at] = group
        heapq.heappush(self._heap, (at, next(self._order), stream, group))
        if arm:
            self._arm(at)

    @staticmethod
    def _leave(client: Client, cap: Cap, state: _Stream) -> None:
        if cap.group is not None:
            cap.group.pop(client, None)  # an emptied group's heap entry just finds nobody
            cap.group = None
        state.idle.pop(client, None)

    def _arm(self, at: float) -> None:
        if self._armed is None or at < self._armed:
            self._armed = at
            self._actions.append(Timer(at=at))


def _on_grid(at: float, interval: float) -> float:
    """The first grid time at or after ``at``: a multiple of ``interval / GRID``."""
    step = interval / GRID
    # The tolerance keeps a time already on the grid there, through float rounding.
    return math.ceil(at / step - 1e-9) * step
