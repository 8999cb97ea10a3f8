"""The gateway: WebSocket server, the Redis subscription feeding the fan-out, start-up and shutdown.

One process runs one :class:`Gateway`: a websockets server whose ``process_request`` hook
answers plain HTTP (:mod:`gateway.http`) and checks handshakes (:mod:`gateway.handshake`:
connection limit, JWT, stream name), a :class:`~gateway.subscriber.Subscriber` on the
:class:`~framecast.broker.Broker` feeding a :class:`~gateway.fanout.Fanout`, and one
:class:`~gateway.session.Session` per connection. The entry point is :mod:`gateway.main`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import urllib.parse
import weakref
from collections.abc import Callable, Sequence

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Origin

from framecast import wire
from framecast.broker import open_broker
from gateway._wsio import close_or_abort
from gateway.auth import OPEN_GRANT, Authenticator, AuthError
from gateway.config import DEFAULT_STATIC_DIR, GatewayConfig
from gateway.connection import Connection
from gateway.fanout import Fanout
from gateway.handshake import BadRequest, Handshake, bearer, parse_query_token, parse_ws_path
from gateway.heartbeats import Heartbeats
from gateway.http import HttpRoutes, text_response
from gateway.metrics import CONTENT_TYPE, GatewayMetrics
from gateway.readiness import UnreadySpell
from gateway.reads import SubscribeReads
from gateway.session import Session
from gateway.subscriber import Subscriber

__all__ = ["GATEWAY_HEADER", "Gateway", "main"]

log = logging.getLogger("gateway")

GATEWAY_HEADER = "X-Framecast-Gateway"


class Gateway:
    """One gateway: Redis subscription, fan-out, WebSocket and HTTP serving.

    Args:
        config: Settings.
        authenticator: Token checker (built from ``config`` if None).
    """

    def __init__(self, config: GatewayConfig, *, authenticator: Authenticator | None = None) -> None:
        self.config = config
        self.auth = authenticator or Authenticator(
            secret=config.jwt_secret, public_key_path=config.jwt_public_key
        )
        self.fanout = Fanout(
            client_buffer=config.client_buffer,
            send_deadline=config.send_deadline,
            max_lag=config.max_lag,
            lag_threshold=config.lag_threshold,
            probe_interval=config.lag_probe_interval,
            probe_messages=config.lag_probe_messages,
            max_age=config.max_age,
            close_timeout=config.close_timeout,
            chunk=config.fanout_chunk,
            slice_time=config.fanout_slice,
        )
        self.broker = open_broker(
            config.redis_url,
            timeout=max(config.ready_timeout, 1.0),
            cluster=config.cluster,
            sharded=config.sharded,
        )
        self.reads = SubscribeReads(
            self.broker, concurrency=config.history_reads, replay_limit=config.replay_limit
        )
        self.heartbeats = Heartbeats(offline_after=config.offline_after)
        self.subscriber = Subscriber(
            broker=self.broker,
            gateway_id=config.id,
            on_message=self._on_message,
            on_preview=self._on_preview,
            on_gap=self._on_gap,
            health_check_interval=config.health_check_interval,
            ready_timeout=config.ready_timeout,
            # Several canaries per --ready-timeout: readiness gates handshakes, so it must not
            # flap when one canary is a little late.
            canary_interval=min(1.0, config.ready_timeout / 3),
        )
        self.metrics = GatewayMetrics(
            fanout=self.fanout,
            subscriber=self.subscriber,
            connections=lambda: len(self._open),
            ready=lambda: self.not_ready_reason() is None,
            history_reads=lambda: self.reads.reads,
        )
        self.fanout.policy.on_message = self.metrics.on_message  # metrics need the fan-out first
        self.http = HttpRoutes(
            gateway_id=config.id,
            static_dir=config.static_dir or DEFAULT_STATIC_DIR,
            not_ready=self.not_ready_reason,
            metrics=lambda: (self.metrics.render(), CONTENT_TYPE),
            health=lambda: {
                "connections": len(self._open),
                "uptime": round(time.monotonic() - self._started, 3),
            },
            broker=self.broker,
            allowed=self._allowed if self.auth.enabled else None,
            origins=config.origins,
        )
        self._open: set[ServerConnection] = set()
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, Handshake] = weakref.WeakKeyDictionary()
        self._draining = False
        self._started = time.monotonic()
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------
    # State

    def _allowed(self, request: Request) -> Callable[[str], bool]:
        """Which streams a plain HTTP request's token allows (raises AuthError)."""
        token = parse_query_token(request.path) or bearer(request)
        return self.auth.verify(token).allows

    def not_ready_reason(self) -> str | None:
        """None while ready to take clients; else why not."""
        if self._draining:
            return "draining: shutting down"
        return self.subscriber.not_ready_reason()

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with ``--port 0``)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    # ------------------------------------------------------------------
    # Lifecycle

    async def start(self) -> None:
        """Bind the port and start the Redis subscription.

        Raises:
            OSError: The address cannot be bound.
        """
        config = self.config
        self._server = await serve(
            self._handle,
            config.host,
            config.port,
            create_connection=Connection,
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
        self._started = time.monotonic()
        self._tasks = [
            asyncio.create_task(self.subscriber.run(), name="framecast-subscriber"),
            asyncio.create_task(self._watch_heartbeats(), name="framecast-heartbeats"),
            asyncio.create_task(self._watch_readiness(), name="framecast-readiness"),
            asyncio.create_task(self.metrics.watch_loop(), name="framecast-loop-lag"),
        ]
        if not self.auth.enabled:
            log.warning(
                "no --jwt-secret or --jwt-public-key: the gateway is OPEN, "
                "anyone who can reach it reads every stream"
            )

    async def drain(self) -> None:
        """Stop accepting, close clients with 1001 within ``drain_timeout``, release Redis."""
        self._draining = True
        server = self._server
        if server is not None:
            log.info("draining: closing %d client(s) with 1001", len(self._open))
            server.close(close_connections=True)
            try:
                async with asyncio.timeout(self.config.drain_timeout):
                    await server.wait_closed()
            except TimeoutError:
                log.warning("drain timeout: aborting %d connection(s)", len(self._open))
                for connection in list(self._open):
                    connection.transport.abort()
        await self.subscriber.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.fanout.aclose()
        with contextlib.suppress(Exception):
            await self.broker.aclose()

    # ------------------------------------------------------------------
    # Handshake

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urllib.parse.urlsplit(request.path).path
        if path != "/ws" and not path.startswith("/ws/"):
            return await self.http.respond(request)
        if self._draining:
            return text_response(503, "gateway shutting down: retry (another gateway will take you)")
        reason = self.not_ready_reason()
        if reason is not None:
            # nginx retries a 503 on the next gateway (proxy_next_upstream http_503).
            return text_response(503, f"gateway not ready ({reason}): retry", {"Retry-After": "1"})
        if len(self._open) + len(self._handshakes) >= self.config.max_connections:
            return text_response(
                503, f"gateway full ({self.config.max_connections} connections): retry later"
            )
        try:
            stream, since, epoch, previews, token = parse_ws_path(request.path)
        except BadRequest as exc:
            return text_response(400, str(exc))
        grant = OPEN_GRANT
        if self.auth.enabled:
            try:
                grant = self.auth.verify(token or bearer(request))
            except AuthError as exc:
                return text_response(401, str(exc), {"WWW-Authenticate": 'Bearer realm="framecast"'})
            if stream is not None and not grant.allows(stream):
                return text_response(403, f"token does not allow stream {stream!r}")
        self._handshakes[connection] = Handshake(
            stream=stream, since=since, epoch=epoch, previews=previews, grant=grant
        )
        if self.config.send_buffer:
            sock = connection.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.send_buffer)
        return None

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        response.headers[GATEWAY_HEADER] = self.config.id
        if response.status_code != 101:
            self._handshakes.pop(connection, None)  # refused late (e.g. bad Origin): free its slot now
        if urllib.parse.urlsplit(request.path).path.startswith("/ws"):
            outcome = "accepted" if response.status_code == 101 else str(response.status_code)
            self.metrics.handshakes.labels(outcome).inc()

    # ------------------------------------------------------------------
    # Connections

    async def _handle(self, connection: ServerConnection) -> None:
        handshake = self._handshakes.pop(connection, None)
        if handshake is None:  # pragma: no cover - process_request always records one
            return
        session = Session(self, connection, handshake.grant)
        self._open.add(connection)
        expiry: asyncio.TimerHandle | None = None
        if handshake.grant.expires_at is not None:
            delay = max(handshake.grant.expires_at - time.time(), 0.0)
            expiry = asyncio.get_running_loop().call_later(delay, self._expire, connection)
        try:
            await connection.send(wire.encode(wire.Hello(gateway=self.config.id)), text=True)
            if handshake.stream is not None:
                await session.subscribe(
                    wire.Subscribe(
                        stream=handshake.stream,
                        since=handshake.since,
                        epoch=handshake.epoch,
                        previews=handshake.previews,
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
        self.metrics.closes.labels("token-expired").inc()
        task = asyncio.create_task(connection.close(wire.CLOSE_TOKEN_EXPIRED, "token expired"))
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    # ------------------------------------------------------------------
    # Redis -> fan-out

    def _on_message(self, stream: str, data: bytes) -> None:
        peeked = self.fanout.deliver(stream, data)
        if peeked is None:
            return
        self.heartbeats.seen(stream, peeked)

    def _on_preview(self, stream: str, data: bytes) -> None:
        self.fanout.deliver_preview(stream, data)

    def _on_gap(self, streams: list[str]) -> None:
        for stream in streams:
            self.fanout.announce(stream, wire.encode(wire.Gap(stream=stream)))

    def offline_status(self, stream: str, *, epoch: str = "", seq: int = 0) -> bytes:
        """A gateway-made ``status`` with state offline (no heartbeat heard)."""
        return wire.encode(
            wire.Status(
                stream=stream,
                epoch=epoch,
                seq=seq,
                sent_at=time.time(),
                state="offline",
                source=f"gateway {self.config.id}: no heartbeat for {self.config.offline_after:g} s",
            )
        )

    async def _watch_readiness(self) -> None:
        spell = UnreadySpell(close_after=self.config.unready_close_after)
        while not self._draining:
            await asyncio.sleep(0.25)
            reason = self.not_ready_reason()
            if not spell.due(reason) or self._draining:
                continue
            # The spell stays due until ready again (a client that slipped in is moved too), so
            # pick only connections not yet closing: each is closed, logged and counted once.
            moving = [c for c in self._open if c.state is State.OPEN]
            if not moving:
                continue
            log.warning(
                "unready for %.1f s (%s): closing %d client(s) with 1013 so they move to a ready gateway",
                spell.unready_for,
                reason,
                len(moving),
            )
            for connection in moving:
                self.metrics.closes.labels("unready").inc()
                task = asyncio.create_task(
                    close_or_abort(
                        connection,
                        wire.CLOSE_TRY_AGAIN_LATER,
                        "gateway lost redis: reconnect",
                        self.config.close_timeout,
                    )
                )
                self._closers.add(task)
                task.add_done_callback(self._closers.discard)

    async def _watch_heartbeats(self) -> None:
        interval = min(0.5, self.config.offline_after / 4)
        while True:
            await asyncio.sleep(interval)
            # Silence while Redis is down says nothing about the producer: wait for the link.
            if not self.subscriber.connected:
                continue
            for stream, epoch, seq in self.heartbeats.due():
                if self.fanout.clients(stream):
                    log.info(
                        "stream %s: no heartbeat for %.1f s, telling clients it is offline",
                        stream,
                        self.config.offline_after,
                    )
                    self.fanout.announce(
                        stream, self.offline_status(stream, epoch=epoch, seq=seq), kind="status"
                    )


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m gateway") -> int:
    """Run a gateway (:func:`gateway.main.main`; ``framecast gateway`` still names this module)."""
    from gateway.main import main as run_main  # here: gateway.main imports this module

    return run_main(argv, prog=prog)
