"""Join buffers: a joining client's live messages, kept while its replay is sent.

A client joins a stream first and is sent its replay (history) by its session; the live
messages of that stream are buffered for it meanwhile (at most ``join_limit`` messages and
``join_bytes`` bytes, oldest dropped first and a gap announced) and released, minus what the
replay already covered and what went stale, when it goes live: replay and live meet with no
gap and no duplicate.
"""

from __future__ import annotations

from collections.abc import Callable

from framecast import wire
from gateway.policy.limits import Limits
from gateway.policy.observer import Observer
from gateway.policy.state import DELIVERY, NOTICE, RESULT, Client, Join

__all__ = ["Joins"]

Release = list[tuple[str, bytes, float | None]]
"""Messages to send a client that goes live, in order: ``(kind, data, captured_at or None)``."""


class Joins:
    """Buffers live messages for joining clients and releases them at go-live.

    Args:
        limits: ``join_limit``, ``join_bytes``, ``max_age``.
        observer: Told of overflows and stale drops.
        clock: Wall clock (capture times are Unix time).
    """

    def __init__(self, limits: Limits, *, observer: Observer, clock: Callable[[], float]) -> None:
        self._limit = limits.join_limit
        self._bytes = limits.join_bytes
        self._max_age = limits.max_age
        self._observer = observer
        self._clock = clock

    def buffer(self, joiners: dict[Client, None], stream: str, peeked: wire.Peek | None, data: bytes) -> None:
        """A live message (``peeked`` None: a gateway-made notice) for the joining clients of ``stream``."""
        size = len(data)
        for client in joiners:
            join = client.joining.get(stream)
            if join is None:
                continue
            join.items.append((peeked, data))
            join.bytes += size
            # Oldest first out, but never the message that just came: the newest is worth most.
            while len(join.items) > 1 and (
                len(join.items) > self._limit or (self._bytes and join.bytes > self._bytes)
            ):
                join.bytes -= len(join.items.popleft()[1])
                join.overflowed = True

    def release(self, join: Join, stream: str, *, epoch: str | None, seq: int) -> Release:
        """What a client whose replay ended at ``(epoch, seq)`` is sent from its buffer, in order.

        Buffered results of ``epoch`` with ``seq`` at or below ``seq`` (sent by the replay) are
        skipped, stale ones dropped; an overflow is announced first, and stale results the
        client was owed once, where the first of them was.
        """
        out: Release = []
        if join.overflowed:
            # Older entries were dropped to stay within the bound: say so rather than pretend.
            self._observer.dropped("join-overflow", 1)
            out.append((NOTICE, wire.encode(wire.Gap(stream=stream, reason="overflow")), None))
        now = self._clock()
        stale_told = False
        for peeked, data in join.items:
            if peeked is None:
                out.append((NOTICE, data, None))
                continue
            if peeked.type == RESULT and peeked.epoch == epoch and peeked.seq <= seq:
                continue
            if self._max_age and now - peeked.captured_at > self._max_age:
                self._observer.dropped("stale", 1)
                if peeked.type == RESULT and not stale_told:
                    # A result this client was owed is skipped: one notice, so it can resume.
                    stale_told = True
                    out.append((NOTICE, wire.encode(wire.Gap(stream=stream, reason="stale")), None))
                continue
            rule = DELIVERY.get(peeked.type)
            captured = peeked.captured_at if rule is not None and rule.expires else None
            out.append((peeked.type, data, captured))
        return out
