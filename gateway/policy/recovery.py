"""A lagging client's way out, sans I/O: flushed once it caught up, or closed.

:mod:`gateway.policy.lag` books who lags and what each holds; this module acts on its
verdicts, through the write rule (:mod:`gateway.policy.writer`):

* **Caught up** (its buffer down to ``low_water`` with no overdue lag probe, found by a tick or
  by a probe's answer): its pending messages are written, the newest per slot and every held
  event, in arrival order, minus those that went stale meanwhile. If its buffer fills again on
  the way, it lags again with the rest. With lag probes on, a probe follows the flushed
  messages, so a client that stalls again is found as soon as one that never lagged.
* **Too slow** (lagging, or a probe unanswered, longer than ``max_lag``): a
  :class:`~gateway.policy.state.Close` (4008).
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.policy.caps import Caps
from gateway.policy.lag import Lag
from gateway.policy.limits import Limits
from gateway.policy.observer import Observer
from gateway.policy.probes import Probes
from gateway.policy.state import RESULT, Client
from gateway.policy.writer import Writer

__all__ = ["Recovery"]


class Recovery:
    """Flushes caught-up clients and closes the too slow (see the module docstring).

    Args:
        limits: ``low_water``, the unsent bytes at or below which a lagging client caught up.
        lag: Who lags, what each holds, and the verdicts.
        probes: Lag probes (an answered one may end a lag; a flushed client owes a fresh one).
        writer: The write rule the flush goes through.
        caps: A capped client's interval counts from a flushed result.
        observer: Told of pending messages dropped as stale.
        clock: Wall clock in Unix seconds (``captured_at`` is Unix time).
    """

    def __init__(
        self,
        limits: Limits,
        *,
        lag: Lag,
        probes: Probes,
        writer: Writer,
        caps: Caps,
        observer: Observer,
        clock: Callable[[], float],
    ) -> None:
        self._low_water = limits.low_water
        self._lag = lag
        self._probes = probes
        self._writer = writer
        self._caps = caps
        self._observer = observer
        self._clock = clock

    def tick(self) -> None:
        """Review every lagging client: flush the caught up, close the too slow."""
        for client, caught_up in self._lag.review():
            if caught_up:
                self._flush(client)
            else:
                self._close(client)

    def pong(self, client: Client) -> None:
        """``client`` answered its lag probe; flush it if it lagged and its buffer is at ``low_water``."""
        if not self._probes.answered(client):
            return
        if client.lagging_since is None or client.closing or client.sink.closed():
            return
        if client.buffered() <= self._low_water:
            self._flush(client)

    def _flush(self, client: Client) -> None:
        client.due(False)  # not in the middle of the flush: behind all of it
        self._lag.stop(client)
        now = self._clock()
        held = list(client.pending.items())
        self._lag.clear(client)
        for index, ((stream, kind, _), (data, binary, captured)) in enumerate(held):
            if self._lag.stale(captured, now):
                self._observer.dropped("stale", 1)
                continue
            if client.sink.closed() or client.closing:
                return
            self._writer.send(client, (stream, kind), data, binary=binary, captured=captured)
            if client.lagging_since is None and kind == RESULT and stream in client.caps:
                self._caps.written(client, stream)  # a capped client's interval counts from here
            if client.lagging_since is not None:
                # Full again: the rule held this one and the client lags; the rest wait behind it.
                self._lag.restore(client, held[index + 1 :])
                return
        if self._probes.threshold and client.probe_sent is None:
            client.due(True)

    def _close(self, client: Client) -> None:
        self._probes.forget(client)
        self._lag.close(client)
