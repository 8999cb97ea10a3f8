"""The broker: one interface to Redis for the producer and the gateway alike.

As encode/broadcaster's backends and centrifuge's ``Broker``, one small interface
(:class:`Broker`, :class:`Subscription`) with a backend per kind of Redis behind it: a single
server (:class:`StandaloneBroker`, classic or sharded pub/sub) or a Redis Cluster
(:class:`ClusterBroker`, sharded pub/sub on every primary). Which one it is, is known here and
nowhere else. ::

    broker = open_broker("redis://127.0.0.1:6379/0", timeout=2.0)
    await broker.write(
        [Append(history, entry_id, data, maxlen=1000), Publish(channel, data)], atomic=True
    )

Writes are typed operations, a subscription yields typed :class:`Delivery` and
:class:`Confirmation` events, and every failure is a :class:`BrokerError`
(``refused``: Redis answered with an error reply; otherwise the link failed). A connection
found dead is retried once, at once, on a fresh one; every other retry is the caller's.
"""

from __future__ import annotations

from framecast.broker.base import (
    Append,
    Broker,
    Confirmation,
    Count,
    Delete,
    Delivery,
    Entry,
    Event,
    Op,
    Publish,
    Put,
    Subscription,
)
from framecast.broker.cluster import ClusterBroker
from framecast.broker.standalone import StandaloneBroker
from framecast.exceptions import BrokerError

__all__ = [
    "Append",
    "Broker",
    "BrokerError",
    "ClusterBroker",
    "Confirmation",
    "Count",
    "Delete",
    "Delivery",
    "Entry",
    "Event",
    "Op",
    "Publish",
    "Put",
    "StandaloneBroker",
    "Subscription",
    "open_broker",
]


def open_broker(url: str, *, timeout: float, cluster: bool = False, sharded: bool = False) -> Broker:
    """The :class:`Broker` for ``url``.

    Args:
        url: Redis URL (of any node, for a cluster).
        timeout: Connect and read timeout of every command, seconds.
        cluster: ``url`` is a Redis Cluster node (pub/sub is then sharded).
        sharded: Sharded pub/sub on a single server.
    """
    if cluster:
        return ClusterBroker(url, timeout=timeout)
    return StandaloneBroker(url, timeout=timeout, sharded=sharded)
