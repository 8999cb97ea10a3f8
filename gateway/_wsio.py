"""The one module that touches websockets internals: framing, the raw write, buffer level, state.

:class:`gateway.policy.Policy` decides; this module carries its decisions out on
a :class:`websockets.asyncio.connection.Connection`. Everything here that is not
public websockets API is listed, so that a websockets upgrade has one place to
check (``scripts/test-websockets.sh VERSION`` runs the fan-out tests against one):

* ``connection.transport`` (the asyncio transport: ``write``,
  ``get_write_buffer_size``, ``set_write_buffer_limits``, ``abort``) and
  ``connection.protocol`` (``state``, read as ``_state`` in the hot path,
  ``extensions``, ``send_text``/``send_binary``)
  plus ``connection.send_data()``: what :func:`websockets.asyncio.server.broadcast`
  itself uses;
* ``connection.send_in_progress``: a fragmented message of the connection's own
  is going out, so another frame must not be interleaved (websockets 14 and 15
  called it ``fragmented_send_waiter``; the floor is 17, see ``pyproject.toml``);
* ``connection.paused`` and ``connection.drain_waiters``: the flow-control state
  behind ``drain()``, which lets many clients be awaited with one
  ``asyncio.wait`` instead of one ``drain()`` task each;
* ``connection.pending_pings`` (websockets' table of pings awaiting a pong,
  ``{payload: (future, loop time)}``, what :meth:`Connection.ping` fills): a lag
  probe is a ping frame written by the fan-out right behind the data, without
  ``ping()``'s wait for the buffer to drain, and registered here so that
  websockets' own pong handling resolves it (:meth:`WsSink.expect_pong`);
* the handshake parser of :class:`~websockets.server.ServerProtocol`: ``protocol.parser``
  (the generator bytes are fed to), ``protocol.reader``, ``protocol.events``,
  ``protocol.handshake_exc``, ``protocol.discard()`` and ``Protocol.parse``:
  :class:`AnsweringConnection` swaps in a first parsing step that answers every malformed
  request (:mod:`gateway.connection` says with what) where websockets closes without one;
* ``transport._sock`` (asyncio's selector transport: the real socket; the public
  ``get_extra_info("socket")`` is a wrapper with no ``send()``): while the
  transport holds no bytes, a shared frame goes out with one non-blocking
  ``socket.send()`` and only what the kernel did not take is handed to
  ``transport.write()``. That is what ``transport.write()`` itself does on an
  empty buffer, minus ~3 us of pure-Python checks per call. Bytes never overtake
  each other: nothing is sent raw while the transport holds bytes. A loop whose
  transport has no ``_sock`` (uvloop), or a TLS transport, gets the transport path.

A server frame carries no mask, so for connections with no extension negotiated
the bytes of a message's frame are identical for every client: it is framed
once (:func:`frame`) and the same bytes are written to each.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http
import logging
import socket
from collections.abc import Callable, Generator, Sized
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.asyncio.server import Server, ServerConnection
from websockets.exceptions import InvalidMessage
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import CONNECTING, Protocol, State
from websockets.server import ServerProtocol

from framecast import wire
from gateway.connection import answer_for, repeated
from gateway.policy import OVER, SKIP, WRITTEN

__all__ = [
    "AnsweringConnection",
    "Connection",
    "WsSink",
    "abort",
    "buffered",
    "close_or_abort",
    "frame",
    "ping_frame",
    "raw_send",
    "set_send_buffer",
    "writers",
]

log = logging.getLogger(__name__)

_OPEN = State.OPEN

# Stands for a transport buffer that always holds bytes: every write goes through the transport.
_THROUGH_TRANSPORT: Sized = (b"",)


def _no_send(frame: bytes) -> int:
    raise AssertionError("no raw path: every write goes through the transport")  # pragma: no cover


def raw_send(transport: asyncio.BaseTransport) -> Callable[[bytes], int] | None:
    """The non-blocking ``send`` of a plain TCP transport's own socket, or None (uvloop, TLS, other).

    Only asyncio's selector socket transport keeps its socket as ``_sock``; a TLS
    transport wraps another one and has none, so raw bytes can never bypass encryption.
    """
    sock = getattr(transport, "_sock", None)
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_STREAM:
        return None
    return sock.send


def frame(data: bytes, binary: bool) -> bytes:
    """One unmasked, unfragmented server frame holding ``data`` (a :data:`gateway.policy.Framer`)."""
    return Frame(Opcode.BINARY if binary else Opcode.TEXT, data).serialize(mask=False)


def ping_frame(payload: bytes) -> bytes:
    """One unmasked server ping frame (a :data:`gateway.policy.PingFramer`)."""
    return Frame(Opcode.PING, payload).serialize(mask=False)


class WsSink:
    """A websockets connection as a :class:`gateway.policy.Sink`.

    The policy's hot loop makes one call per client, :meth:`offer`: the state
    check, the buffer level and the write (raw while the transport is empty) in one.

    Args:
        connection: An open websockets asyncio connection.
        high: Write-buffer high-water mark to set on its transport (bytes).
        low: Low-water mark: the transport resumes, and waiters wake, at or below it.
        raw: Send shared frames with the socket's own ``send()`` while the
            transport's buffer is empty (ignored where :func:`raw_send` finds no socket).
        on_pong: Called (with no argument) when a lag probe registered with
            :meth:`expect_pong` is answered.
    """

    __slots__ = (
        "_answered",
        "buffered",
        "connection",
        "protocol",
        "queue",
        "raw",
        "send",
        "shared",
        "transport",
        "write",
    )

    def __init__(
        self,
        connection: Connection,
        *,
        high: int,
        low: int,
        raw: bool = True,
        on_pong: Callable[[], None] | None = None,
    ) -> None:
        self.connection = connection
        self._answered = _answered(on_pong) if on_pong is not None else None
        self.protocol = connection.protocol
        transport = self.transport = connection.transport
        # permessage-deflate compresses with per-connection state: no shared frame possible.
        self.shared = not connection.protocol.extensions
        self.buffered = transport.get_write_buffer_size
        self.write = transport.write
        send = raw_send(transport) if raw and self.shared else None
        # The selector transport's own buffer (a bytearray, or a deque from Python 3.12), made
        # once for the transport's life: its truth says whether bytes wait, without the
        # get_write_buffer_size() call (a Python method) per write. With no raw path, a
        # non-empty stand-in sends every write through the transport.
        queue = getattr(transport, "_buffer", None)
        self.raw = send is not None and isinstance(queue, bytearray | collections.deque)
        self.queue: Sized = queue if self.raw and queue is not None else _THROUGH_TRANSPORT
        self.send: Callable[[bytes], int] = send if send is not None and self.raw else _no_send
        with contextlib.suppress(AttributeError, RuntimeError):
            transport.set_write_buffer_limits(high=high, low=low)

    def offer(self, frame: bytes, limit: int) -> int:
        """The hot path, one call per client: check, then write a shared frame.

        Returns:
            :data:`SKIP` (not open, or a fragmented message of its own is going
            out: nothing written), :data:`OVER` (more than ``limit`` bytes unsent:
            nothing written, the policy holds the message) or :data:`WRITTEN`.
        """
        # protocol._state: the `state` property's own slot, read without the property call.
        if self.protocol._state is not _OPEN or self.connection.send_in_progress is not None:
            return SKIP
        if self.queue:
            # Bytes wait in the transport (or there is no raw path): behind them, through it.
            if self.buffered() > limit:
                return OVER
            self.write(frame)
            return WRITTEN
        send = self.send  # a slot read, then a call (see Writer.write)
        try:
            sent = send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # A dead connection: the transport's own write reports it and closes the transport.
            self.write(frame)
            return WRITTEN
        if sent < len(frame):
            self.write(frame[sent:])  # the kernel took part: the transport queues the rest
        return WRITTEN

    def write_frame(self, frame: bytes) -> None:
        """Write shared frame bytes, unchecked (flushes, joins): the same order rule as :meth:`offer`."""
        if self.queue:
            self.write(frame)
            return
        send = self.send  # a slot read, then a call (see Writer.write)
        try:
            sent = send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.write(frame)
            return
        if sent < len(frame):
            self.write(frame[sent:])

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

    def expect_pong(self, payload: bytes) -> None:
        """A lag probe (a ping with ``payload``) was written: have websockets report its pong.

        Registered where :meth:`Connection.ping` registers its own pings, so websockets'
        pong handling resolves it (a pong also answers every earlier ping) and a closing
        connection fails it; only a real answer reaches ``on_pong``.
        """
        connection = self.connection
        waiter: asyncio.Future[float] = connection.loop.create_future()
        if self._answered is not None:
            waiter.add_done_callback(self._answered)
        connection.pending_pings[payload] = (waiter, connection.loop.time())

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
        # Its buffer is full, so the close frame may be stuck behind it: then the cut.
        await close_or_abort(self.connection, wire.CLOSE_SLOW_CONSUMER, "slow consumer", timeout)


def _answered(on_pong: Callable[[], None]) -> Callable[[asyncio.Future[float]], None]:
    def done(waiter: asyncio.Future[float]) -> None:
        # A closing connection fails every pending ping: retrieved here, so asyncio does not warn.
        if not waiter.cancelled() and waiter.exception() is None:
            on_pong()

    return done


async def close_or_abort(connection: Connection, code: int, reason: str, timeout: float) -> None:
    """Close with ``code``; abort the transport if the closing handshake fails or takes over ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            await connection.close(code, reason)
    except (ConnectionError, OSError) as exc:
        log.debug("closing %s failed: %s", connection.remote_address, exc)
        abort(connection)
    except TimeoutError:
        abort(connection)


def abort(connection: Connection) -> None:
    """Cut the TCP connection now, without a closing handshake."""
    connection.transport.abort()


def buffered(connection: Connection) -> int:
    """Bytes written to the connection and not yet sent."""
    return int(connection.transport.get_write_buffer_size())


Writers = tuple[Callable[[bytes], int] | None, Callable[[bytes], None], Callable[[], int]]


def writers(connection: Connection) -> Writers:
    """The raw ``send`` (see :func:`raw_send`), ``transport.write`` and buffer level of a connection.

    For the benchmark's cost floors, which write with nothing else around.
    """
    transport = connection.transport
    return raw_send(transport), transport.write, transport.get_write_buffer_size


def set_send_buffer(connection: Connection, size: int) -> None:
    """Set the kernel send buffer (SO_SNDBUF) of the connection's socket, where it has one."""
    sock = connection.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


class AnsweringConnection(ServerConnection):
    """A :class:`~websockets.asyncio.server.ServerConnection` whose protocol answers bad requests.

    Pass it as ``serve(..., create_connection=AnsweringConnection)``.
    """

    def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
        super().__init__(protocol, server, **kwargs)
        # No byte has been received yet: the protocol's parser can be swapped safely.
        protocol.parser = _parse(protocol)
        next(protocol.parser)


def _parse(protocol: ServerProtocol) -> Generator[None]:
    """``ServerProtocol.parse`` with an answer where the original closes without one."""
    assert protocol.state is CONNECTING
    try:
        request = yield from Request.parse(protocol.reader.read_line)
    except EOFError as exc:
        # The client went away mid-request: nobody to answer.
        protocol.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
        protocol.handshake_exc.__cause__ = exc
        protocol.send_eof()
        protocol.parser = protocol.discard()
        next(protocol.parser)
        yield
        return
    except Exception as exc:
        protocol.handshake_exc = InvalidMessage("did not receive a valid HTTP request")
        protocol.handshake_exc.__cause__ = exc
        status, text = answer_for(exc)
        # send_response half-closes and swaps in the parser that reads the rest away.
        protocol.send_response(protocol.reject(status, text + "\n"))
        yield
        return
    twice = repeated(request)
    if twice is not None:
        protocol.handshake_exc = InvalidMessage(f"more than one {twice} header")
        protocol.send_response(
            protocol.reject(http.HTTPStatus.BAD_REQUEST, f"bad request: {twice} sent twice\n")
        )
        yield
        return
    protocol.events.append(request)
    yield from Protocol.parse(protocol)
