"""The one place that wires a gateway: every part built once, collaborators and hooks passed in.

Data flows one way: Redis -> :class:`~gateway.subscriber.Subscriber` ->
:class:`~gateway.streams.Route` -> :class:`~gateway.fanout.Fanout` -> clients; a client's
requests go :class:`~gateway.server.Server` (admission) -> :class:`~gateway.session.Session`
-> :class:`~gateway.streams.Streams`. :class:`~gateway.metrics.GatewayMetrics` is the fan-out's
observer and counts the server's and sessions' events; the watchdogs
(:mod:`gateway.watchdogs`) run beside them. The entry point is :mod:`gateway.main`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

from framecast.broker import open_broker
from gateway.admission import streams_allowed
from gateway.auth import Authenticator
from gateway.config import DEFAULT_STATIC_DIR, GatewayConfig
from gateway.fanout import Fanout
from gateway.heartbeats import Heartbeats
from gateway.http import HttpRoutes
from gateway.metrics import CONTENT_TYPE, GatewayMetrics, LiveGauges
from gateway.policy import Limits
from gateway.readiness import Readiness
from gateway.reads import SubscribeReads
from gateway.server import Server
from gateway.session import Session, SessionLimits
from gateway.streams import Route, Streams
from gateway.subscriber import Subscriber
from gateway.watchdogs import HeartbeatWatch, ReadinessWatch

__all__ = ["Gateway"]

log = logging.getLogger("gateway")


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
        self.metrics = GatewayMetrics()
        self.fanout = Fanout(Limits.from_config(config), observer=self.metrics)
        self.heartbeats = Heartbeats(offline_after=config.offline_after, gateway_id=config.id)
        self.broker = open_broker(
            config.redis_url,
            timeout=max(config.ready_timeout, 1.0),
            cluster=config.cluster,
            sharded=config.sharded,
        )
        route = Route(fanout=self.fanout, heartbeats=self.heartbeats)
        self.subscriber = Subscriber(
            broker=self.broker,
            gateway_id=config.id,
            on_message=route.message,
            on_preview=route.preview,
            on_video=route.video,
            on_gap=route.gap,
            on_video_end=route.video_end,
            video_linger=config.video_linger,
            health_check_interval=config.health_check_interval,
            ready_timeout=config.ready_timeout,
            # Several canaries per --ready-timeout: readiness gates handshakes, so it must not
            # flap when one canary is a little late.
            canary_interval=min(1.0, config.ready_timeout / 3),
        )
        self.reads = SubscribeReads(
            self.broker, concurrency=config.history_reads, replay_limit=config.replay_limit
        )
        self.readiness = Readiness(subscription=self.subscriber.not_ready_reason)
        self.streams = Streams(
            fanout=self.fanout, subscriber=self.subscriber, heartbeats=self.heartbeats, reads=self.reads
        )
        self._started = time.monotonic()
        http = HttpRoutes(
            gateway_id=config.id,
            static_dir=config.static_dir or DEFAULT_STATIC_DIR,
            not_ready=self.readiness.reason,
            metrics=lambda: (self.metrics.render(), CONTENT_TYPE),
            health=self._health,
            broker=self.broker,
            allowed=functools.partial(streams_allowed, auth=self.auth) if self.auth.enabled else None,
            origins=config.origins,
        )
        self.server = Server(
            config=config,
            auth=self.auth,
            http=http,
            readiness=self.readiness,
            sessions=functools.partial(
                Session, desk=self.streams, limits=SessionLimits.from_config(config), metrics=self.metrics
            ),
            metrics=self.metrics,
        )
        self.metrics.registry.register(
            LiveGauges(
                counts=self.metrics,
                fanout=self.fanout,
                subscriber=self.subscriber,
                connections=lambda: self.server.connections,
                ready=lambda: self.readiness.reason() is None,
                loop_lag=self.metrics.loop_lag_max,
                history_reads=lambda: self.reads.reads,
            )
        )
        self._watchdogs = (
            HeartbeatWatch(
                heartbeats=self.heartbeats, fanout=self.fanout, connected=lambda: self.subscriber.connected
            ),
            ReadinessWatch(
                readiness=self.readiness,
                close_after=config.unready_close_after,
                move=self.server.move_clients,
            ),
        )
        self._tasks: list[asyncio.Task[None]] = []

    def _health(self) -> dict[str, object]:
        return {"connections": self.server.connections, "uptime": round(time.monotonic() - self._started, 3)}

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with ``--port 0``)."""
        return self.server.port

    async def start(self) -> None:
        """Bind the port, then start the Redis subscription and the watchdogs.

        Raises:
            OSError: The address cannot be bound.
        """
        await self.server.start()
        self._started = time.monotonic()
        heartbeats, readiness = self._watchdogs
        self._tasks = [
            asyncio.create_task(self.subscriber.run(), name="framecast-subscriber"),
            asyncio.create_task(heartbeats.run(), name="framecast-heartbeats"),
            asyncio.create_task(readiness.run(), name="framecast-readiness"),
            asyncio.create_task(self.metrics.watch_loop(), name="framecast-loop-lag"),
        ]
        if not self.auth.enabled:
            log.warning(
                "no --jwt-secret or --jwt-public-key: the gateway is OPEN, "
                "anyone who can reach it reads every stream"
            )

    async def drain(self) -> None:
        """Stop accepting, close clients with 1001 within ``drain_timeout``, release Redis."""
        await self.server.drain()
        await self.subscriber.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.fanout.aclose()
        with contextlib.suppress(Exception):
            await self.broker.aclose()
