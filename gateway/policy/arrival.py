"""A message's arrival, sans I/O: routed to its audience once, or dropped on arrival.

Every text message of a stream (a result, status or event from Redis, or a notice the gateway
makes) and every binary preview arrives here once, and leaves as one fan-out job for its
audience (:mod:`gateway.policy.slicing`), a copy in each joining client's buffer
(:mod:`gateway.policy.joins`) and, for a result, the newest held for the rate-capped clients
(:mod:`gateway.policy.caps`). What is decided here, once per message rather than per client:

* **Routing.** ``wire.peek`` reads a message's kind and capture time without a full decode; a
  malformed one is dropped for everyone.
* **Staleness on arrival.** A message older than ``max_age`` when it arrives (the gateway was
  late: a Redis link that thawed, a stalled loop) is dropped for every live client, unless its
  kind keeps every message (events). The live clients of the stream are told ``gap`` ``stale``
  once per run of such results, before the fresh ones, so a resuming client asks for the hole.
  Joining clients hold the result in their buffer and are told at go-live, by the same clock:
  one notice each, not two.

Video arrives at :mod:`gateway.policy.video`, which has rules of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from framecast import wire
from gateway.policy.caps import Caps
from gateway.policy.joins import Joins
from gateway.policy.limits import Limits
from gateway.policy.membership import Membership
from gateway.policy.observer import Observer
from gateway.policy.slicing import Slicer
from gateway.policy.state import DELIVERY, FILTERED, NOTICE, PREVIEW, RESULT, Client, Job

__all__ = ["Arrival"]

log = logging.getLogger("gateway.policy")


class Arrival:
    """Routes each arriving message (see the module docstring).

    Args:
        limits: ``max_age``, the age on arrival past which a message is dropped.
        members: Each stream's audiences and joining clients.
        joins: Where joining clients' copies go.
        caps: The rate-capped clients' held results.
        slicer: Where a message's fan-out goes.
        observer: Told of messages in and dropped.
        clock: Wall clock in Unix seconds (``captured_at`` is Unix time).
    """

    def __init__(
        self,
        limits: Limits,
        *,
        members: Membership,
        joins: Joins,
        caps: Caps,
        slicer: Slicer,
        observer: Observer,
        clock: Callable[[], float],
    ) -> None:
        self._max_age = limits.max_age
        self._members = members
        self._joins = joins
        self._caps = caps
        self._slicer = slicer
        self._observer = observer
        self._clock = clock
        # Streams whose live clients were told of a run of stale results (until a fresh one).
        self._stale_told: set[str] = set()

    def deliver(self, stream: str, data: bytes) -> wire.Peek | None:
        """A stream message (result, status or event, encoded); see :meth:`gateway.policy.Policy.deliver`."""
        try:
            peeked = wire.peek(data)
        except wire.WireError as exc:
            self._observer.dropped("malformed", 1)
            log.debug("dropped a malformed message on %s: %s", stream, exc)
            return None
        kind = peeked.type
        self._observer.received(kind)
        members = self._members
        joiners = members.joining.get(stream)
        if joiners:
            self._joins.buffer(joiners, stream, peeked, data)
        clients = members.audience(stream, kind)
        rule = DELIVERY.get(kind)
        age = self._clock() - peeked.captured_at
        max_age = self._max_age
        if max_age and age > max_age and (rule is None or not rule.keeps):
            capped = self._caps.members(stream) if kind == RESULT else None
            if capped:
                clients = {**clients, **capped} if clients else capped
            if clients:
                self._observer.dropped("stale", len(clients))
                self._tell_stale(stream, kind, clients)
            return peeked
        if kind == RESULT:
            self._stale_told.discard(stream)
            self._caps.offer(stream, data, peeked.captured_at, age)
        if not clients:
            return peeked
        if rule is not None and rule.expires:
            self._slicer.fan(clients, Job((stream, kind), data, False, peeked.captured_at, age))
        else:
            self._slicer.fan(clients, Job((stream, kind), data, False, None, None))
        return peeked

    def _tell_stale(self, stream: str, kind: str, clients: dict[Client, None]) -> None:
        """A result arrived stale and was dropped for ``clients``: ``gap`` ``stale``, once per run."""
        if kind != RESULT or stream in self._stale_told:
            return
        self._stale_told.add(stream)
        self._observer.received(NOTICE)
        data = wire.encode(wire.Gap(stream=stream, reason="stale"))
        self._slicer.fan(clients, Job((stream, NOTICE), data, False, None, None))

    def deliver_preview(self, stream: str, data: bytes) -> bool:
        """An encoded binary preview, for the clients that asked. False if malformed."""
        clients = self._members.previews.get(stream)
        if not clients:
            return True
        try:
            captured = wire.decode_preview(data).captured_at
        except wire.WireError:
            self._observer.dropped("malformed", 1)
            return False
        self._observer.received(PREVIEW)
        max_age = self._max_age
        if max_age and self._clock() - captured > max_age:
            self._observer.dropped("stale", len(clients))
            return True
        self._slicer.fan(clients, Job((stream, PREVIEW), data, True, captured, None))
        return True

    def announce(self, stream: str, data: bytes, kind: str) -> None:
        """A gateway-made text message (gap, offline status): never stale; joiners get it after replay."""
        self._observer.received(kind)
        joiners = self._members.joining.get(stream)
        if joiners:
            self._joins.buffer(joiners, stream, None, data)
        clients = self._members.audience(stream, kind) if kind in FILTERED else self._members.live.get(stream)
        if clients:
            self._slicer.fan(clients, Job((stream, kind), data, False, None, None))
