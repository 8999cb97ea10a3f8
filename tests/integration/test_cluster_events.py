"""Events on Redis Cluster: a real ``--cluster`` producer with a line, a real gateway, real valkey.

Events have their own history key beside the results' (``wire.events_key``), and on a cluster the
producer's MULTI writes both with the SPUBLISH: the keys share the stream's hash tag, so they land
on the shard that owns its channel. An events-only client gets every crossing of the scripted
``line`` scene live, and a client resuming from an event's ``seq`` gets the rest from the cluster's
events history, with no gap and no duplicate.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from redis.crc import key_slot
from websockets.sync.client import connect

from framecast import wire
from producer import scenes
from tests.support.cluster import running_cluster
from tests.support.gateway import running_gateway
from tests.support.producer import running_producer
from tests.support.wsread import Message, collect

STREAM = "door"


def _events(got: list[Message]) -> list[wire.Event]:
    return [m for m in got if isinstance(m, wire.Event)]


def test_events_on_a_cluster_reach_an_events_only_client_and_resume_from_the_shard(
    child_env: dict[str, str], tmp_path: Path
) -> None:
    zones = tmp_path / "line.toml"
    zones.write_text(scenes.SCENES["line"].layout)
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(running_cluster())
        owner = cluster.node(cluster.owner(key_slot(wire.channel(STREAM).encode())))
        stack.callback(owner.close)
        args = [
            "--cluster",
            "--stream",
            STREAM,
            "--source",
            "synthetic:line",
            "--detector",
            "producer.scenes:Truth",
            "--zones",
            str(zones),
            "--max-fps",
            "15",
            "--preview-fps",
            "0",
        ]
        producer = stack.enter_context(running_producer(cluster.url, args, env=child_env))
        gateway = stack.enter_context(
            running_gateway(
                redis_url=cluster.url, args=["--cluster", "--health-check-interval", "1"], wait="ready"
            )
        )

        live = stack.enter_context(connect(gateway.ws_url + f"/ws/{STREAM}?kinds=event", open_timeout=10))
        got = collect(live, lambda m: len(_events(m)) >= 3, what="three crossings", timeout=60)
        events = _events(got)
        # Events only: the producer published a result per frame meanwhile, and none came.
        assert not [m for m in got if isinstance(m, wire.Result | wire.Gap | wire.Reset | wire.Error)], got
        assert {e.kind for e in events} == {"cross"}
        seqs = [e.seq for e in events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert len({e.epoch for e in events}) == 1
        # The events history lives on the shard that owns the stream's channel.
        assert owner.xlen(wire.events_key(STREAM)) >= seqs[-1]

        first = events[0]
        resumed = stack.enter_context(connect(gateway.ws_url + "/ws", open_timeout=10))
        assert isinstance(wire.decode(resumed.recv(timeout=10)), wire.Hello)
        subscribe = wire.Subscribe(
            stream=STREAM, kinds=("event",), event_since=first.seq, event_epoch=first.epoch
        )
        resumed.send(wire.encode(subscribe).decode())
        again = collect(
            resumed,
            lambda m: any(e.seq >= seqs[-1] + 1 for e in _events(m)),
            what="the replay and a live event",
        )
        assert not [m for m in again if isinstance(m, wire.Result | wire.Gap | wire.Reset | wire.Error)], (
            again
        )
        replayed = [e.seq for e in _events(again)]
        assert replayed == list(range(first.seq + 1, first.seq + 1 + len(replayed))), replayed
        assert [(e.seq, e.track, e.direction) for e in _events(again)][: len(events) - 1] == [
            (e.seq, e.track, e.direction) for e in events[1:]
        ]
        assert gateway.alive() and producer.process.poll() is None
        assert "Traceback" not in gateway.logs + producer.logs
