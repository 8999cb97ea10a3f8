"""Lagging clients: conflation to the newest message per slot, expiry, and the ``max_lag`` verdict.

A client with more than ``client_buffer`` bytes unsent (or, see :mod:`gateway.policy.probes`,
with a lag probe unanswered past ``lag_threshold``) is lagging: it keeps only the newest
message per stream and kind, in arrival order, until a review finds it caught up (its
buffer at ``low_water`` and no probe overdue); what goes stale meanwhile is dropped, and one
lagging longer than ``max_lag`` is closed.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.policy.limits import Limits
from gateway.policy.observer import Observer
from gateway.policy.state import Action, Client, Wait

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
        self._low_water = limits.low_water
        self._threshold = threshold
        self._observer = observer
        self._clock = clock
        self._monotonic = monotonic
        self._actions = actions
        self.clients: dict[Client, None] = {}

    @staticmethod
    def hold(
        client: Client, slot: tuple[str, str], data: bytes, binary: bool, captured: float | None
    ) -> bool:
        """Keep only the newest message of a slot; True if an older one was replaced."""
        replaced = client.pending.pop(slot, None) is not None
        client.pending[slot] = (data, binary, captured)  # re-inserted last: arrival order kept
        return replaced

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
                client.pending.clear()
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
