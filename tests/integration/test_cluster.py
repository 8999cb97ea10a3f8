"""Redis Cluster end to end: real ``--cluster`` producers and gateway on a real 3-primary valkey cluster.

Two streams whose hash tags land on different primaries: each producer's MULTI (XADD + SPUBLISH)
goes to its stream's shard, the gateway SSUBSCRIBEs each stream on the shard owning it (one
connection and one canary per primary), and a WebSocket client gets both streams, live and
resumed from the cluster history.

Video on the cluster: the producer encodes only once a gateway SSUBSCRIBEs the video channel on
its shard (SHARDNUMSUB there, shown by the encoder metric), SPUBLISHes every frame there, and a
viewer joining mid-group starts at the group's keyframe; FFmpeg decodes every frame.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import redis
from redis.crc import key_slot
from websockets.sync.client import ClientConnection, connect

from framecast import wire
from framecast.local.embedded import free_port
from tests.support.cluster import Cluster, running_cluster
from tests.support.gateway import running_gateway
from tests.support.producer import metrics, running_producer
from tests.support.video import decode
from tests.support.wait import wait_until
from tests.support.wsread import Message, collect, recv


def _streams_on_two_shards(cluster: Cluster) -> tuple[str, str]:
    """Two stream names whose channels hash to slots of different primaries."""
    first = "cam-0"
    owner = cluster.owner(key_slot(wire.channel(first).encode()))
    for n in range(1, 1000):
        name = f"cam-{n}"
        if cluster.owner(key_slot(wire.channel(name).encode())) != owner:
            return first, name
    raise AssertionError("no two stream names on different shards in 1000 tries")


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
        assert isinstance(recv(ws, timeout=10), wire.Hello)
        for stream in (one, two):
            ws.send(wire.encode(wire.Subscribe(stream=stream)).decode())
        got = collect(
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
        assert isinstance(recv(resumed, timeout=10), wire.Hello)
        resumed.send(wire.encode(wire.Subscribe(stream=one, since=since.seq, epoch=since.epoch)).decode())
        again = collect(
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


def _video(got: list[Message]) -> list[wire.VideoFrame]:
    return [wire.decode_video(m) for m in got if isinstance(m, bytes) and wire.is_video(m)]


def _open_video(stack: contextlib.ExitStack, url: str) -> ClientConnection:
    """A video viewer of ``url`` (closed with ``stack``), read through ``subscribed``.

    Its frames are read off the socket as they come, even while the test reads another client: a
    client that stops reading is skipped to the next keyframe as lagging (a gap in its frames).
    """
    ws = stack.enter_context(connect(url, open_timeout=10, max_queue=None))
    got = collect(ws, lambda m: bool(m) and isinstance(m[-1], wire.Subscribed), what="subscribed")
    subscribed = got[-1]
    assert isinstance(subscribed, wire.Subscribed) and subscribed.video, subscribed
    return ws


def test_cluster_video_is_encoded_on_demand_and_a_joiner_mid_group_starts_at_the_gop_keyframe(
    child_env: dict[str, str],
) -> None:
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(running_cluster())
        # A stream whose channels live on a shard other than the seed node's: every SPUBLISH,
        # SSUBSCRIBE and SHARDNUMSUB has to be routed by slot to be heard at all.
        stream = next(
            f"cam-{n}"
            for n in range(1000)
            if cluster.owner(key_slot(wire.video_channel(f"cam-{n}").encode())) != cluster.ports[0]
        )
        video_channel = wire.video_channel(stream)
        owner = cluster.owner(key_slot(video_channel.encode()))
        nodes = {port: cluster.node(port) for port in cluster.ports}
        for node in nodes.values():
            stack.callback(node.close)
        port = free_port()
        args = [
            "--cluster", "--stream", stream, "--metrics-port", str(port), "--heartbeat-interval", "0.2",
            "--preview-fps", "0", "--max-fps", "15", "--video-codec", "vp8", "--video-keyframe-interval", "2",
        ]  # fmt: skip
        producer = stack.enter_context(running_producer(cluster.url, args, env=child_env))
        gateway = stack.enter_context(
            running_gateway(
                redis_url=cluster.url,
                args=["--cluster", "--ready-timeout", "1", "--health-check-interval", "1"],
                wait="ready",
            )
        )
        url = gateway.ws_url + f"/ws/{stream}"

        # A viewer of the results only: the producer predicts and publishes, and encodes nothing.
        # (Its frames are read off the socket as they come, even while the test reads other
        # clients: a client that stops reading is closed as lagging, and its demand with it.)
        results_ws = stack.enter_context(connect(url, open_timeout=10, max_queue=None))
        collect(results_ws, lambda m: len(_results(m, stream)) >= 10, what=f"10 results of {stream}")
        wait_until(lambda: metrics(port)["framecast_producer_results_published_total"] >= 30)
        quiet = metrics(port)
        assert quiet["framecast_producer_video_frames_total"] == 0
        assert quiet["framecast_producer_video_encoding"] == 0
        assert _shard_subscribers(nodes[owner], video_channel) == 0

        # A video viewer: the gateway SSUBSCRIBEs the video channel on its shard, the producer
        # sees it there (SHARDNUMSUB) and encodes; the viewer starts at a keyframe.
        first = _open_video(stack, url + "?video=1")
        seen = _video(
            collect(
                first,
                lambda m: (v := _video(m)) != [] and v[0].key and len(v) >= 4 and not v[-1].key,
                what="a keyframe and three of its deltas",
            )
        )
        group = seen[-1].group

        # A viewer joining mid-group (3 frames into a group of 2 s: the next keyframe is about
        # 1.7 s away) starts at once at that group's keyframe (the gateway's GOP), frames the
        # first viewer already had, not at the next keyframe; it decodes every frame from there.
        second = _open_video(stack, url + "?video=1")
        joined = _video(collect(second, lambda m: len(_video(m)) >= 20, what="20 frames for the joiner"))
        assert joined[0].key and joined[0].seq <= group, (joined[0], group)
        assert seen[0].key and metrics(port)["framecast_producer_video_encoding"] == 1
        assert all(_shard_subscribers(nodes[p], video_channel) == 0 for p in cluster.ports if p != owner)
        seen += _video(collect(first, lambda m: len(_video(m)) >= 5, what="5 more frames"))
        for frames in (seen, joined):
            for a, b in itertools.pairwise(frames):
                assert (b.epoch, b.seq) == (a.epoch, a.seq + 1), "a frame was lost or reordered"
                assert b.group == (b.seq if b.key else a.group)
            assert len(decode(frames)) == len(frames)  # FFmpeg: one picture per frame, no error
        assert _shard_subscribers(nodes[owner], video_channel) == 1  # one per gateway, not per client

        # Both video viewers leave: the gateway gives the channel up and the encoder stops, while
        # the results viewer keeps the predictions going (30 more published, none encoded).
        first.close()
        second.close()
        wait_until(lambda: _shard_subscribers(nodes[owner], video_channel) == 0, what="the SUNSUBSCRIBE")
        wait_until(lambda: metrics(port)["framecast_producer_video_encoding"] == 0, what="the encoder stop")
        stopped = metrics(port)
        wait_until(
            lambda: (
                metrics(port)["framecast_producer_results_published_total"]
                >= stopped["framecast_producer_results_published_total"] + 30
            ),
            what="30 more results",
        )
        assert (
            metrics(port)["framecast_producer_video_frames_total"]
            == stopped["framecast_producer_video_frames_total"]
        )
        assert gateway.alive() and producer.process.poll() is None
        assert "Traceback" not in gateway.logs, gateway.logs
        assert "Traceback" not in producer.logs, producer.logs
