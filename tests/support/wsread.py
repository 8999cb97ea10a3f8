"""Reading a gateway's messages with a blocking (``websockets.sync``) client, bounded."""

from __future__ import annotations

import time
from collections.abc import Callable

from websockets.sync.client import ClientConnection

from framecast import wire

Message = wire.TextMessage | bytes


def recv(ws: ClientConnection, *, timeout: float) -> Message:
    """One message: decoded when text, the bytes when binary."""
    data = ws.recv(timeout=timeout)
    return data if isinstance(data, bytes) else wire.decode(data)


def collect(
    ws: ClientConnection,
    done: Callable[[list[Message]], bool],
    *,
    what: str,
    got: list[Message] | None = None,
    timeout: float = 20.0,
    limit: int = 10_000,
) -> list[Message]:
    """Receive into ``got`` until ``done(got)``: bounded in time and count."""
    got = [] if got is None else got
    deadline = time.monotonic() + timeout
    for _ in range(limit):
        if done(got):
            return got
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            got.append(recv(ws, timeout=remaining))
        except TimeoutError:
            break
    raise AssertionError(f"no {what} within {timeout:.0f} s and {limit} messages; last: {got[-5:]}")
