"""Slow and stalled clients against a real gateway process: nobody else suffers, memory stays bounded.

A stalled client here is a raw TCP socket that completes the WebSocket handshake
with a tiny receive buffer and then stops reading, exactly what a frozen
browser tab or a dead mobile link looks like to the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from typing import TYPE_CHECKING

from websockets.asyncio.client import connect

from framecast import wire
from tests.support.gateway import Collector, FakeProducer, raw_websocket, running_gateway
from tests.support.wait import poll

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

NORMAL_CLIENTS = 200
MESSAGES = 300
PAD = 2000  # bytes of label per result: ~2.1 KB messages


def reached(collectors: list[Collector], count: int) -> bool:
    """Whether every reader has ``count`` results; fails at once, naming why, if one never will."""
    for index, collector in enumerate(collectors):
        if collector.trouble:
            raise AssertionError(
                f"reader {index} at {len(collector.seqs)} results: {', '.join(collector.trouble)}"
            )
    return all(len(c.seqs) >= count for c in collectors)


def read_frames(sock: socket.socket, *, until_seq: int, max_bytes: int, timeout: float = 30.0) -> list[int]:
    """Read server frames from a raw socket until a result with ``until_seq``; returns the result seqs."""
    sock.settimeout(timeout)
    buffer = b""
    seqs: list[int] = []
    total = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and total < max_bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before seq {until_seq}; got {seqs[-5:]}")
        total += len(chunk)
        buffer += chunk
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length, offset = struct.unpack("!H", buffer[2:4])[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
            if len(buffer) < offset + length:
                break
            payload, buffer = buffer[offset : offset + length], buffer[offset + length :]
            if opcode == 1:
                message = wire.decode(payload)
                if isinstance(message, wire.Result):
                    seqs.append(message.seq)
                    if message.seq == until_seq:
                        return seqs
    raise AssertionError(f"seq {until_seq} never came ({total} bytes read); got {seqs[-5:]}")


def drain_until_closed(sock: socket.socket, *, max_bytes: int, timeout: float = 30.0) -> int:
    """Read and discard until the server closes the connection; returns the bytes read."""
    sock.settimeout(timeout)
    total = 0
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ConnectionResetError):
        while time.monotonic() < deadline and total <= max_bytes:
            chunk = sock.recv(65536)
            if not chunk:
                return total
            total += len(chunk)
    if total > max_bytes:
        raise AssertionError(f"read {total} bytes from a client that should have been cut off")
    return total


async def test_stalled_reader_does_not_disturb_200_readers_and_is_closed(redis_server: RedisServer) -> None:
    client_buffer = 64 * 1024
    with running_gateway(
        redis_url=redis_server.url,
        args=[
            "--client-buffer", str(client_buffer), "--send-buffer", "16384", "--max-lag", "2",
            "--send-deadline", "0.25", "--max-age", "0", "--close-timeout", "1",
        ],
        wait="ready",
    ) as gw:  # fmt: skip
        producer = FakeProducer(redis_server.url, "load")
        producer.status(ttl=60)
        collectors: list[Collector] = []
        for _ in range(NORMAL_CLIENTS):
            ws = await connect(gw.ws_url + "/ws/load", open_timeout=20, max_queue=None)
            collectors.append(Collector(ws))
        stalled, head = raw_websocket(gw.port, "/ws/load", rcvbuf=4096)
        assert head.startswith(b"HTTP/1.1 101")
        await poll(
            lambda: gw.metric("framecast_gateway_subscriptions") == NORMAL_CLIENTS + 1, what="all subscribed"
        )

        samples: list[float] = []
        lagging_seen = False
        # Publish in windows the readers keep up with (however slow this machine is), so only the
        # stalled client can ever be behind by more than --client-buffer.
        window = 5
        for seq in range(1, MESSAGES + 1):
            producer.result(pad=PAD)
            if seq % window == 0:
                await poll(
                    lambda seq=seq: reached(collectors, seq - window), what=f"readers to reach {seq - window}"
                )
            if seq % 20 == 0:
                samples.append(
                    await asyncio.to_thread(gw.metric, "framecast_gateway_client_buffer_max_bytes")
                )
                lagging = await asyncio.to_thread(gw.metric, "framecast_gateway_lagging_clients")
                assert lagging <= 1, "only the stalled client may lag"
                lagging_seen = lagging_seen or lagging == 1
        await poll(
            lambda: reached(collectors, MESSAGES),
            timeout=60,
            what="every reader to get everything",
        )
        for collector in collectors:
            assert collector.seqs == list(range(1, MESSAGES + 1)), "every message, in order, to every reader"
        assert lagging_seen, "the stalled client was detected as lagging"
        message_size = len(wire.encode(producer.result(pad=PAD)))
        assert max(samples) <= client_buffer + message_size + 16, "unsent bytes bounded by --client-buffer"
        assert gw.metric("framecast_gateway_dropped_total", {"reason": "conflated"}) > 0

        await poll(
            lambda: gw.metric("framecast_gateway_slow_consumer_closes_total") == 1, what="the 4008 close"
        )
        # It is cut off: what it can still read is bounded by the buffers, then EOF/reset.
        drain_until_closed(stalled, max_bytes=4 * 1024 * 1024)
        await poll(
            lambda: gw.metric("framecast_gateway_connections") == NORMAL_CLIENTS,
            what="the stalled one to be gone",
        )
        stalled.close()
        for collector in collectors:
            await collector.close()
        producer.close()


async def test_stalled_clients_memory_is_bounded_and_they_get_the_newest_result(
    redis_server: RedisServer,
) -> None:
    client_buffer = 256 * 1024
    stalled_count, messages, pad = 5, 150, 64 * 1024
    with running_gateway(
        redis_url=redis_server.url,
        args=[
            "--client-buffer", str(client_buffer), "--send-buffer", "16384", "--max-lag", "120",
            "--max-age", "0",
        ],
        wait="ready",
    ) as gw:  # fmt: skip
        producer = FakeProducer(redis_server.url, "big")
        producer.status(ttl=60)
        reader = Collector(await connect(gw.ws_url + "/ws/big", max_size=None, max_queue=None))
        stalled = [raw_websocket(gw.port, "/ws/big", rcvbuf=4096)[0] for _ in range(stalled_count)]
        await poll(
            lambda: gw.metric("framecast_gateway_subscriptions") == stalled_count + 1, what="all subscribed"
        )
        rss_before = gw.rss_bytes()

        def publish() -> None:
            for _ in range(messages):
                producer.result(pad=pad)
                time.sleep(0.005)

        await asyncio.to_thread(publish)
        # The reader may itself fall behind at this rate: then it too gets the newest, in order.
        await poll(lambda: messages in reader.seqs, timeout=60, what="the reader to get the newest result")
        assert reader.seqs == sorted(set(reader.seqs))
        await poll(
            lambda: gw.metric("framecast_gateway_lagging_clients") == stalled_count,
            what="only the stalled lagging",
        )
        message_size = len(wire.encode(producer.result(pad=pad)))
        assert gw.metric("framecast_gateway_client_buffer_max_bytes") <= client_buffer + message_size + 16
        growth = gw.rss_bytes() - rss_before
        unbounded = stalled_count * messages * message_size  # what buffering everything would hold
        assert growth < 16 * 1024 * 1024 < unbounded / 2, f"RSS grew {growth} bytes"

        # A stalled client that wakes up catches up to the present, not through the backlog.
        newest = producer.seq
        seqs = read_frames(stalled[0], until_seq=newest, max_bytes=64 * 1024 * 1024)
        assert seqs == sorted(set(seqs)), "in order, no duplicates"
        assert seqs[-1] == newest and len(seqs) < newest
        for sock in stalled:
            sock.close()
        await reader.close()
        producer.close()
