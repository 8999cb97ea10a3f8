"""The gateway process: WebSocket server, per-connection sessions, start-up and shutdown.

``main()`` is ``python -m gateway`` and ``framecast gateway``. One process
runs one :class:`Gateway`: a websockets server whose ``process_request`` hook
answers plain HTTP (:mod:`gateway.http`) and checks handshakes (connection
limit, JWT, stream name), a :class:`~gateway.subscriber.Subscriber` feeding a
:class:`~gateway.fanout.Fanout`, and one :class:`_Session` per connection that
runs the client's subscribe/unsubscribe operations.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
import time
import urllib.parse
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisClusterException, RedisError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Origin

from framecast import logs, wire
from framecast.limits import raise_open_files_limit
from framecast.settings import fail
from gateway.auth import OPEN_GRANT, Authenticator, AuthError, Grant
from gateway.config import DEFAULT_STATIC_DIR, GatewayConfig, read_config
from gateway.fanout import Fanout
from gateway.history import Replay, replay
from gateway.http import HttpRoutes, text_response
from gateway.metrics import CONTENT_TYPE, GatewayMetrics
from gateway.subscriber import Heartbeats, Subscriber, connect

__all__ = ["Gateway", "main"]

log = logging.getLogger("gateway")

MAX_BAD_OPS = 5
"""Malformed or unknown operations in a row before the connection is closed with 1008."""
GATEWAY_HEADER = "X-Framecast-Gateway"


@dataclass(frozen=True)
class _Handshake:
    """What process_request learned about a connection, for its handler."""

    stream: str | None
    since: int | None
    epoch: str | None
    previews: bool
    grant: Grant


class _BadRequest(ValueError):
    pass


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on", ""):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise _BadRequest(f"previews: expected 1 or 0, got {value!r}")


def _parse_ws_path(path: str) -> tuple[str | None, int | None, str | None, bool, str | None]:
    """``/ws`` or ``/ws/<stream>`` with its query: (stream, since, epoch, previews, token)."""
    parts = urllib.parse.urlsplit(path)
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    stream: str | None = None
    if parts.path.startswith("/ws/"):
        name = urllib.parse.unquote(parts.path[len("/ws/") :])
        try:
            stream = wire.check_stream_name(name)
        except wire.WireError as exc:
            raise _BadRequest(str(exc)) from None
    since_raw, epoch = one("since"), one("epoch")
    since: int | None = None
    if since_raw is not None:
        try:
            since = int(since_raw)
        except ValueError:
            raise _BadRequest(f"since: expected a whole number, got {since_raw!r}") from None
        if since < 0:
            raise _BadRequest(f"since: expected 0 or more, got {since}")
        if not epoch:
            raise _BadRequest("since needs epoch (the epoch the seq belongs to)")
    previews_raw = one("previews")
    previews = _flag(previews_raw) if previews_raw is not None else False
    return stream, since, epoch or None, previews, one("token")


def _parse_query_token(path: str) -> str | None:
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("token")
    return values[-1] if values else None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization")
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def _op_error_code(exc: wire.WireError) -> str:
    text = str(exc)
    if text.startswith("op:"):
        return "unknown-op"
    if text.startswith("stream:") and "not a valid stream name" in text:
        return "bad-stream"
    return "bad-message"


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
            max_age=config.max_age,
            close_timeout=config.close_timeout,
            chunk=config.fanout_chunk,
            slice_time=config.fanout_slice,
        )
        self.redis = connect(config.redis_url, timeout=max(config.ready_timeout, 1.0), cluster=config.cluster)
        self.heartbeats = Heartbeats(offline_after=config.offline_after)
        self.subscriber = Subscriber(
            url=config.redis_url,
            gateway_id=config.id,
            on_message=self._on_message,
            on_preview=self._on_preview,
            on_gap=self._on_gap,
            commands=self.redis,
            sharded=config.sharded,
            cluster=config.cluster,
            health_check_interval=config.health_check_interval,
            ready_timeout=config.ready_timeout,
        )
        self.metrics = GatewayMetrics(
            fanout=self.fanout,
            subscriber=self.subscriber,
            connections=lambda: len(self._open),
            ready=lambda: self.not_ready_reason() is None,
        )
        self.fanout.on_message = self.metrics.on_message  # metrics need the fan-out first
        self.http = HttpRoutes(
            gateway_id=config.id,
            static_dir=config.static_dir or DEFAULT_STATIC_DIR,
            not_ready=self.not_ready_reason,
            metrics=lambda: (self.metrics.render(), CONTENT_TYPE),
            health=lambda: {
                "connections": len(self._open),
                "uptime": round(time.monotonic() - self._started, 3),
            },
            redis=self.redis,
            allowed=self._allowed if self.auth.enabled else None,
        )
        self._open: set[ServerConnection] = set()
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, _Handshake] = (
            weakref.WeakKeyDictionary()
        )
        self._draining = False
        self._started = time.monotonic()
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------
    # State

    def _allowed(self, request: Request) -> Callable[[str], bool]:
        """Which streams a plain HTTP request's token allows (raises AuthError)."""
        token = _parse_query_token(request.path) or _bearer(request)
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
            await self.redis.aclose()

    # ------------------------------------------------------------------
    # Handshake

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urllib.parse.urlsplit(request.path).path
        if path != "/ws" and not path.startswith("/ws/"):
            return await self.http.respond(request)
        if self._draining:
            return text_response(503, "gateway shutting down: retry (another gateway will take you)")
        if len(self._open) + len(self._handshakes) >= self.config.max_connections:
            return text_response(
                503, f"gateway full ({self.config.max_connections} connections): retry later"
            )
        try:
            stream, since, epoch, previews, token = _parse_ws_path(request.path)
        except _BadRequest as exc:
            return text_response(400, str(exc))
        grant = OPEN_GRANT
        if self.auth.enabled:
            try:
                grant = self.auth.verify(token or _bearer(request))
            except AuthError as exc:
                return text_response(401, str(exc), {"WWW-Authenticate": 'Bearer realm="framecast"'})
            if stream is not None and not grant.allows(stream):
                return text_response(403, f"token does not allow stream {stream!r}")
        self._handshakes[connection] = _Handshake(stream, since, epoch, previews, grant)
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
        session = _Session(self, connection, handshake.grant)
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
        if peeked is not None:
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


class _Session:
    """One connection's subscriptions and the operations that change them."""

    def __init__(self, gateway: Gateway, connection: ServerConnection, grant: Grant) -> None:
        self.gateway = gateway
        self.connection = connection
        self.grant = grant
        self.streams: dict[str, bool] = {}  # stream -> previews

    async def serve(self) -> None:
        """Read operations until the connection closes."""
        bad = 0
        async for message in self.connection:
            # Binary frames holding UTF-8 JSON are accepted too: some client libraries send bytes.
            try:
                op = wire.decode_op(message)
            except wire.WireError as exc:
                code, text = _op_error_code(exc), str(exc)
            else:
                bad = 0
                if isinstance(op, wire.Subscribe):
                    await self.subscribe(op)
                else:
                    await self.unsubscribe(op.stream)
                continue
            bad += 1
            await self.error(code, text)
            if bad >= MAX_BAD_OPS:
                self.gateway.metrics.closes.labels("bad-requests").inc()
                await self.connection.close(wire.CLOSE_BAD_REQUEST, f"{bad} bad operations in a row")
                return

    async def error(self, code: str, message: str, stream: str | None = None) -> None:
        self.gateway.metrics.client_errors.labels(code).inc()
        await self.connection.send(
            wire.encode(wire.Error(code=code, message=message, stream=stream)), text=True
        )

    async def subscribe(self, op: wire.Subscribe) -> None:
        """Subscribe (or re-subscribe, e.g. with ``since`` after a gap) to a stream."""
        gateway, stream = self.gateway, op.stream
        config = gateway.config
        if not self.grant.allows(stream):
            await self.error("forbidden", f"token does not allow stream {stream!r}", stream)
            return
        if stream not in self.streams and len(self.streams) >= config.max_streams_per_client:
            await self.error(
                "too-many-streams", f"at most {config.max_streams_per_client} streams per connection", stream
            )
            return
        if op.since is not None and not op.epoch:
            await self.error("bad-message", "since needs epoch (the epoch the seq belongs to)", stream)
            return
        previously = self.streams.get(stream)
        # Joining first: live messages from now on are buffered, so replay and live meet exactly.
        gateway.fanout.add(stream, self.connection, previews=op.previews, joining=True)
        subscribed = gateway.subscriber.acquire(stream, previews=op.previews)
        if previously is not None:
            gateway.subscriber.release(stream, previews=previously)
        self.streams[stream] = op.previews
        gateway.heartbeats.watch(stream)
        # Bounded: with Redis down the client still gets 'subscribed' now and a 'gap' later.
        await asyncio.wait([subscribed], timeout=config.ready_timeout)
        try:
            async with asyncio.timeout(config.ready_timeout):
                plan = await replay(
                    gateway.redis, stream, since=op.since, epoch=op.epoch, limit=config.replay_limit
                )
                status = await self._current_status(stream, plan)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            log.info("stream %s: history unavailable for a subscriber: %s", stream, exc)
            plan = Replay(
                reset="history-unavailable" if op.since is not None else None,
                epoch=op.epoch,
                seq=op.since or 0,
            )
            status = None
        try:
            async with asyncio.timeout(config.max_lag):
                await self.connection.send(
                    wire.encode(wire.Subscribed(stream=stream, previews=op.previews)), text=True
                )
                if plan.reset is not None:
                    await self.connection.send(
                        wire.encode(wire.Reset(stream=stream, reason=plan.reset)), text=True
                    )
                for message in plan.messages:
                    await self.connection.send(message, text=True)
                if status is not None:
                    await self.connection.send(status, text=True)
        except TimeoutError:
            gateway.fanout.stats.slow_closes += 1
            gateway.metrics.closes.labels("slow-consumer").inc()
            await _close_or_abort(
                self.connection, wire.CLOSE_SLOW_CONSUMER, "slow consumer", config.close_timeout
            )
            return
        if stream in self.streams:  # not unsubscribed meanwhile
            gateway.fanout.go_live(stream, self.connection, epoch=plan.epoch, seq=plan.seq)

    async def _current_status(self, stream: str, plan: Replay) -> bytes | None:
        """The stream's latest heartbeat, or an offline status if its producer is silent."""
        gateway = self.gateway
        raw = await gateway.redis.get(wire.status_key(stream))
        if isinstance(raw, bytes):
            try:
                if isinstance(wire.decode(raw), wire.Status):
                    return raw
            except wire.WireError:
                pass
        epoch, seq = gateway.heartbeats.last(stream)
        if not epoch and plan.epoch:
            epoch, seq = plan.epoch, plan.seq
        gateway.heartbeats.mark_offline(stream)
        return gateway.offline_status(stream, epoch=epoch, seq=seq)

    async def unsubscribe(self, stream: str) -> None:
        """Stop a stream (idempotent: always answered with ``unsubscribed``)."""
        previews = self.streams.pop(stream, None)
        if previews is not None:
            self.gateway.fanout.remove(stream, self.connection)
            self._release(stream, previews)
        await self.connection.send(wire.encode(wire.Unsubscribed(stream=stream)), text=True)

    def close(self) -> None:
        """Forget the connection everywhere (its handler is ending)."""
        self.gateway.fanout.discard(self.connection)
        for stream, previews in self.streams.items():
            self._release(stream, previews)
        self.streams.clear()

    def _release(self, stream: str, previews: bool) -> None:
        gateway = self.gateway
        gateway.subscriber.release(stream, previews=previews)
        if not gateway.fanout.clients(stream):
            gateway.heartbeats.unwatch(stream)


async def _close_or_abort(connection: ServerConnection, code: int, reason: str, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await connection.close(code, reason)
    except TimeoutError:
        connection.transport.abort()


# --------------------------------------------------------------------------
# Entry point


async def _run(config: GatewayConfig, auth: Authenticator, prog: str) -> int:
    gateway = Gateway(config, authenticator=auth)
    try:
        await gateway.start()
    except OSError as exc:
        await gateway.redis.aclose()
        if exc.errno == errno.EADDRINUSE:
            return fail(
                prog, f"port {config.port} is in use ({exc.strerror}); stop the other server or pick --port"
            )
        return fail(prog, f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "gateway %s listening on http://%s:%d (WebSocket /ws and /ws/<stream>; Redis %s)",
        config.id,
        config.host,
        gateway.port,
        logs.redact_url(config.redis_url),
    )
    await stop.wait()
    await gateway.drain()
    log.info("gateway %s stopped", config.id)
    return 0


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m gateway") -> int:
    """Run a gateway until SIGTERM/SIGINT; returns the exit status."""
    config = read_config(argv, prog=prog)
    logs.setup(config.log_level, name="gateway")
    try:
        auth = Authenticator(secret=config.jwt_secret, public_key_path=config.jwt_public_key)
    except ValueError as exc:
        return fail(prog, str(exc), 2)
    open_files = raise_open_files_limit()
    if open_files < config.max_connections + 64:
        log.warning(
            "the open-files limit is %d, below --max-connections %d: clients past it will be refused "
            "by the kernel (raise it with 'ulimit -n' or the container's nofile limit)",
            open_files,
            config.max_connections,
        )
    runner: dict[str, Any] = {}
    if config.uvloop:
        try:
            import uvloop  # type: ignore[import-not-found,unused-ignore]

            runner["loop_factory"] = uvloop.new_event_loop
        except ImportError:
            log.warning("--uvloop: uvloop is not installed (pip install uvloop); using asyncio's loop")
    with asyncio.Runner(**runner) as run:
        return run.run(_run(config, auth, prog))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
