"""Capture age at write time versus at fan-out entry, against a real gateway process.

A raw client stops reading until the gateway counts it as lagging, stays stalled for a while,
then reads again: the newest result held for it is written only then, so the write-time
histogram (``framecast_gateway_write_latency_seconds``) must show the stall, while the
entry-time one (``framecast_gateway_capture_to_fanout_seconds``) cannot.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tests.integration.test_gateway_slow import read_frames
from tests.support.gateway import FakeProducer, GatewayProc, raw_websocket, running_gateway
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

STREAM = "lag"
STALL = 1.5  # seconds the client does not read once lagging: above the 1.0 bucket
PAD = 16 * 1024
WRITE = "framecast_gateway_write_latency_seconds"
ENTRY = "framecast_gateway_capture_to_fanout_seconds"


def _above(gw: GatewayProc, name: str, le: str, labels: dict[str, str] | None = None) -> float:
    """Observations of histogram ``name`` above bucket ``le``."""
    extra = labels or {}
    total = gw.metric(name + "_count", extra)
    return total - gw.metric(name + "_bucket", {**extra, "le": le})


def test_write_time_histogram_shows_a_lagging_clients_delay_and_entry_time_does_not(
    redis_server: RedisServer,
) -> None:
    args = ["--client-buffer", "65536", "--send-buffer", "16384", "--max-lag", "60", "--max-age", "0"]
    with running_gateway(redis_url=redis_server.url, args=args, wait="ready") as gw:
        producer = FakeProducer(redis_server.url, STREAM)
        producer.status(ttl=60)
        stalled, head = raw_websocket(gw.port, f"/ws/{STREAM}", rcvbuf=4096)
        try:
            assert head.startswith(b"HTTP/1.1 101"), head
            wait_until(lambda: gw.metric("framecast_gateway_subscriptions") == 1, what="subscribed")
            for _ in range(200):  # bounded: 200 x 16 KiB is far beyond every buffer on the way
                producer.result(pad=PAD)
                if gw.metric("framecast_gateway_lagging_clients") == 1:
                    break
            assert gw.metric("framecast_gateway_lagging_clients") == 1, "the client never lagged"
            held = producer.result(pad=PAD)  # held for the lagging client, written when it reads
            wait_until(
                lambda: gw.metric("framecast_gateway_messages_total", {"kind": "result"}) >= held.seq,
                what="the held result reached the fan-out",
            )
            assert _above(gw, WRITE, "1.0", {"kind": "result"}) == 0, "nothing late was written yet"
            # The stimulus, not a wait for an absence: the client is frozen for this long.
            time.sleep(STALL)
            resumed = time.time()
            read_frames(stalled, until_seq=held.seq, max_bytes=64 * 1024 * 1024)
        finally:
            stalled.close()
            producer.close()

        stalled_for = resumed - held.captured_at
        assert stalled_for >= STALL
        # The held result was written after the client read again: at least stalled_for old.
        assert _above(gw, WRITE, "1.0", {"kind": "result"}) >= 1
        assert gw.metric(WRITE + "_sum", {"kind": "result"}) >= stalled_for
        # At entry every result was fresh: the stall is invisible there.
        assert gw.metric(ENTRY + "_count") >= 1
        assert _above(gw, ENTRY, "1.0") == 0
