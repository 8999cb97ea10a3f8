"""The fan-out policy, on real websockets connections over loopback (no Redis).

Stalled readers are real clients whose transport stops reading, with small
socket buffers so that a stall fills them after a few kilobytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from framecast import wire
from gateway._wsio import WsSink, raw_send
from gateway.fanout import Fanout
from gateway.policy import Limits
from tests.support.wait import poll
from tests.unit.policy_fakes import Recorder

STREAM = "cam1"
EPOCH = "e1"
SMALL_BUFFER = 4096


_LIMITS = {field for field in Limits.__dataclass_fields__}


def make(**options: Any) -> Fanout:
    """A fan-out with these limits (staleness off unless asked: max_age 0) and driver options."""
    limits = {"max_age": 0.0, **{k: v for k, v in options.items() if k in _LIMITS}}
    rest = {k: v for k, v in options.items() if k not in _LIMITS}
    return Fanout(Limits(**limits), **rest)


def result(seq: int, *, epoch: str = EPOCH, captured_at: float | None = None, pad: int = 0) -> bytes:
    detections = (wire.Detection(label="x" * pad, confidence=0.5, box=(0.0, 0.0, 1.0, 1.0)),) if pad else ()
    return wire.encode(
        wire.Result(
            stream=STREAM,
            epoch=epoch,
            seq=seq,
            frame=seq,
            captured_at=time.time() if captured_at is None else captured_at,
            published_at=time.time(),
            width=10,
            height=10,
            detections=detections,
        )
    )


@dataclass
class Server:
    port: int
    accepted: asyncio.Queue[ServerConnection]

    async def next(self) -> ServerConnection:
        return await asyncio.wait_for(self.accepted.get(), 10)


@contextlib.asynccontextmanager
async def fan_server(
    fanout: Fanout,
    *,
    previews: Callable[[ServerConnection], bool] = lambda _: False,
    compression: str | None = None,
) -> AsyncIterator[Server]:
    """A websockets server adding every connection to ``fanout`` on STREAM, with small send buffers."""
    accepted: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        wants = ws.request is not None and "previews" in ws.request.path
        fanout.add(STREAM, ws, previews=wants or previews(ws))
        fanout.go_live(STREAM, ws)
        await accepted.put(ws)
        try:
            await ws.wait_closed()
        finally:
            fanout.discard(ws)

    # A long library close timeout: only the fan-out's own deadline may cut a connection in these tests.
    async with serve(handler, "127.0.0.1", 0, compression=compression, close_timeout=60) as server:
        yield Server(server.sockets[0].getsockname()[1], accepted)
    await fanout.aclose()


async def client(
    port: int, *, path: str = "/", small: bool = False, compression: str | None = None
) -> ClientConnection:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return await connect(f"ws://127.0.0.1:{port}{path}", sock=sock, compression=compression, max_queue=None)


async def until(predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition") -> None:
    """Bounded polling: a deadline and a count."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.001) + 1):
        if predicate():
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


class Reader:
    """Collects a client's messages in a task."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[str | bytes] = []
        self.closed: ConnectionClosed | None = None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for message in self.ws:
                self.messages.append(message)
        except ConnectionClosed as exc:
            self.closed = exc

    def seqs(self) -> list[int]:
        out = []
        for m in self.messages:
            if isinstance(m, str):
                decoded = wire.decode(m)
                if isinstance(decoded, wire.Result):
                    out.append(decoded.seq)
        return out

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.ws.close()


async def test_every_client_gets_every_message_in_order_with_identical_bytes() -> None:
    fanout = make(client_buffer=1 << 20)
    async with fan_server(fanout) as server:
        readers = [Reader(await client(server.port)) for _ in range(5)]
        for _ in readers:
            await server.next()
        sent = [result(seq) for seq in range(1, 51)]
        for data in sent:
            fanout.deliver(STREAM, data)
        await until(lambda: all(len(r.messages) == 50 for r in readers), what="50 messages each")
        for reader in readers:
            assert [m.encode() if isinstance(m, str) else m for m in reader.messages] == sent
        assert fanout.observer.deliveries == 250
        assert fanout.observer.messages["result"] == 50
        for reader in readers:
            await reader.stop()


@pytest.mark.parametrize("raw", [True, False], ids=["raw-socket-send", "transport-only"])
async def test_partial_writes_keep_every_byte_in_order_on_both_write_paths(raw: bool) -> None:
    """A reader that pauses makes the kernel take part of a frame: the rest queues, nothing overtakes it."""
    fanout = make(client_buffer=8 << 20, raw_send=raw)
    async with fan_server(fanout) as server:
        paused_ws = await client(server.port, small=True)
        paused_server_side = await server.next()
        steady = Reader(await client(server.port))
        await server.next()
        sink = fanout.policy.sink(paused_server_side)
        assert isinstance(sink, WsSink)
        assert sink.raw is raw, "the raw path is taken exactly when asked for"
        paused_ws.transport.pause_reading()
        sent = [result(seq, pad=3000) for seq in range(1, 201)]
        # Until the small socket buffers fill, frames go out raw; then the transport holds a remainder.
        for data in sent[:100]:
            fanout.deliver(STREAM, data)
        queued = paused_server_side.transport.get_write_buffer_size
        await poll(lambda: queued() > 0, what="a queued remainder")
        # These arrive while the transport holds bytes: they must queue behind them, never go raw.
        for data in sent[100:]:
            fanout.deliver(STREAM, data)
        assert not fanout.is_lagging(paused_server_side)
        paused = Reader(paused_ws)
        paused_ws.transport.resume_reading()
        await poll(lambda: len(paused.messages) == len(sent), what="every message after the pause")
        await poll(lambda: len(steady.messages) == len(sent), what="every message at the steady reader")
        for reader in (paused, steady):
            assert [m.encode() if isinstance(m, str) else m for m in reader.messages] == sent
        # Drained: the next message goes out on the empty-buffer path again, still in order.
        await poll(lambda: queued() == 0, what="a drained buffer")
        fanout.deliver(STREAM, result(201))
        await poll(lambda: paused.seqs()[-1:] == [201], what="a message after draining")
        await paused.stop()
        await steady.stop()


async def test_compressed_and_plain_clients_choose_their_write_path() -> None:
    """Deflate clients stay on websockets' path (per-connection compression), plain ones go raw."""
    fanout = make()
    async with fan_server(fanout, compression="deflate") as server:
        deflated = await client(server.port, compression="deflate")
        deflated_sink = fanout.policy.sink(await server.next())
        plain = await client(server.port)
        plain_sink = fanout.policy.sink(await server.next())
        assert isinstance(deflated_sink, WsSink) and isinstance(plain_sink, WsSink)
        assert not deflated_sink.shared and not deflated_sink.raw
        assert plain_sink.shared and plain_sink.raw
        await deflated.close()
        await plain.close()


def test_a_transport_without_a_socket_of_its_own_gets_the_transport_path() -> None:
    """uvloop's transports (and TLS ones) have no ``_sock``: no raw path may be taken."""

    class NoSocket(asyncio.Transport):
        pass

    class Datagram(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    assert raw_send(NoSocket()) is None
    datagram = Datagram()
    try:
        assert raw_send(datagram) is None
    finally:
        datagram._sock.close()


async def test_malformed_message_is_dropped_for_everyone_and_counted() -> None:
    fanout = make()
    async with fan_server(fanout) as server:
        reader = Reader(await client(server.port))
        await server.next()
        assert fanout.deliver(STREAM, b"not json") is None
        assert fanout.deliver(STREAM, b'{"v":1,"type":"result"}') is None
        assert fanout.deliver(STREAM, result(1)) is not None
        await until(lambda: len(reader.messages) == 1, what="the valid message")
        assert reader.seqs() == [1]
        assert fanout.observer.drops["malformed"] == 2
        await reader.stop()


async def test_stale_messages_are_dropped_by_capture_time() -> None:
    now = [1000.0]
    fanout = make(max_age=2.0, clock=lambda: now[0])
    async with fan_server(fanout) as server:
        readers = [Reader(await client(server.port)) for _ in range(3)]
        for _ in readers:
            await server.next()
        fanout.deliver(STREAM, result(1, captured_at=999.0))  # 1 s old: sent
        fanout.deliver(STREAM, result(2, captured_at=997.5))  # 2.5 s old: stale
        now[0] = 1010.0
        fanout.deliver(STREAM, result(3, captured_at=1009.5))  # sent
        # The stale one is replaced by one `gap` notice, in its place, so a client can resume.
        await until(lambda: all(len(r.messages) == 3 for r in readers), what="three messages each")
        assert all(r.seqs() == [1, 3] for r in readers)
        assert all(wire.decode(r.messages[1]) == wire.Gap(stream=STREAM, reason="stale") for r in readers)
        assert fanout.observer.drops["stale"] == 3  # one message, three clients
        for reader in readers:
            await reader.stop()


async def test_stalled_client_is_conflated_to_the_newest_while_others_get_everything() -> None:
    fanout = make(client_buffer=16 * 1024, max_lag=60.0)
    async with fan_server(fanout) as server:
        normal = Reader(await client(server.port))
        await server.next()
        stalled_ws = await client(server.port, small=True)
        stalled_server_side = await server.next()
        stalled_ws.transport.pause_reading()
        total = 400
        payload = 1000
        for seq in range(1, total + 1):
            fanout.deliver(STREAM, result(seq, pad=payload))
            await until(lambda seq=seq: len(normal.messages) == seq, what=f"normal client to get {seq}")
        assert normal.seqs() == list(range(1, total + 1))
        assert fanout.is_lagging(stalled_server_side)
        assert fanout.lagging == 1
        assert fanout.observer.drops["conflated"] > 0
        # Memory bound: the stalled client's unsent bytes never exceed the limit plus one message.
        unsent = stalled_server_side.transport.get_write_buffer_size()
        assert unsent <= fanout.limits.client_buffer + payload + 512

        stalled = Reader(stalled_ws)
        stalled_ws.transport.resume_reading()
        await until(lambda: total in stalled.seqs(), what="the newest message after the stall")
        seqs = stalled.seqs()
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "in order, no duplicates"
        assert seqs[-1] == total
        assert len(seqs) < total, "older messages were conflated away"
        await until(lambda: not fanout.is_lagging(stalled_server_side), what="the client to be live again")
        # Back on the synchronous path: the next message is delivered directly.
        fanout.deliver(STREAM, result(total + 1))
        await until(lambda: total + 1 in stalled.seqs(), what="a live message after catching up")
        await stalled.stop()
        await normal.stop()


async def test_client_lagging_longer_than_max_lag_is_closed_with_4008() -> None:
    fanout = make(client_buffer=8 * 1024, max_lag=0.3, send_deadline=0.05, close_timeout=30.0)
    async with fan_server(fanout) as server:
        normal = Reader(await client(server.port))
        await server.next()
        stalled_ws = await client(server.port, small=True)
        await server.next()
        stalled_ws.transport.pause_reading()
        for seq in itertools.count(1):
            assert seq < 5000, "the stalled client was never closed"
            fanout.deliver(STREAM, result(seq, pad=500))
            if fanout.observer.slow_closes:
                break
            await asyncio.sleep(0.005)
        # The close frame waits behind the unsent data: read everything, then the close.
        stalled = Reader(stalled_ws)
        stalled_ws.transport.resume_reading()
        await until(lambda: stalled.closed is not None, what="the close")
        assert stalled.closed is not None and stalled.closed.rcvd is not None
        assert stalled.closed.rcvd.code == wire.CLOSE_SLOW_CONSUMER
        assert stalled.closed.rcvd.reason == "slow consumer"
        assert fanout.observer.slow_closes == 1
        # The reading client was never affected.
        assert normal.closed is None
        assert normal.seqs() == list(range(1, len(normal.seqs()) + 1))
        await until(lambda: fanout.clients(STREAM) == 1, what="the closed client to be forgotten")
        await normal.stop()


async def test_stalled_client_whose_close_cannot_get_through_is_aborted() -> None:
    fanout = make(client_buffer=8 * 1024, max_lag=0.2, send_deadline=0.05, close_timeout=0.2)
    async with fan_server(fanout) as server:
        stalled_ws = await client(server.port, small=True)
        server_side = await server.next()
        stalled_ws.transport.pause_reading()
        for seq in itertools.count(1):
            assert seq < 5000, "the stalled client was never closed"
            fanout.deliver(STREAM, result(seq, pad=500))
            if fanout.observer.slow_closes:
                break
            await asyncio.sleep(0.005)
        await asyncio.wait_for(server_side.wait_closed(), 10)
        assert server_side.state is State.CLOSED
        await until(lambda: fanout.clients(STREAM) == 0, what="the aborted client to be forgotten")
        stalled_ws.transport.abort()


async def test_joining_client_gets_buffered_live_messages_after_its_replay_without_duplicates() -> None:
    fanout = make()
    accepted: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        fanout.add(STREAM, ws, joining=True)
        await accepted.put(ws)
        try:
            await ws.wait_closed()
        finally:
            fanout.discard(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None) as srv:
        port = srv.sockets[0].getsockname()[1]
        reader = Reader(await connect(f"ws://127.0.0.1:{port}", compression=None))
        server_side = await asyncio.wait_for(accepted.get(), 10)
        for seq in range(1, 6):
            fanout.deliver(STREAM, result(seq))
        fanout.announce(STREAM, wire.encode(wire.Gap(stream=STREAM)))
        fanout.deliver(STREAM, result(1, epoch="e2"))  # the producer restarted meanwhile
        await asyncio.sleep(0.05)
        assert reader.messages == [], "nothing is sent while joining"
        # The replay (sent by the caller) covered up to seq 3.
        for seq in (2, 3):
            await server_side.send(result(seq), text=True)
        fanout.go_live(STREAM, server_side, epoch=EPOCH, seq=3)
        fanout.deliver(STREAM, result(2, epoch="e2"))
        await until(lambda: len(reader.messages) == 7, what="replay, buffered and live messages")
        decoded = [wire.decode(m) for m in reader.messages]
        kinds = [(type(m).__name__, getattr(m, "epoch", None), getattr(m, "seq", None)) for m in decoded]
        assert kinds == [
            ("Result", EPOCH, 2),
            ("Result", EPOCH, 3),
            ("Result", EPOCH, 4),
            ("Result", EPOCH, 5),
            ("Gap", None, None),
            ("Result", "e2", 1),
            ("Result", "e2", 2),
        ]
        await reader.stop()
    await fanout.aclose()


async def test_previews_go_only_to_clients_that_asked() -> None:
    fanout = make()
    async with fan_server(fanout) as server:
        plain = Reader(await client(server.port))
        await server.next()
        viewer = Reader(await client(server.port, path="/previews"))
        await server.next()
        preview = wire.encode_preview(
            wire.Preview(
                stream=STREAM,
                epoch=EPOCH,
                seq=1,
                frame=1,
                captured_at=time.time(),
                width=4,
                height=4,
                jpeg=b"\xff\xd8jpeg\xff\xd9",
            )
        )
        fanout.deliver_preview(STREAM, preview)
        fanout.deliver(STREAM, result(1))
        await until(lambda: len(viewer.messages) == 2 and len(plain.messages) == 1, what="deliveries")
        assert viewer.messages[0] == preview and isinstance(viewer.messages[0], bytes)
        assert plain.seqs() == [1] and viewer.seqs() == [1]
        await plain.stop()
        await viewer.stop()


@pytest.mark.parametrize("mixed", [False, True])
async def test_compressed_clients_get_the_same_messages(mixed: bool) -> None:
    fanout = make()
    async with fan_server(fanout, compression="deflate") as server:
        deflated = Reader(await client(server.port, compression="deflate"))
        deflated_side = await server.next()
        assert deflated_side.protocol.extensions, "permessage-deflate was negotiated"
        readers = [deflated]
        if mixed:
            readers.append(Reader(await client(server.port, compression=None)))
            assert not (await server.next()).protocol.extensions
        sent = [result(seq, pad=200) for seq in range(1, 21)]
        for data in sent:
            fanout.deliver(STREAM, data)
        await until(lambda: all(len(r.messages) == 20 for r in readers), what="20 messages each")
        for reader in readers:
            assert [m.encode() if isinstance(m, str) else m for m in reader.messages] == sent
            await reader.stop()


async def test_remove_and_discard_stop_delivery() -> None:
    fanout = make()
    async with fan_server(fanout) as server:
        a = Reader(await client(server.port))
        a_side = await server.next()
        b = Reader(await client(server.port))
        await server.next()
        fanout.remove(STREAM, a_side)
        assert fanout.clients(STREAM) == 1
        fanout.deliver(STREAM, result(1))
        await until(lambda: b.seqs() == [1], what="b's message")
        await asyncio.sleep(0.05)
        assert a.seqs() == []
        assert fanout.subscriptions() == 1
        await a.stop()
        await b.stop()


async def test_big_audiences_are_served_in_slices_in_order_and_leavers_are_skipped() -> None:
    fanout = make(chunk=2)
    async with fan_server(fanout) as server:
        readers, sides = [], []
        for _ in range(6):
            readers.append(Reader(await client(server.port)))
            sides.append(await server.next())
        for seq in range(1, 6):  # one in flight, four waiting: none shed
            fanout.deliver(STREAM, result(seq))
        # Only the first slice of each message was written synchronously; the last client leaves now.
        fanout.remove(STREAM, sides[5])
        await until(lambda: all(len(r.messages) == 5 for r in readers[:5]), what="five messages each")
        for reader in readers[:5]:
            assert reader.seqs() == list(range(1, 6))
        await asyncio.sleep(0.05)
        assert readers[5].seqs() == [], "no slice wrote to a client that had left"
        assert fanout.observer.deliveries == 25
        for reader in readers:
            await reader.stop()


async def test_a_slice_ends_when_its_time_budget_is_spent() -> None:
    """With a budget no write fits in, a slice writes one group of 16 clients and yields to the loop."""
    fanout = make(chunk=0, slice_time=1e-9)
    async with fan_server(fanout) as server:
        readers, sides = [], []
        for _ in range(40):
            readers.append(Reader(await client(server.port)))
            sides.append(await server.next())
        fanout.deliver(STREAM, result(1))
        # Clients that leave before the loop runs again are skipped: only the first slice was written.
        for side in sides[16:]:
            fanout.remove(STREAM, side)
        await until(lambda: all(r.seqs() == [1] for r in readers[:16]), what="the first slice's message")
        await asyncio.sleep(0.05)
        assert all(r.seqs() == [] for r in readers[16:]), "the first slice overran its time budget"
        assert fanout.observer.deliveries == 16
        for reader in readers:
            await reader.stop()


async def test_a_newer_message_never_overtakes_a_sliced_one_at_any_client() -> None:
    """Slices end on the clock, so two messages' slices differ in size: order must hold anyway."""
    timer = {"now": 0.0, "stopped": False}

    def clock() -> float:
        if not timer["stopped"]:
            timer["now"] += 1.0  # every look finds the slice's budget spent
        return timer["now"]

    # Count unlimited: the clock alone ends a slice.
    fanout = make(chunk=0, slice_time=1e-9, timer=clock)
    async with fan_server(fanout) as server:
        readers = []
        for _ in range(40):
            readers.append(Reader(await client(server.port)))
            await server.next()
        fanout.deliver(STREAM, result(1))  # first slice: 16 clients, the rest in later loop steps
        timer["stopped"] = True  # the next message would reach all 40 in one synchronous slice
        fanout.deliver(STREAM, result(2))
        fanout.deliver(STREAM, result(3))
        await until(lambda: all(len(r.messages) == 3 for r in readers), what="three messages each")
        for reader in readers:
            assert reader.seqs() == [1, 2, 3]
        assert fanout.observer.deliveries == 120
        for reader in readers:
            await reader.stop()


async def test_an_overloaded_stream_sheds_its_oldest_waiting_results_and_keeps_order() -> None:
    """Results arriving faster than a big audience can be written: skip to the present, bounded."""
    fanout = make(chunk=0, slice_time=1e-9)
    async with fan_server(fanout) as server:
        readers = []
        for _ in range(40):
            readers.append(Reader(await client(server.port)))
            await server.next()
        for seq in range(1, 101):  # all before the loop runs again: 1 in flight, 99 waiting
            fanout.deliver(STREAM, result(seq))
        assert fanout.in_flight() > 1
        await until(lambda: all(r.seqs()[-1:] == [100] for r in readers), what="the newest result")
        assert fanout.in_flight() == 0
        for reader in readers:
            seqs = reader.seqs()
            assert seqs == sorted(set(seqs)), "in order, no duplicates"
            assert seqs[0] == 1 and len(seqs) <= 66, "the one in flight, then at most 65 waiting"
        assert fanout.observer.drops["overload"] == 40 * (100 - len(readers[0].seqs()))
        for reader in readers:
            await reader.stop()


async def test_a_result_that_went_stale_while_waiting_is_not_sent() -> None:
    now = [1000.0]
    fanout = make(chunk=0, slice_time=1e-9, max_age=2.0, clock=lambda: now[0])
    async with fan_server(fanout) as server:
        readers = []
        for _ in range(40):
            readers.append(Reader(await client(server.port)))
            await server.next()
        fanout.deliver(STREAM, result(1, captured_at=1000.0))  # in flight
        fanout.deliver(STREAM, result(2, captured_at=1000.0))  # waits
        fanout.deliver(STREAM, result(3, captured_at=1002.5))  # waits
        now[0] = 1003.0  # 2 is now 3 s old, 3 only 0.5 s: 2 goes when its turn comes
        await until(lambda: all(r.seqs()[-1:] == [3] for r in readers), what="result 3")
        assert all(r.seqs() == [1, 3] for r in readers)
        assert fanout.observer.drops["stale"] == 40
        for reader in readers:
            await reader.stop()


async def test_lagging_clients_are_awaited_together_and_one_that_drains_is_flushed_without_the_deadline() -> (
    None
):
    """One wait covers every lagging client; a client that starts lagging mid-wait joins it.

    The deadline is far longer than the test may wait: only the drain itself can end the wait.
    """
    fanout = make(client_buffer=8 * 1024, send_deadline=600.0, max_lag=600.0)
    async with fan_server(fanout) as server:
        first_ws = await client(server.port, small=True)
        first_side = await server.next()
        second_ws = await client(server.port, small=True)
        second_side = await server.next()
        first_ws.transport.pause_reading()
        seq = 0
        for target in (first_side, second_side):
            if target is second_side:
                # The first one's wait is running now: the second must join it, not wait it out.
                await until(lambda: fanout.lagging == 1, what="the first to lag alone")
                for _ in range(3):
                    await asyncio.sleep(0)
                assert not fanout.is_lagging(second_side)
                second_ws.transport.pause_reading()
            for _ in range(2000):
                if fanout.is_lagging(target):
                    break
                seq += 1
                fanout.deliver(STREAM, result(seq, pad=500))
                await asyncio.sleep(0)
            assert fanout.is_lagging(target), "the stalled client never lagged"
        newest = seq + 1
        fanout.deliver(STREAM, result(newest, pad=500))
        second = Reader(second_ws)
        second_ws.transport.resume_reading()
        await until(lambda: newest in second.seqs(), what="the drained client to get the newest")
        assert not fanout.is_lagging(second_side)
        assert fanout.is_lagging(first_side), "the other stays lagging"
        seqs = second.seqs()
        assert seqs == sorted(set(seqs))
        first = Reader(first_ws)
        first_ws.transport.resume_reading()
        await until(lambda: newest in first.seqs(), what="the first client, once it drains too")
        await first.stop()
        await second.stop()


async def test_write_time_ages_are_reported_per_slice_on_real_connections() -> None:
    now = [1000.0]
    counts = Recorder()
    writes = counts.writes
    fanout = make(chunk=2, clock=lambda: now[0], observer=counts)
    async with fan_server(fanout) as server:
        readers = []
        for _ in range(3):
            readers.append(Reader(await client(server.port)))
            await server.next()
        fanout.deliver(STREAM, result(1, captured_at=999.5))
        now[0] = 1000.25  # before the second slice's turn
        await until(lambda: all(r.seqs() == [1] for r in readers), what="every reader")
        assert writes == [("result", 0.5, 2), ("result", 0.75, 1)]
        for reader in readers:
            await reader.stop()
