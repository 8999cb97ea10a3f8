"""Sharded pub/sub end to end: a real ``--sharded`` producer, real gateways and a real valkey.

The producer SPUBLISHes and counts viewers with PUBSUB SHARDNUMSUB; a ``--sharded`` gateway
SSUBSCRIBEs (its canary too) and serves WebSocket clients; a gateway left in plain pub/sub mode on
the same Redis hears nothing live, which shows the two modes really differ.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import redis
from websockets.sync.client import ClientConnection, connect

from framecast import wire
from tests.support.gateway import running_gateway
from tests.support.producer import running_producer
from tests.support.wait import wait_until
from tests.support.wsread import Message, collect, recv

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer


STREAM = "default"


class _StatusKey:
    """Reads the producer's status key: unlike subscribing, reading it does not count as a viewer."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.seen: list[wire.Status] = []

    def poll(self) -> wire.Status | None:
        raw: Any = self.client.get(wire.status_key(STREAM))
        if raw is None:
            return None
        status = wire.decode(raw)
        assert isinstance(status, wire.Status)
        if not self.seen or status.sent_at > self.seen[-1].sent_at:
            self.seen.append(status)
        return status

    def fresh(self, count: int, *, what: str) -> list[wire.Status]:
        """Wait for ``count`` heartbeats newer than those seen so far; returns them."""
        start = len(self.seen)
        wait_until(lambda: self.poll() and len(self.seen) >= start + count, what=what)
        return self.seen[start:]


def _drain(ws: ClientConnection, *, limit: int = 10_000) -> list[Message]:
    """Everything the client has already received, without waiting for more."""
    got: list[Message] = []
    for _ in range(limit):
        try:
            got.append(recv(ws, timeout=0))
        except TimeoutError:
            return got
    raise AssertionError(f"more than {limit} messages pending")


def _open(stack: contextlib.ExitStack, url: str) -> tuple[ClientConnection, wire.Subscribed]:
    """Connect to ``/ws/<stream>`` (closed with ``stack``) and read through ``hello`` and ``subscribed``."""
    ws = stack.enter_context(connect(url, open_timeout=10))
    hello = recv(ws, timeout=10)
    assert isinstance(hello, wire.Hello)
    got = collect(ws, lambda m: bool(m) and isinstance(m[-1], wire.Subscribed), what="subscribed")
    subscribed = got[-1]
    assert isinstance(subscribed, wire.Subscribed)
    return ws, subscribed


def _subscribers(client: redis.Redis, *, sharded: bool) -> int:
    channel = wire.channel(STREAM)
    reply: Any = client.pubsub_shardnumsub(channel) if sharded else client.pubsub_numsub(channel)
    return int(reply[0][1])


def test_sharded_producer_serves_sharded_gateway_clients_on_demand_and_plain_gateways_hear_nothing(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    key = _StatusKey(client)
    history_key = wire.history_key(STREAM)
    gateway_args = ["--max-age", "0", "--ready-timeout", "1", "--health-check-interval", "1"]
    producer_args = ["--sharded", "--heartbeat-interval", "0.2", "--preview-fps", "5"]
    with contextlib.ExitStack() as stack:
        stack.callback(client.close)
        producer = stack.enter_context(running_producer(redis_server.url, producer_args, env=child_env))
        # Ready means its canary made the SPUBLISH -> SSUBSCRIBE round trip on valkey.
        sgw = stack.enter_context(
            running_gateway(redis_url=redis_server.url, args=[*gateway_args, "--sharded"], wait="ready")
        )
        pgw = stack.enter_context(
            running_gateway(
                redis_url=redis_server.url, args=[*gateway_args, "--offline-after", "1"], wait="ready"
            )
        )

        # No viewer: heartbeats go on, inactive, and nothing is predicted or published.
        wait_until(lambda: (s := key.poll()) is not None and s.state == "online", what="the source online")
        quiet = key.fresh(4, what="heartbeats without viewers")
        assert all(not s.active and s.seq == 0 for s in quiet), quiet
        assert client.xlen(history_key) == 0

        # A client of the plain gateway: a SUBSCRIBE the sharded producer does not count.
        plain_ws, _ = _open(stack, pgw.ws_url + f"/ws/{STREAM}")
        assert _subscribers(client, sharded=False) == 1
        assert _subscribers(client, sharded=True) == 0
        still_quiet = key.fresh(4, what="heartbeats with only a plain subscriber")
        assert all(not s.active and s.seq == 0 for s in still_quiet), still_quiet
        assert client.xlen(history_key) == 0

        # A client of the sharded gateway is a viewer: results, previews and active heartbeats.
        sharded_ws, subscribed = _open(stack, sgw.ws_url + f"/ws/{STREAM}?previews=1")
        assert subscribed.previews
        assert _subscribers(client, sharded=True) == 1
        got = collect(
            sharded_ws,
            lambda m: (
                sum(isinstance(x, wire.Result) for x in m) >= 5
                and any(isinstance(x, bytes) for x in m)
                and any(isinstance(x, wire.Status) and x.active for x in m)
            ),
            what="results, a preview and an active heartbeat from the sharded gateway",
        )
        results = [m for m in got if isinstance(m, wire.Result)]
        assert [r.seq for r in results] == list(range(1, len(results) + 1))
        assert len({r.epoch for r in results}) == 1
        previews = [wire.decode_preview(m) for m in got if isinstance(m, bytes)]
        assert {p.seq for p in previews} <= {r.seq for r in results}

        # Meanwhile the plain gateway heard no heartbeat and no result: it calls the stream offline.
        heard = collect(
            plain_ws,
            lambda m: any(isinstance(x, wire.Status) and x.state == "offline" for x in m),
            what="the plain gateway's offline status",
        )
        heard += _drain(plain_ws)
        assert not [m for m in heard if isinstance(m, wire.Result | bytes)], heard
        # Its only online status is the status key it read at subscribe time, before any viewer.
        online = [m for m in heard if isinstance(m, wire.Status) and m.state == "online"]
        assert all(not s.active and s.seq == 0 for s in online), online
        offline = [m for m in heard if isinstance(m, wire.Status) and m.state == "offline"]
        assert all(s.source.startswith(f"gateway {pgw.id}:") for s in offline), offline

        # The viewer leaves: the producer pauses again and publishes nothing more.
        sharded_ws.close()
        wait_until(lambda: _subscribers(client, sharded=True) == 0, what="the sharded unsubscribe")
        wait_until(lambda: (s := key.poll()) is not None and not s.active, what="an inactive heartbeat")
        key.fresh(1, what="one more heartbeat (an in-flight result lands)")
        settled = key.fresh(3, what="heartbeats while paused")
        assert all(not s.active for s in settled), settled
        assert len({s.seq for s in settled}) == 1
        assert settled[-1].seq >= results[-1].seq
        assert client.xlen(history_key) == settled[-1].seq
        assert producer.process.poll() is None
        assert producer.logs.count("a viewer subscribed: predictor running") == 1, producer.logs
