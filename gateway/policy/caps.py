"""Rate caps: a client's results at most ``max_rate`` a second, conflated to the newest.

A capped client is written a result when ``1 / max_rate`` seconds have passed since the last
one it was written on that stream; a result that comes sooner is held instead (replacing an
older held one, counted ``conflated``), and written when its time comes, on a
:class:`~gateway.policy.state.Timer` the driver arms. So the client always ends up with the
newest result, and never more than its cap. A held result older than ``max_age`` by then is
dropped like any stale result. Writes go through the slicer, behind whatever of the stream is
still going out in slices: a capped client's results never overtake an earlier message.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.policy.limits import Limits
from gateway.policy.observer import Observer
from gateway.policy.slicing import Slicer
from gateway.policy.state import RESULT, Action, Cap, Client, Job, Timer

__all__ = ["Caps"]


class Caps:
    """The held results of capped clients, and when the next is due.

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
        self._waiting: dict[Cap, tuple[Client, str]] = {}  # each cap holding a result: whose
        self._armed: float | None = None  # the time of the Timer asked for, if one is out

    def offer(
        self, stream: str, clients: dict[Client, Cap], data: bytes, captured: float | None, age: float | None
    ) -> None:
        """A result for the capped ``clients`` of ``stream``: written to those due, held for the others.

        The steady state of a capped client (its interval not over, a result already held) is
        two attribute reads and one write per result: this loop runs for every capped client on
        every result.
        """
        now = self._monotonic()
        held = (data, captured)
        due: dict[Client, None] | None = None
        conflated = 0
        for client, cap in clients.items():
            if now < cap.next_at:
                if cap.held is None:
                    self._waiting[cap] = (client, stream)
                    self._arm(cap.next_at)
                else:
                    conflated += 1
                cap.held = held
                continue
            if cap.held is not None:
                cap.held = None
                conflated += 1
                self._waiting.pop(cap, None)
            cap.next_at = now + cap.interval
            if due is None:
                due = {}
            due[client] = None
        if conflated:
            self._observer.dropped("conflated", conflated)
        if due:
            self._slicer.fan(due, Job((stream, RESULT), data, False, captured, age))

    def forget(self, client: Client, stream: str) -> None:
        """``client`` left ``stream`` (or changed its choices): nothing held for it any more."""
        cap = client.caps.get(stream)
        if cap is not None:
            cap.held = None
            self._waiting.pop(cap, None)

    def wake(self) -> None:
        """The armed time came: write each held result that is due (grouped by message)."""
        self._armed = None
        now = self._monotonic()
        wall = self._clock()
        groups: dict[tuple[str, int], tuple[bytes, float | None, dict[Client, None]]] = {}
        later: float | None = None
        for cap, (client, stream) in list(self._waiting.items()):
            held = cap.held
            if held is None or client.closing or client.caps.get(stream) is not cap:
                del self._waiting[cap]
                continue
            if now < cap.next_at:
                later = cap.next_at if later is None else min(later, cap.next_at)
                continue
            del self._waiting[cap]
            cap.held = None
            data, captured = held
            if self._max_age and captured is not None and wall - captured > self._max_age:
                self._observer.dropped("stale", 1)
                continue
            cap.next_at = now + cap.interval
            group = groups.get((stream, id(data)))
            if group is None:
                group = groups[(stream, id(data))] = (data, captured, {})
            group[2][client] = None
        for (stream, _), (data, captured, members) in groups.items():
            age = None if captured is None else wall - captured
            self._slicer.fan(members, Job((stream, RESULT), data, False, captured, age))
        if later is not None:
            self._arm(later)

    def _arm(self, at: float) -> None:
        if self._armed is None or at < self._armed:
            self._armed = at
            self._actions.append(Timer(at=at))
