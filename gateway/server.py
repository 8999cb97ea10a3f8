"""The gateway's WebSocket and HTTP server: admission, one session per connection, shutdown.

A websockets server whose ``process_request`` hook answers plain HTTP (:mod:`gateway.http`)
and admits or refuses each handshake (:func:`gateway.admission.admit`, sans I/O); each
accepted connection gets a ``hello``, its first subscription (from the path) and a
:class:`~gateway.session.Session` made by the session factory it is given, and is closed with
4001 when its token expires. The parts are wired by :mod:`gateway.app`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Origin

from framecast import wire
from gateway import _wsio
from gateway.admission import Refusal, admit, is_websocket_path
from gateway.auth import Authenticator, Grant
from gateway.config import GatewayConfig
from gateway.handshake import Handshake
from gateway.http import HttpRoutes, text_response
from gateway.readiness import Readiness
from gateway.session import Session

__all__ = ["GATEWAY_HEADER", "Server", "ServerMetrics", "SessionFactory"]

log = logging.getLogger("gateway")

GATEWAY_HEADER = "X-Framecast-Gateway"

SessionFactory = Callable[[ServerConnection, Grant], Session]
"""Makes the session of an accepted connection, given what its token allows."""


class ServerMetrics(Protocol):
    """What the server counts (:class:`gateway.metrics.GatewayMetrics` is one)."""

    def handshake(self, outcome: str) -> None:
        """A WebSocket handshake ended: ``accepted`` or the HTTP status it was refused with."""

    def closed(self, reason: str) -> None:
        """The gateway closed a connection, for ``reason``."""


class Server:
    """Serves one gateway's WebSocket clients and plain HTTP on one port.

    Args:
        config: Address, limits and WebSocket options (``host``, ``port``, ``id``,
            ``max_connections``, ``send_buffer``, ``compression``, ...).
        auth: Token checker.
        http: Plain HTTP answers.
        readiness: Whether to take clients; draining is set by :meth:`drain`.
        sessions: Makes each connection's session.
        metrics: Where handshakes and closes are counted.
    """

    def __init__(
        self,
        *,
        config: GatewayConfig,
        auth: Authenticator,
        http: HttpRoutes,
        readiness: Readiness,
        sessions: SessionFactory,
        metrics: ServerMetrics,
    ) -> None:
        self._config = config
        self._auth = auth
        self._http = http
        self._readiness = readiness
        self._sessions = sessions
        self._metrics = metrics
        self._open: set[ServerConnection] = set()
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, Handshake] = weakref.WeakKeyDictionary()
        self._server: WsServer | None = None
        self._closers: set[asyncio.Task[None]] = set()

    @property
    def connections(self) -> int:
        """Open WebSocket connections."""
        return len(self._open)

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with ``--port 0``)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind the port.

        Raises:
            OSError: The address cannot be bound.
        """
        config = self._config
        self._server = await serve(
            self._handle,
            config.host,
            config.port,
            create_connection=_wsio.AnsweringConnection,
            process_request=self._process_request,
            process_response=self._process_response,
            compression="deflate" if config.compression == "deflate" else None,
            max_size=config.max_message_size,
            origins=[*(Origin(o) for o in config.origins), None] if config.origins else None,
            write_limit=(config.client_buffer, config.client_buffer // 4),
            close_timeout=config.close_timeout,
            reuse_port=config.reuse_port or None,
            backlog=4096,
        )

    async def drain(self) -> None:
        """Stop accepting and close every client with 1001 within ``drain_timeout`` (then abort)."""
        self._readiness.drain()
        server = self._server
        if server is None:
            return
        log.info("draining: closing %d client(s) with 1001", len(self._open))
        server.close(close_connections=True)
        try:
            async with asyncio.timeout(self._config.drain_timeout):
                await server.wait_closed()
        except TimeoutError:
            log.warning("drain timeout: aborting %d connection(s)", len(self._open))
            for connection in list(self._open):
                _wsio.abort(connection)

    def move_clients(self) -> int:
        """Close every open client with 1013 (try again later: on a ready gateway); returns how many.

        Connections already closing are left alone, so each is closed and counted once.
        """
        moving = [c for c in self._open if c.state is State.OPEN]
        for connection in moving:
            self._metrics.closed("unready")
            self._spawn(
                _wsio.close_or_abort(
                    connection,
                    wire.CLOSE_TRY_AGAIN_LATER,
                    "gateway lost redis: reconnect",
                    self._config.close_timeout,
                )
            )
        return len(moving)

    # ------------------------------------------------------------------
    # Handshake

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not is_websocket_path(request.path):
            return await self._http.respond(request)
        verdict = admit(
            request,
            draining=self._readiness.draining,
            not_ready=self._readiness.reason(),
            connections=len(self._open) + len(self._handshakes),
            max_connections=self._config.max_connections,
            auth=self._auth,
        )
        if isinstance(verdict, Refusal):
            return text_response(verdict.status, verdict.text, verdict.headers)
        self._handshakes[connection] = verdict
        if self._config.send_buffer:
            _wsio.set_send_buffer(connection, self._config.send_buffer)
        return None

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        response.headers[GATEWAY_HEADER] = self._config.id
        if response.status_code != 101:
            self._handshakes.pop(connection, None)  # refused late (e.g. bad Origin): free its slot now
        if urllib.parse.urlsplit(request.path).path.startswith("/ws"):
            self._metrics.handshake("accepted" if response.status_code == 101 else str(response.status_code))

    # ------------------------------------------------------------------
    # Connections

    async def _handle(self, connection: ServerConnection) -> None:
        handshake = self._handshakes.pop(connection, None)
        if handshake is None:  # pragma: no cover - process_request always records one
            return
        session = self._sessions(connection, handshake.grant)
        self._open.add(connection)
        expiry: asyncio.TimerHandle | None = None
        if handshake.grant.expires_at is not None:
            delay = max(handshake.grant.expires_at - time.time(), 0.0)
            expiry = asyncio.get_running_loop().call_later(delay, self._expire, connection)
        try:
            await connection.send(wire.encode(wire.Hello(gateway=self._config.id)), text=True)
            if handshake.stream is not None:
                await session.subscribe(
                    wire.Subscribe(
                        stream=handshake.stream,
                        since=handshake.since,
                        epoch=handshake.epoch,
                        previews=handshake.previews,
                        kinds=handshake.choices.kinds,
                        max_rate=handshake.choices.max_rate,
                        event_since=handshake.choices.event_since,
                        event_epoch=handshake.choices.event_epoch,
                        video=handshake.video,
                    )
                )
            await session.serve()
        except ConnectionClosed:
            pass
        finally:
            if expiry is not None:
                expiry.cancel()
            session.close()
            self._open.discard(connection)

    def _expire(self, connection: ServerConnection) -> None:
        self._metrics.closed("token-expired")
        self._spawn(connection.close(wire.CLOSE_TOKEN_EXPIRED, "token expired"))

    def _spawn(self, closing: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(closing)
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)
