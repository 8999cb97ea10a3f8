"""The one module that touches websockets internals: framing, the raw write, buffer level, state.

:class:`gateway.policy.Policy` decides; this module carries its decisions out on
a :class:`websockets.asyncio.connection.Connection`. Everything here that is not
public websockets API is listed, so that a websockets upgrade has one place to
check (``scripts/test-websockets.sh VERSION`` runs the fan-out tests against one):

* ``connection.transport`` (the asyncio transport: ``write``,
  ``get_write_buffer_size``, ``set_write_buffer_limits``, ``abort``) and
  ``connection.protocol`` (``state``, ``extensions``, ``send_text``/``send_binary``)
  plus ``connection.send_data()``: what :func:`websockets.asyncio.server.broadcast`
  itself uses;
* ``connection.send_in_progress``: a fragmented message of the connection's own
  is going out, so another frame must not be interleaved (websockets 14 and 15
  called it ``fragmented_send_waiter``; the floor is 17, see ``pyproject.toml``);
* ``connection.paused`` and ``connection.drain_waiters``: the flow-control state
  behind ``drain()``, which lets many clients be awaited with one
  ``asyncio.wait`` instead of one ``drain()`` task each.

A server frame carries no mask, so for connections with no extension negotiated
the bytes of a message's frame are identical for every client: it is framed
once (:func:`frame`) and the same bytes are written to each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from websockets.asyncio.connection import Connection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from framecast import wire

__all__ = ["Connection", "WsSink", "frame"]

log = logging.getLogger(__name__)

_OPEN = State.OPEN


def frame(data: bytes, binary: bool) -> bytes:
    """One unmasked, unfragmented server frame holding ``data`` (a :data:`gateway.policy.Framer`)."""
    return Frame(Opcode.BINARY if binary else Opcode.TEXT, data).serialize(mask=False)


class WsSink:
    """A websockets connection as a :class:`gateway.policy.Sink`.

    ``buffered`` and ``write_frame`` are the transport's own bound methods, so the
    policy's hot loop calls them with no layer in between.

    Args:
        connection: An open websockets asyncio connection.
        high: Write-buffer high-water mark to set on its transport (bytes).
        low: Low-water mark: the transport resumes, and waiters wake, at or below it.
    """

    __slots__ = ("buffered", "connection", "protocol", "shared", "transport", "write_frame")

    def __init__(self, connection: Connection, *, high: int, low: int) -> None:
        self.connection = connection
        self.protocol = connection.protocol
        transport = self.transport = connection.transport
        # permessage-deflate compresses with per-connection state: no shared frame possible.
        self.shared = not connection.protocol.extensions
        self.buffered = transport.get_write_buffer_size
        self.write_frame = transport.write
        with contextlib.suppress(AttributeError, RuntimeError):
            transport.set_write_buffer_limits(high=high, low=low)

    def writable(self) -> bool:
        """Open, and not in the middle of a fragmented message of its own."""
        return self.protocol.state is _OPEN and self.connection.send_in_progress is None

    def closed(self) -> bool:
        """Closing or closed."""
        return self.protocol.state is not _OPEN

    def write_message(self, data: bytes, binary: bool) -> int:
        """Frame ``data`` with this connection's extensions (deflate) and write it."""
        if binary:
            self.protocol.send_binary(data)
        else:
            self.protocol.send_text(data)
        self.connection.send_data()
        return len(data)

    def drain_waiter(self) -> asyncio.Future[None] | None:
        """A future done when the transport resumes writing (buffer at low water), or None if not paused.

        The same future ``drain()`` would await, minus the coroutine and the task around it.
        """
        connection = self.connection
        if not connection.paused:
            return None
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        connection.drain_waiters.append(waiter)
        return waiter

    def forget_waiter(self, waiter: asyncio.Future[None]) -> None:
        """Undo :meth:`drain_waiter` once the wait is over."""
        with contextlib.suppress(ValueError):
            self.connection.drain_waiters.remove(waiter)
        if waiter.done() and not waiter.cancelled():
            waiter.exception()  # connection_lost sets one: retrieved, so asyncio does not warn
        else:
            waiter.cancel()

    async def close_slow(self, *, timeout: float) -> None:
        """Close with 4008; abort the TCP connection if the close frame cannot get through in time."""
        log.info("closing slow consumer %s", self.connection.remote_address)
        try:
            async with asyncio.timeout(timeout):
                await self.connection.close(wire.CLOSE_SLOW_CONSUMER, "slow consumer")
        except (ConnectionError, OSError) as exc:
            log.debug("closing a slow consumer failed: %s", exc)
            self.transport.abort()
        except TimeoutError:
            # Its buffer is full, so the close frame is stuck behind it: cut the connection.
            self.transport.abort()
