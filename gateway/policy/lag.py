"""Lagging clients: conflation to the newest message per slot, expiry, and the ``max_lag`` verdict.

A client with more than ``client_buffer`` bytes unsent (or, see :mod:`gateway.policy.probes`,
with a lag probe unanswered past ``lag_threshold``) is lagging: it keeps only the newest
message per stream and kind, in arrival order, until a review finds it caught up (its
buffer at ``low_water`` and no probe overdue); what goes stale meanwhile is dropped, and one
lagging longer than ``max_lag`` is closed.

A kind that keeps every message (events, :attr:`Delivery.keeps`) is the exception: each is
held in its own slot, in arrival order among the others, never conflated nor expired. Their
bytes are bounded by ``client_buffer``: a client whose held events pass it is closed (4008)
at once, never thinned; it resumes them from the events history.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.policy.limits import Limits
from gateway.policy.observer import Observer
from gateway.policy.state import DELIVERY, Action, Client, Close, Held, Pending, Wait

__all__ = ["Lag"]


class Lag:
    """The lagging clients (the set the driver awaits), and the verdicts on them.

    Args:
        limits: ``max_age``, ``max_lag``, ``low_water``.
        threshold: Seconds a probe may go unanswered (0: no lag probes).
        observer: Told of stale drops.
        clock: Wall clock (capture times are Unix time).
        monotonic: Clock for lag durations.
        actions: Where :class:`~gateway.policy.state.Wait` actions are queued.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        threshold: float,
        observer: Observer,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        actions: list[Action],
    ) -> None:
        self._max_age = limits.max_age
        self._max_lag = limits.max_lag
        self._keep_bytes = limits.client_buffer
        self._low_water = limits.low_water
        self._threshold = threshold
        self._observer = observer
        self._clock = clock
        self._monotonic = monotonic
        self._actions = actions
        self.clients: dict[Client, None] = {}

    def hold(
        self, client: Client, slot: tuple[str, str], data: bytes, binary: bool, captured: float | None
    ) -> bool:
        """Keep only the newest message of a slot (every one, for a kind that keeps them all);
        True if an older one was replaced."""
        stream, kind = slot
        rule = DELIVERY.get(kind)
        if rule is not None and rule.keeps:
            if client.closing:
                return False
            client.serial += 1
            client.pending[(stream, kind, client.serial)] = (data, binary, None)
            client.kept += len(data)
            if client.kept > self._keep_bytes:
                self.close(client)  # too slow for what must not be thinned
            return False
        key = (stream, kind, 0)
        replaced = client.pending.pop(key, None) is not None
        client.pending[key] = (data, binary, captured)  # re-inserted last: arrival order kept
        return replaced

    def close(self, client: Client) -> None:
        """Close ``client`` with 4008: what it holds is dropped, and it is no longer awaited."""
        client.closing = True
        self.clear(client)
        self.stop(client)
        self._observer.slow_closed()
        self._actions.append(Close(key=client.key))

    def restore(self, client: Client, held: list[tuple[Pending, Held]]) -> None:
        """Put back messages taken for a flush that found the client full again (after what it held)."""
        for key, message in held:
            client.pending[key] = message
            if key[2]:
                client.kept += len(message[0])
        if client.kept > self._keep_bytes:
            self.close(client)

    @staticmethod
    def clear(client: Client, stream: str | None = None) -> None:
        """Drop what ``client`` holds (for ``stream``, or for every stream)."""
        if stream is None:
            client.pending.clear()
            client.kept = 0
            return
        for key in [k for k in client.pending if k[0] == stream]:
            data = client.pending.pop(key)[0]
            if key[2]:
                client.kept -= len(data)

    def start(self, client: Client, since: float | None = None) -> None:
        """``client`` starts lagging (now, or at ``since``): the driver is asked to await it."""
        client.lag(self._monotonic() if since is None else since)
        self.clients[client] = None
        self._actions.append(Wait(key=client.key))

    def stop(self, client: Client) -> None:
        """``client`` no longer lags (caught up, closing or gone)."""
        client.lag(None)
        self.clients.pop(client, None)

    def review(self) -> list[tuple[Client, bool]]:
        """Look at every lagging client: which caught up (True: flush it) and which lagged too long.

        A closed client is dropped (its handler will discard it). A client at or below
        ``low_water`` with no overdue probe has caught up. The others drop what went stale
        meanwhile, and one lagging (or with a probe unanswered) longer than ``max_lag`` gets
        the verdict False: close it. Buffer levels and probe ages decide, not which wait ended.
        """
        now = self._monotonic()
        verdicts: list[tuple[Client, bool]] = []
        for client in list(self.clients):
            if client.sink.closed():
                self.stop(client)
                self.clear(client)
                continue
            probed = client.probe_sent
            overdue = probed is not None and now - probed > self._threshold
            if not overdue and client.buffered() <= self._low_water:
                verdicts.append((client, True))
                continue
            self.expire(client)
            since = client.lagging_since
            if since is not None and probed is not None:
                since = min(since, probed)
            if since is not None and now - since > self._max_lag:
                verdicts.append((client, False))
        return verdicts

    def stale(self, captured: float | None, now: float) -> bool:
        """Whether a held message captured at ``captured`` is too old to send at ``now``."""
        return bool(self._max_age) and captured is not None and now - captured > self._max_age

    def expire(self, client: Client) -> None:
        """Drop pending messages that went stale while the client lagged."""
        if not self._max_age:
            return
        now = self._clock()
        for slot, (_, _, captured) in list(client.pending.items()):
            if self.stale(captured, now):
                del client.pending[slot]
                self._observer.dropped("stale", 1)
