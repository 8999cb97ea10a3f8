"""The Python client: subscribe to streams on a gateway, survive reconnects, miss nothing.

::

    from framecast import client, wire

    async with client.subscribe("http://127.0.0.1:8080", ["cam1"]) as messages:
        async for msg in messages:
            if isinstance(msg, wire.Result):
                print(msg.seq, [d.label for d in msg.detections])

:func:`subscribe` and :class:`Subscription` are in :mod:`framecast.client.subscription`;
``framecast watch`` (:mod:`framecast.client.watch`) prints what they receive. This package
needs only ``websockets`` (no OpenCV, no numpy).
"""

from framecast.client.subscription import (
    POSITION_AHEAD,
    AuthError,
    ClientError,
    ConnectError,
    Cursor,
    Message,
    Position,
    Subscription,
    backoff,
    subscribe,
    websocket_url,
)

__all__ = [
    "POSITION_AHEAD",
    "AuthError",
    "ClientError",
    "ConnectError",
    "Cursor",
    "Message",
    "Position",
    "Subscription",
    "backoff",
    "subscribe",
    "websocket_url",
]
