"""The broker's interface: what the producer and the gateway ask of Redis, as typed values.

Writes are a sequence of operations (:class:`Append`, :class:`Publish`, :class:`Put`,
:class:`Delete`, :class:`Count`) sent in one round trip, atomically when asked: a result is
appended to its history and published in one transaction, a heartbeat published and stored in
one pipeline. A subscription hands on :class:`Delivery` and :class:`Confirmation` events, never
redis-py's message dicts. Every failure is a :class:`~framecast.exceptions.BrokerError`.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "Append",
    "Broker",
    "Confirmation",
    "Count",
    "Delete",
    "Delivery",
    "Entry",
    "Event",
    "Op",
    "Publish",
    "Put",
    "Subscription",
]


# --------------------------------------------------------------------------
# Operations


@dataclass(frozen=True, slots=True)
class Append:
    """Append ``data`` to the history ``key`` as entry ``id`` (``<ms>-<seq>``), trimmed to about
    ``maxlen`` entries (XADD with ``MAXLEN ~``; the one field is ``wire.HISTORY_FIELD``)."""

    key: str
    id: str
    data: bytes
    maxlen: int


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``data`` on ``channel`` (PUBLISH, or SPUBLISH on a sharded broker)."""

    channel: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Put:
    """Store ``data`` at ``key`` for ``ttl_ms`` milliseconds (SET ... PX)."""

    key: str
    data: bytes
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``key``."""

    key: str


@dataclass(frozen=True, slots=True)
class Count:
    """Count the subscribers of ``channel`` (PUBSUB NUMSUB, or SHARDNUMSUB of the shard owning it).

    Answered with the write it is part of, never inside its transaction.
    """

    channel: str


Op = Append | Publish | Put | Delete | Count
"""One operation of :meth:`Broker.write`."""


# --------------------------------------------------------------------------
# What comes back


@dataclass(frozen=True, slots=True)
class Entry:
    """One history entry: its id ``<ms>-<seq>`` and its data (None: the entry has no data field)."""

    id: str
    data: bytes | None

    @property
    def ms(self) -> int:
        """The millisecond part of the id (the producer's epoch start)."""
        return int(self.id.split("-", 1)[0])

    @property
    def seq(self) -> int:
        """The sequence part of the id."""
        return int(self.id.split("-", 1)[1])


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message published on a channel this subscription holds."""

    channel: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Confirmation:
    """Redis confirmed a subscribe (``subscribed``) or an unsubscribe of ``channel`` on this link.

    Confirmations come in the order the commands were sent, one per channel.
    """

    channel: str
    subscribed: bool


Event = Delivery | Confirmation
"""What :meth:`Subscription.pump` hands on."""


# --------------------------------------------------------------------------
# The interface


class Subscription(abc.ABC):
    """One live pub/sub link (one connection, or one per primary of a cluster).

    Attributes:
        canaries: The canary channels that prove this link alive: one, or one per primary.
    """

    canaries: tuple[str, ...]

    @abc.abstractmethod
    async def subscribe(self, channels: Sequence[str]) -> None:
        """Ask for ``channels``; each is confirmed by a :class:`Confirmation` through :meth:`pump`."""

    @abc.abstractmethod
    async def unsubscribe(self, channels: Sequence[str]) -> None:
        """Give ``channels`` up; each is confirmed (``subscribed=False``) through :meth:`pump`."""

    @abc.abstractmethod
    async def pump(
        self,
        handle: Callable[[Event], None],
        *,
        before: Callable[[], Awaitable[None]],
        after: Callable[[], None],
        poll_interval: float,
        running: Callable[[], bool],
    ) -> None:
        """Hand every event to ``handle`` while ``running()``, yielding to the loop after each one.

        ``before`` runs before each wait (to send subscription changes), ``after`` after it (a
        watchdog, which may raise to tear the link down). Returns when ``running()`` turns false.

        Raises:
            BrokerError: The link failed (the subscription is then of no further use).
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the link's connections."""


class Broker(abc.ABC):
    """Redis, as the producer and the gateway use it: one instance per process, long-lived.

    Every method raises :class:`~framecast.exceptions.BrokerError` when Redis cannot be reached
    or refuses the command. A connection found dead is retried once at once on a fresh one
    (after a Redis restart every pooled connection is dead); anything more is the caller's
    retry policy.

    Attributes:
        sharded: Pub/sub is sharded (SPUBLISH, SSUBSCRIBE, SHARDNUMSUB).
    """

    sharded: bool

    @abc.abstractmethod
    async def write(self, ops: Sequence[Op], *, atomic: bool = False) -> list[int]:
        """Send ``ops`` in one round trip, in order; in one transaction (MULTI/EXEC) if ``atomic``.

        All keys and channels of an atomic write must share a hash slot (one stream's names do).

        Returns:
            The subscriber count of each :class:`Count` among ``ops``, in order.
        """

    @abc.abstractmethod
    async def publish(self, channel: str, data: bytes | str) -> None:
        """Publish one message on ``channel``, outside any transaction."""

    @abc.abstractmethod
    async def subscribers(self, channel: str) -> int:
        """How many subscribe to ``channel``."""

    @abc.abstractmethod
    async def latest(self, key: str) -> Entry | None:
        """The newest entry of the history ``key``, or None when it is empty."""

    @abc.abstractmethod
    async def entries_after(self, key: str, after: str, *, count: int) -> list[Entry]:
        """Up to ``count`` entries of ``key`` with ids above ``after``, oldest first."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value at ``key``, or None."""

    @abc.abstractmethod
    async def scan_values(self, pattern: str, *, keep: Callable[[str], bool], limit: int) -> list[bytes]:
        """Values of up to ``limit`` keys matching ``pattern`` that ``keep`` accepts (every primary)."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return once Redis answers."""

    @abc.abstractmethod
    async def open_subscription(self, *, gateway_id: str, health_check_interval: float) -> Subscription:
        """Open a fresh pub/sub link, with its canary channels named after ``gateway_id``.

        Args:
            gateway_id: Names the canary channels (``wire.canary_channel``).
            health_check_interval: Seconds between PINGs on an idle connection.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the command connections (subscriptions are closed by their owner)."""
