"""Which channels the gateway's Redis link must hold, and what to send to get there (sans I/O).

:class:`Demand` is the subscriber's bookkeeping with no socket and no event loop in it, in the
style of websockets' protocol objects: local users come in (:meth:`Demand.acquire`,
:meth:`Demand.release`), the commands to send come out (:meth:`Demand.changes`), and Redis's
replies come back in (:meth:`Demand.confirmed`), which says whose wait is over and whether the
link just came back after a drop.

A channel counts as subscribed only once Redis confirmed the last command sent for it: a
subscribe that arrives while an unsubscribe of the same channel is on its way waits for (and
sends) a new subscribe, rather than taking the channel for held. (Taken for held, the channel
was dropped a moment later by the unsubscribe in flight, and the stream went silent.)

A kind of channel may **linger**: held (and its messages still routed) for some seconds after
its last user left, so a user who comes back within them finds it held, with whatever state its
messages kept up to date meanwhile (a stream's video and its current group of pictures). The
time comes in as an argument (:meth:`Demand.release`, :meth:`Demand.expire`): no clock in here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Changes", "Demand", "Route", "Settled"]

W = TypeVar("W")
"""Whatever stands for a waiting user (the subscriber's futures); the table only holds and returns it."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a channel's messages go: its ``stream``, and what they are (``kind``, e.g. ``"messages"``)."""

    stream: str
    kind: str


@dataclass(frozen=True, slots=True)
class Changes:
    """Commands to send on the link, in this order; the canaries come last among the subscribes,
    so their confirmation means every channel before them holds."""

    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.subscribe or self.unsubscribe)


@dataclass(frozen=True, slots=True)
class Settled(Generic[W]):
    """What a confirmation settled.

    Attributes:
        ready: The waiters whose channel now holds.
        up: The link just became connected (its last canary confirmed).
        gap: When the link came back after a drop: the streams whose messages may have been
            missed meanwhile (possibly empty). None otherwise.
    """

    ready: list[W] = field(default_factory=list)
    up: bool = False
    gap: list[str] | None = None


class Demand(Generic[W]):
    """Reference counts of channels, and the link's state for each (one link at a time).

    Args:
        linger: Seconds a channel of each of these kinds stays held after its last user left
            (a kind not named, or 0: given up at once).
    """

    def __init__(self, *, linger: Mapping[str, float] | None = None) -> None:
        self._linger = {kind: seconds for kind, seconds in (linger or {}).items() if seconds > 0}
        self._refs: dict[str, int] = {}  # channel -> local users
        self._routes: dict[str, Route] = {}  # channel -> where its messages go, while used or lingering
        self._lingering: dict[str, float] = {}  # channel with no user -> when it is given up
        self._waiters: dict[str, list[W]] = {}  # channel -> users waiting for its confirmation
        self._canaries: tuple[str, ...] = ()
        self._open = False  # a link is open
        self._sent: dict[str, bool] = {}  # channel -> last command sent on this link (True: subscribe)
        self._pending: dict[str, int] = {}  # channel -> commands sent whose confirmation is due
        self._held: set[str] = set()  # confirmed, with no command pending since
        self._dirty = False
        self._gap_due = False
        self.reconnects = 0
        """Times the link came back after a drop."""

    # ------------------------------------------------------------------
    # Local users

    def acquire(self, channel: str, route: Route, waiter: W) -> bool:
        """Count one more user of ``channel``.

        Returns:
            True when the channel already holds (``waiter`` is not kept); False when ``waiter``
            waits for the confirmation (returned by :meth:`confirmed`, or by :meth:`release`).
        """
        self._refs[channel] = self._refs.get(channel, 0) + 1
        self._routes[channel] = route
        self._lingering.pop(channel, None)
        if channel in self._held:
            return True
        self._waiters.setdefault(channel, []).append(waiter)
        self._dirty = True
        return False

    def release(self, channel: str, now: float = 0.0) -> list[W]:
        """Count one user less; at none, the channel is to be given up (at ``now`` plus its
        kind's linger, by :meth:`expire`, if it lingers).

        Returns:
            The waiters that can no longer be served (the last user left before Redis confirmed).
        """
        count = self._refs.get(channel, 0) - 1
        if count > 0:
            self._refs[channel] = count
            return []
        if channel not in self._refs:
            return []  # not used (a release too many): nothing to give up
        del self._refs[channel]
        route = self._routes.get(channel)
        linger = self._linger.get(route.kind, 0.0) if route is not None else 0.0
        if linger:
            self._lingering[channel] = now + linger  # still wanted, still routed
        else:
            self._routes.pop(channel, None)
            self._dirty = True
        return self._waiters.pop(channel, [])

    def expire(self, now: float) -> list[Route]:
        """Give up the lingering channels whose time came by ``now``; returns their routes."""
        gone = [channel for channel, until in self._lingering.items() if until <= now]
        routes = []
        for channel in gone:
            del self._lingering[channel]
            routes.append(self._routes.pop(channel))
            self._dirty = True
        return routes

    def next_expiry(self) -> float | None:
        """When the next lingering channel is to be given up (None: none lingers)."""
        return min(self._lingering.values(), default=None)

    def lingering(self, channel: str) -> bool:
        """Whether ``channel`` is held only for its linger (no user)."""
        return channel in self._lingering

    def route(self, channel: str) -> Route | None:
        """Where a message on ``channel`` goes; None when nobody uses it (being given up)."""
        return self._routes.get(channel)

    def streams(self) -> list[str]:
        """Streams with at least one local user of ``kind`` ``"messages"``."""
        return sorted(
            {r.stream for c, r in self._routes.items() if r.kind == "messages" and c not in self._lingering}
        )

    # ------------------------------------------------------------------
    # The link

    @property
    def dirty(self) -> bool:
        """Whether :meth:`changes` has something to send."""
        return self._open and self._dirty

    @property
    def connected(self) -> bool:
        """A link is open and every canary on it is confirmed."""
        return self._open and all(c in self._held for c in self._canaries)

    @property
    def held(self) -> int:
        """Channels confirmed on the link (the canaries included)."""
        return len(self._held)

    def opened(self, canaries: tuple[str, ...]) -> None:
        """A fresh link is open (nothing subscribed on it yet); ``canaries`` watch it."""
        self._canaries = canaries
        self._open = True
        self._sent.clear()
        self._pending.clear()
        self._held.clear()
        self._dirty = True

    def closed(self, *, stopping: bool) -> None:
        """The link is gone; when it was connected (and not ``stopping``), its return is a gap."""
        if self.connected and not stopping:
            self._gap_due = True
        self._open = False
        self._sent.clear()
        self._pending.clear()
        self._held.clear()

    def changes(self) -> Changes:
        """The commands that bring the link in line with the users, taken as sent from now on."""
        if not self._open:
            return Changes()
        self._dirty = False
        wanted = set(self._refs).union(self._lingering, self._canaries)
        subscribe = sorted(
            (c for c in wanted if not self._sent.get(c, False)), key=lambda c: (c in self._canaries, c)
        )
        unsubscribe = sorted(c for c, on in self._sent.items() if on and c not in wanted)
        for channel in subscribe:
            self._mark(channel, True)
        for channel in unsubscribe:
            self._mark(channel, False)
        return Changes(subscribe, unsubscribe)

    def _mark(self, channel: str, subscribe: bool) -> None:
        self._sent[channel] = subscribe
        self._pending[channel] = self._pending.get(channel, 0) + 1
        self._held.discard(channel)  # held again only once this command is confirmed

    def confirmed(self, channel: str, subscribed: bool) -> Settled[W]:
        """Redis confirmed a subscribe (``subscribed``) or an unsubscribe of ``channel``."""
        pending = self._pending.get(channel, 0) - 1
        if pending > 0:
            self._pending[channel] = pending
            return Settled()  # a later command for the channel is still on its way
        self._pending.pop(channel, None)
        if not (subscribed and self._sent.get(channel, False)):
            self._held.discard(channel)
            return Settled()
        was_connected = self.connected
        self._held.add(channel)
        ready = self._waiters.pop(channel, [])
        if was_connected or not self.connected:
            return Settled(ready)
        gap: list[str] | None = None
        if self._gap_due:
            self._gap_due = False
            self.reconnects += 1
            gap = self.streams()
        return Settled(ready, up=True, gap=gap)
