"""Redis Cluster end to end: real ``--cluster`` producers and gateway on a real 3-primary valkey cluster.

Two streams whose hash tags land on different primaries: each producer's MULTI (XADD + SPUBLISH)
goes to its stream's shard, the gateway SSUBSCRIBEs each stream on the shard owning it (one
connection and one canary per primary), and a WebSocket client gets both streams, live and
resumed from the cluster history.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.crc import key_slot
from websockets.sync.client import ClientConnection, connect

from framecast import wire
from tests.support.cluster import Cluster, running_cluster
from tests.support.gateway import running_gateway
from tests.support.producer import running_producer
from tests.support.wait import wait_until

Message = wire.TextMessage | bytes


def _streams_on_two_shards(cluster: Cluster) -> tuple[str, str]:
    """Two stream names whose channels hash to slots of different primaries."""
    first = "cam-0"
    owner = cluster.owner(key_slot(wire.channel(first).encode()))
    for n in range(1, 1000):
        name = f"cam-{n}"
        if cluster.owner(key_slot(wire.channel(name).encode())) != owner:
            return first, name
    raise AssertionError("no two stream names on different shards in 1000 tries")


def _recv(ws: ClientConnection, *, timeout: float) -> Message:
    data = ws.recv(timeout=timeout)
    return data if isinstance(data, bytes) else wire.decode(data)


def _collect(
    ws: ClientConnection,
    done: Callable[[list[Message]], bool],
    *,
    what: str,
    timeout: float = 20.0,
    limit: int = 10_000,
) -> list[Message]:
    """Receive until ``done(got)``: bounded in time and count."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    for _ in range(limit):
        if done(got):
            return got
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            got.append(_recv(ws, timeout=remaining))
        except TimeoutError:
            break
    raise AssertionError(f"no {what} within {timeout:.0f} s and {limit} messages; last: {got[-5:]}")


def _results(got: list[Message], stream: str) -> list[wire.Result]:
    return [m for m in got if isinstance(m, wire.Result) and m.stream == stream]


def _shard_subscribers(node: redis.Redis, channel: str) -> int:
    reply: Any = node.pubsub_shardnumsub(channel)
    return int(reply[0][1])


def test_cluster_spreads_streams_over_shards_and_serves_them_live_and_resumed(
    child_env: dict[str, str],
) -> None:
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(running_cluster())
        one, two = _streams_on_two_shards(cluster)
        owners = {s: cluster.owner(key_slot(wire.channel(s).encode())) for s in (one, two)}
        nodes = {port: cluster.node(port) for port in cluster.ports}
        for node in nodes.values():
            stack.callback(node.close)

        producers = []
        for stream in (one, two):
            args = ["--cluster", "--stream", stream, "--heartbeat-interval", "0.2", "--preview-fps", "0"]
            producers.append(stack.enter_context(running_producer(cluster.url, args, env=child_env)))
        # Ready means a canary made the SPUBLISH -> SSUBSCRIBE round trip on every primary.
        gateway = stack.enter_context(
            running_gateway(
                redis_url=cluster.url,
                args=["--cluster", "--ready-timeout", "1", "--health-check-interval", "1"],
                wait="ready",
            )
        )

        # /streams scans every primary: both producers' status keys, on different shards.
        def listed() -> bool:
            status, body = gateway.get_json("/streams")
            return status == 200 and isinstance(body, list) and {s["stream"] for s in body} == {one, two}

        wait_until(listed, what=f"/streams listing {one} and {two}")

        ws = stack.enter_context(connect(gateway.ws_url + "/ws", open_timeout=10))
        assert isinstance(_recv(ws, timeout=10), wire.Hello)
        for stream in (one, two):
            ws.send(wire.encode(wire.Subscribe(stream=stream)).decode())
        got = _collect(
            ws,
            lambda m: all(len(_results(m, s)) >= 5 for s in (one, two)),
            what=f"5 results of each of {one} and {two}",
        )
        assert not [m for m in got if isinstance(m, wire.Gap | wire.Reset | wire.Error)], got
        for stream in (one, two):
            results = _results(got, stream)
            seqs = [r.seq for r in results]
            # Results at all: the producer (on demand) saw the gateway with SHARDNUMSUB on the owning
            # shard. No gap: live results follow each other from the first one received.
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (stream, seqs)
            assert len({r.epoch for r in results}) == 1

        # Each stream's channel lives on its own shard: subscribed there, unknown elsewhere.
        assert owners[one] != owners[two]
        for stream, owner in owners.items():
            assert _shard_subscribers(nodes[owner], wire.channel(stream)) == 1, stream
            other = next(p for p in cluster.ports if p != owner)
            assert _shard_subscribers(nodes[other], wire.channel(stream)) == 0, stream
            assert nodes[owner].xlen(wire.history_key(stream)) >= 5
        assert gateway.get("/readyz")[0] == 200

        # A client resuming from the cluster history: every result after ``since``, no gap, no dup.
        first = _results(got, one)
        since = first[1]
        resumed = stack.enter_context(connect(gateway.ws_url + "/ws", open_timeout=10))
        assert isinstance(_recv(resumed, timeout=10), wire.Hello)
        resumed.send(wire.encode(wire.Subscribe(stream=one, since=since.seq, epoch=since.epoch)).decode())
        again = _collect(
            resumed,
            lambda m: any(r.seq > first[-1].seq + 2 for r in _results(m, one)),
            what=f"{one} replayed and live again",
        )
        assert not [m for m in again if isinstance(m, wire.Gap | wire.Reset | wire.Error)], again
        seqs = [r.seq for r in _results(again, one)]
        assert seqs == list(range(since.seq + 1, since.seq + 1 + len(seqs))), seqs
        assert gateway.alive()
        assert "Traceback" not in gateway.logs, gateway.logs
        for producer in producers:
            assert producer.process.poll() is None
            assert "Traceback" not in producer.logs and "unreachable" not in producer.logs, producer.logs
