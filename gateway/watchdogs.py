"""The gateway's two watchdogs: silent producers, and a gateway unready for too long.

* :class:`HeartbeatWatch`: a stream whose producer has not been heard from for
  ``--offline-after`` seconds is announced offline to its clients, once (a gateway-made
  ``status``), while the Redis link is up (silence while it is down says nothing about the
  producer);
* :class:`ReadinessWatch`: a gateway unready (Redis unreachable or its subscription deaf)
  for ``--unready-close-after`` seconds closes its clients with 1013, so they reconnect
  through the balancer to a ready gateway and resume.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.fanout import Fanout
from gateway.heartbeats import Heartbeats
from gateway.readiness import Readiness, UnreadySpell

__all__ = ["HeartbeatWatch", "ReadinessWatch"]

log = logging.getLogger("gateway")


class HeartbeatWatch:
    """Tells a stream's clients once when its producer went silent.

    Args:
        heartbeats: When each watched stream was last heard from.
        fanout: Where the offline status goes.
        connected: Whether the Redis subscription is up.
    """

    def __init__(self, *, heartbeats: Heartbeats, fanout: Fanout, connected: Callable[[], bool]) -> None:
        self._heartbeats = heartbeats
        self._fanout = fanout
        self._connected = connected

    async def run(self) -> None:
        """Look every ``offline_after / 4`` seconds (at most 0.5 s) until cancelled."""
        heartbeats = self._heartbeats
        interval = min(0.5, heartbeats.offline_after / 4)
        while True:
            await asyncio.sleep(interval)
            # Silence while Redis is down says nothing about the producer: wait for the link.
            if not self._connected():
                continue
            for stream, epoch, seq in heartbeats.due():
                if self._fanout.clients(stream):
                    log.info(
                        "stream %s: no heartbeat for %.1f s, telling clients it is offline",
                        stream,
                        heartbeats.offline_after,
                    )
                    status = heartbeats.offline_status(stream, epoch=epoch, seq=seq)
                    self._fanout.announce(stream, status, kind="status")


class ReadinessWatch:
    """Moves the clients of a gateway unready for too long to a ready one.

    Args:
        readiness: Whether the gateway is ready, and why not.
        close_after: Seconds of one unready spell before clients are moved.
        move: Closes every open client with 1013 and returns how many it closed.
        interval: Seconds between two looks.
    """

    def __init__(
        self, *, readiness: Readiness, close_after: float, move: Callable[[], int], interval: float = 0.25
    ) -> None:
        self._readiness = readiness
        self._spell = UnreadySpell(close_after=close_after)
        self._move = move
        self._interval = interval

    async def run(self) -> None:
        """Look every ``interval`` seconds until the gateway drains."""
        readiness, spell = self._readiness, self._spell
        while not readiness.draining:
            await asyncio.sleep(self._interval)
            reason = readiness.reason()
            if not spell.due(reason) or readiness.draining:
                continue
            # The spell stays due until ready again (a client that slipped in is moved too): the
            # move picks only connections not yet closing, so each is closed and counted once.
            moved = self._move()
            if moved:
                log.warning(
                    "unready for %.1f s (%s): closing %d client(s) with 1013 so they move to a ready gateway",
                    spell.unready_for,
                    reason,
                    moved,
                )
