"""The gateway's settings: one frozen object read from flags and environment.

Every field is a flag (``send_deadline`` is ``--send-deadline``) and an
environment variable (``FRAMECAST_SEND_DEADLINE``; ``redis_url`` reads the
conventional ``REDIS_URL``). See ``python -m gateway --help``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from framecast import settings
from framecast.settings import ConfigError, non_negative, option, parse, port_number, positive

__all__ = ["DEFAULT_STATIC_DIR", "GatewayConfig", "default_id", "read_config"]

DEFAULT_STATIC_DIR = str(Path(__file__).resolve().parent / "static")
"""The viewer shipped inside the package."""

DESCRIPTION = """\
Serve live framecast streams from Redis to WebSocket clients.

The gateway subscribes once per stream to Redis (only while it has clients for
that stream) and pushes every message to its local clients. WebSocket paths:
/ws/<stream> (one stream; ?since=SEQ&epoch=E resumes, previews=1 and video=1 add them) and /ws
(send subscribe/unsubscribe operations). Plain HTTP: /healthz, /readyz,
/metrics, /streams and the viewer's static files.

If Redis is unreachable the gateway still starts: it serves, answers /readyz
with 503 and retries with capped exponential backoff until Redis is back."""

EPILOG = """\
exit status: 0 after a clean shutdown (SIGTERM/SIGINT: clients are closed with
1001 within --drain-timeout), 1 on a runtime error (port in use), 2 on a bad
setting."""


def default_id() -> str:
    """``<hostname>-<pid>``: unique per process, readable in logs and headers."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _id_check(value: str) -> None:
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError("expected 1-64 characters of letters, digits, '-', '_' or '.'")


def _key_file_check(value: str) -> None:
    if not Path(value).is_file():
        raise ValueError("no such file")


def _dir_check(value: str) -> None:
    if Path(value).exists() and not Path(value).is_dir():
        raise ValueError("not a directory")


def _socket_size(value: int) -> None:
    non_negative(value)
    if value > 2**31 - 1:  # setsockopt takes a C int: a larger one raised OverflowError per client
        raise ValueError("must be at most 2147483647 (a socket option is a 32-bit integer)")


def _origin_check(value: tuple[str, ...]) -> None:
    for origin in value:
        if not origin.startswith(("http://", "https://")):
            raise ValueError(f"{origin!r} is not an origin like https://example.com")


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """Settings of one gateway process (see ``--help`` for each)."""

    # Network --------------------------------------------------------------
    host: str = option(
        "127.0.0.1",
        help="Address to listen on; 0.0.0.0 for every interface (containers).",
        group="network",
    )
    port: int = option(
        8000, help="TCP port to listen on (0 picks a free one).", check=port_number, group="network"
    )
    id: str = option(
        "",
        help="Gateway id, sent to clients in 'hello' and the X-Framecast-Gateway header "
        "(empty: <hostname>-<pid>).",
        check=_id_check,
        group="network",
    )
    reuse_port: bool = option(
        False, help="Set SO_REUSEPORT so several gateways can share one port.", group="network"
    )
    uvloop: bool = option(
        False, help="Run on uvloop if it is installed (it is not a dependency).", group="network"
    )
    static_dir: str = option(
        "",
        help="Directory of the viewer's static files (empty: the viewer bundled with the gateway).",
        check=_dir_check,
        group="network",
    )

    # Redis ----------------------------------------------------------------
    redis_url: str = option(
        "redis://127.0.0.1:6379/0",
        help="Redis (or valkey) to subscribe to.",
        env="REDIS_URL",
        check=settings.redis_url,
        group="redis",
    )
    sharded: bool = option(
        False,
        help="Use sharded pub/sub (SSUBSCRIBE); producers must run with --sharded too (a mismatch "
        "delivers nothing). On a Redis Cluster use --cluster, which implies it.",
        group="redis",
    )
    cluster: bool = option(
        False,
        help="The Redis URL is a node of a Redis Cluster: discover the others, SSUBSCRIBE each stream on "
        "the shard owning it (one connection and one canary per primary), read history and status "
        "through the cluster. Implies --sharded; producers must run with --cluster too.",
        group="redis",
    )
    health_check_interval: float = option(
        5.0, help="Seconds between PINGs on an idle subscription connection.", check=positive, group="redis"
    )
    ready_timeout: float = option(
        3.0,
        help="The gateway is ready only while its Redis canary came back within this many seconds; "
        "twice that without it and the subscription is reconnected.",
        check=positive,
        group="redis",
    )
    offline_after: float = option(
        3.0,
        help="Seconds without a producer heartbeat after which a stream's clients are told it is offline.",
        check=positive,
        group="redis",
    )
    replay_limit: int = option(
        1000, help="Most results replayed to one resuming client.", check=positive, group="redis"
    )
    unready_close_after: float = option(
        10.0,
        help="Seconds the gateway may stay unready (Redis unreachable or its subscription deaf) "
        "before it closes its clients with 1013 so they reconnect to a ready gateway and resume.",
        check=positive,
        group="redis",
    )
    history_reads: int = option(
        8,
        help="Subscribers' history and status reads run at once, at most; the rest queue (and "
        "subscribers of one stream share a queued read), so a connection storm cannot exhaust "
        "Redis connections.",
        check=positive,
        group="redis",
    )

    # Delivery policy ------------------------------------------------------
    client_buffer: int = option(
        1 << 20,
        help="Bytes a client may have unsent before it counts as lagging and is conflated "
        "(newest message per stream only).",
        check=positive,
        group="delivery",
    )
    send_deadline: float = option(
        1.0,
        help="Timeout of the one asyncio.wait over every lagging client's drain per tick, in seconds: the "
        "longest a lagging client goes unchecked (stale pending dropped, --max-lag enforced); one that "
        "drains sooner is served at once.",
        check=positive,
        group="delivery",
    )
    max_lag: float = option(
        10.0,
        help="A client lagging this many seconds (or leaving a lag probe unanswered this long) is closed "
        "with 4008.",
        check=positive,
        group="delivery",
    )
    lag_threshold: float = option(
        1.0,
        help="Seconds a lag probe (a WebSocket ping written right behind a client's data, answered only "
        "once the client has read everything before it, through any proxy) may go unanswered before the "
        "client counts as lagging and gets only the newest message per stream (0 = no lag probes: only "
        "the gateway's own buffer level, which a load balancer hides, marks a client as lagging).",
        check=non_negative,
        group="delivery",
    )
    lag_probe_interval: float = option(
        0.5,
        help="Seconds between rounds of lag probes: a round finds the clients whose probe is overdue, and "
        "sends a wave of probes to the clients of each stream that carried --lag-probe-messages messages "
        "(or 64 KiB) since its last wave.",
        check=positive,
        group="delivery",
    )
    lag_probe_messages: int = option(
        256,
        help="Messages a stream carries between two waves of lag probes (or 64 KiB, whichever comes first): "
        "reading a probe's answer costs about as much as 15 deliveries, so fewer means faster detection "
        "of a stalled client on a slow stream for more CPU.",
        check=positive,
        group="delivery",
    )
    max_age: float = option(
        2.0,
        help="Drop a live message older than this many seconds since capture (0 = never).",
        check=non_negative,
        group="delivery",
    )
    send_buffer: int = option(
        256 * 1024,
        help="Kernel send buffer (SO_SNDBUF) of each client socket, in bytes: bounds the kernel memory a "
        "stalled client holds (autotuning lets it reach megabytes) and exposes stalls sooner. "
        "0 = kernel autotuning.",
        check=_socket_size,
        group="delivery",
    )
    fanout_chunk: int = option(
        128,
        help="Clients written per event-loop step; bigger audiences are served in slices so the loop "
        "stays responsive (0 = no count limit: slices end on --fanout-slice alone).",
        check=non_negative,
        group="delivery",
    )
    fanout_slice: float = option(
        0.001,
        help="Seconds one fan-out slice may hold the event loop: a slice also ends once it has run this "
        "long, whatever --fanout-chunk says (0 = count only).",
        check=non_negative,
        group="delivery",
    )
    video_linger: float = option(
        4.0,
        help="Seconds a stream's video subscription, and its current group of pictures, are kept after "
        "its last video viewer left: a viewer who reloads or resubscribes within them starts at once "
        "from that group's keyframe instead of waiting up to a keyframe interval for the next one. The "
        "producer encodes while its video channel has subscribers, so it keeps encoding that long "
        "after the last viewer (0 = give the subscription up at once).",
        check=non_negative,
        group="delivery",
    )
    close_timeout: float = option(
        2.0,
        help="Seconds a closing handshake may take before the TCP connection is aborted.",
        check=positive,
        group="delivery",
    )
    compression: str = option(
        "off",
        help="'deflate' negotiates permessage-deflate (costs CPU per client and message).",
        choices=("off", "deflate"),
        group="delivery",
    )

    # Limits ----------------------------------------------------------------
    max_connections: int = option(
        10000,
        help="Open WebSocket connections above which handshakes get HTTP 503.",
        check=positive,
        group="limits",
    )
    max_message_size: int = option(
        4096,
        help="Largest message accepted from a client, in bytes (close 1009).",
        check=positive,
        group="limits",
    )
    max_streams_per_client: int = option(
        16, help="Streams one connection may subscribe to.", check=positive, group="limits"
    )
    drain_timeout: float = option(
        10.0, help="Seconds allowed for closing every client at shutdown.", check=positive, group="limits"
    )

    # Security -------------------------------------------------------------
    jwt_secret: str | None = option(
        None,
        help="HS256 secret: when set, clients need a JWT (?token= or Authorization: Bearer) whose "
        "'streams' claim (list of names, or \"*\") allows the stream.",
        metavar="SECRET",
        group="security",
    )
    jwt_public_key: str | None = option(
        None,
        help="PEM public key file for RS256/ES256 tokens (instead of, or with, --jwt-secret).",
        check=_key_file_check,
        metavar="PATH",
        group="security",
    )
    require_auth: bool = option(
        False,
        help="Refuse to start unless --jwt-secret or --jwt-public-key is set: where an open gateway "
        "would be a mistake (a secret missing from the environment must not let every client in).",
        group="security",
    )
    origins: tuple[str, ...] = option(
        (),
        help="Comma-separated browser origins allowed to connect (empty = any). "
        "Clients that send no Origin (non-browsers) are allowed.",
        check=_origin_check,
        group="security",
    )

    # Logging ---------------------------------------------------------------
    log_level: str = option(
        "INFO", help="DEBUG, INFO, WARNING or ERROR.", check=settings.log_level, group="logging"
    )

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", default_id())
        if self.require_auth and not self.auth_required:
            raise ConfigError(
                "--require-auth (FRAMECAST_REQUIRE_AUTH) is set but neither FRAMECAST_JWT_SECRET "
                "(--jwt-secret) nor FRAMECAST_JWT_PUBLIC_KEY (--jwt-public-key) is: every client "
                "would be let in"
            )
        if self.lag_threshold > self.max_lag:
            raise ConfigError(
                f"--lag-threshold ({self.lag_threshold}) must not exceed --max-lag ({self.max_lag})"
            )
        if self.send_deadline > self.max_lag:
            raise ConfigError(
                f"--send-deadline ({self.send_deadline}) must not exceed --max-lag ({self.max_lag})"
            )

    @property
    def auth_required(self) -> bool:
        """Whether clients must present a JWT."""
        return bool(self.jwt_secret or self.jwt_public_key)


def read_config(argv: Sequence[str] | None = None, *, prog: str = "python -m gateway") -> GatewayConfig:
    """Parse flags and environment into a :class:`GatewayConfig` (exit 2 on a bad value)."""
    return parse(GatewayConfig, argv, prog=prog, description=DESCRIPTION, epilog=EPILOG)
