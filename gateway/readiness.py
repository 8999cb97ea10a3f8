"""How long the gateway has been unready, and when its clients should move elsewhere.

While unready the gateway refuses new WebSocket handshakes (503 + ``Retry-After``, which
nginx retries on the next gateway) and keeps its clients: a short Redis blip ends with a
``gap`` notice. Past ``close_after`` seconds of one unready spell, :meth:`UnreadySpell.due`
says so once, and the gateway closes its clients with 1013 so they reconnect through the
balancer to a ready gateway and resume with ``since``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Readiness", "UnreadySpell"]


class Readiness:
    """Whether the gateway takes clients now, and why not: draining, or its Redis subscription.

    Args:
        subscription: Returns None while the Redis subscription is up and fresh, else why not.
    """

    def __init__(self, *, subscription: Callable[[], str | None]) -> None:
        self._subscription = subscription
        self.draining = False
        """Set once by :meth:`drain`: the gateway is shutting down."""

    def drain(self) -> None:
        """The gateway is shutting down: not ready from now on."""
        self.draining = True

    def reason(self) -> str | None:
        """None while ready to take clients; else why not."""
        if self.draining:
            return "draining: shutting down"
        return self._subscription()


class UnreadySpell:
    """Track one unready spell at a time.

    Args:
        close_after: Seconds unready before clients are moved.
        clock: Monotonic clock.
    """

    def __init__(self, *, close_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.close_after = close_after
        self._clock = clock
        self._since: float | None = None

    @property
    def unready_for(self) -> float:
        """Seconds of the current spell (0 while ready)."""
        return 0.0 if self._since is None else self._clock() - self._since

    def due(self, reason: str | None) -> bool:
        """Feed the current not-ready reason (None: ready); True while clients should be moved.

        True from the moment the spell passed ``close_after`` until the gateway is ready again,
        so a client that slipped in during the spell is moved too.
        """
        if reason is None:
            self._since = None
            return False
        if self._since is None:
            self._since = self._clock()
        return self.unready_for > self.close_after
