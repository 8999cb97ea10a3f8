"""The shared worker's transport: frames in shared memory handed over a real Unix socket."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from producer.inference import protocol


def test_a_frame_written_by_one_side_is_read_in_place_by_the_other() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    slots = protocol.Slots(2, 640 * 480 * 3)

    async def receive() -> tuple[dict[str, object], int]:
        theirs.setblocking(False)
        return await protocol.recv_hello(theirs)

    try:
        protocol.send_hello(ours, camera="door", slots=slots)
        hello, fd = asyncio.run(receive())
        assert hello == {
            "op": "hello",
            "v": protocol.VERSION,
            "camera": "door",
            "slots": 2,
            "slot_bytes": 921600,
        }
        mapped = protocol.Slots(2, 921600, fd=fd)
        frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
        slots.write(1, frame)
        view = mapped.view(1, 480, 640)
        np.testing.assert_array_equal(view, frame)
        assert not view.flags.owndata  # no copy: the worker letterboxes straight from shared memory
        smaller = np.full((240, 320, 3), 7, np.uint8)
        slots.write(0, smaller)
        np.testing.assert_array_equal(mapped.view(0, 240, 320), smaller)
        for slot, height, width in ((2, 480, 640), (-1, 480, 640), (0, 481, 640), (0, 0, 640)):
            with pytest.raises(protocol.ProtocolError, match="cannot hold"):
                mapped.view(slot, height, width)
        del view
        mapped.close()
    finally:
        slots.close()
        ours.close()
        theirs.close()


def test_a_mapping_smaller_than_announced_is_refused() -> None:
    small = protocol.Slots(1, 100)
    try:
        with pytest.raises(protocol.ProtocolError, match="smaller than 2 slots"):
            protocol.Slots(2, 100, fd=small.fd)
    finally:
        small.close()


def test_messages_are_framed_and_malformed_ones_refused() -> None:
    async def read(data: bytes) -> dict[str, object] | None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await protocol.read_message(reader)

    message = {"op": "frame", "id": 3, "captured_at": 1.5}
    assert asyncio.run(read(protocol.encode(message))) == message
    assert asyncio.run(read(b"")) is None  # a clean end between messages
    for bad, reason in (
        (protocol.encode(message)[:-2], "inside a message"),
        (b"\x00\x00", "inside a message header"),
        (b"\x00\x00\x00\x03abc", "not JSON"),
        (b"\x00\x00\x00\x02[]", "an object with an 'op'"),
        ((protocol.MAX_MESSAGE + 1).to_bytes(4, "big"), "over the"),
    ):
        with pytest.raises(protocol.ProtocolError, match=reason):
            asyncio.run(read(bad))


def test_a_hello_without_shared_memory_is_refused_and_a_probe_is_told_apart() -> None:
    async def receive(sock: socket.socket) -> object:
        sock.setblocking(False)
        return await protocol.recv_hello(sock)

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.sendall(protocol.encode({"op": "hello", "v": 1}))
    with pytest.raises(protocol.ProtocolError, match="no shared memory"):
        asyncio.run(receive(theirs))
    ours.close()
    theirs.close()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.close()  # connected, then gone without a word: up checking the socket
    with pytest.raises(EOFError):
        asyncio.run(receive(theirs))
    theirs.close()
