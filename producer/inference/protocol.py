"""How producers and the shared inference worker talk: frames in shared memory, a small control channel.

A frame is ~1 MB (640x480 BGR). Pickling it through a pipe copies it four times (pickle, kernel
in, kernel out, unpickle); here the producer copies it once, into a slot of a shared-memory file
it created, and sends a ~100-byte message naming the slot over a Unix stream socket. The worker
reads the pixels in place (letterboxing is its first and only copy). ``framecast bench --parts
predictors`` measures both ways (docs/performance.md, "transport").

The shared memory is an anonymous file (``memfd_create`` on Linux, an unlinked temporary file
elsewhere) handed over with the first message as ``SCM_RIGHTS``: nothing is named in
``/dev/shm``, so a crash on either side leaks nothing.

Every message is a 4-byte big-endian length and a JSON object:

* producer -> worker, first: ``{"op": "hello", "v": 1, "camera": NAME, "slots": K, "slot_bytes": B}``
  with the file descriptor attached;
* worker -> producer: ``{"op": "ready", "worker": ID, "pid": P, "engine": E, "provider": P,
  "device": D, "max_batch": M}``, or ``{"op": "refused", "error": TEXT}``;
* producer -> worker, per frame: ``{"op": "frame", "id": N, "slot": S, "height": H, "width": W,
  "frame": INDEX, "captured_at": T}``;
* worker -> producer, per frame: ``{"op": "result", "id": N, "frame": INDEX, "captured_at": T,
  "detections": [[label, confidence, x1, y1, x2, y2], ...], "batch": SIZE, "waited": S,
  "inference": S}`` or ``{"op": "result", "id": N, ..., "error": TEXT}``.

A slot belongs to the worker from the frame message until its result: the producer never writes
a slot that is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mmap
import os
import socket
import struct
import tempfile
from typing import Any

import numpy as np

from framecast.exceptions import FramecastError

__all__ = [
    "MAX_MESSAGE",
    "VERSION",
    "ProtocolError",
    "Slots",
    "encode",
    "read_message",
    "recv_hello",
    "send_hello",
]

VERSION = 1
"""Protocol version; a worker refuses a hello of another version."""

MAX_MESSAGE = 4 << 20
"""Largest control message accepted (a result with thousands of boxes is well under)."""

_LENGTH = struct.Struct(">I")


class ProtocolError(FramecastError, ConnectionError):
    """The peer sent something that is not this protocol; the connection is dropped."""


def encode(message: dict[str, Any]) -> bytes:
    """One framed message: length, then compact JSON."""
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    return _LENGTH.pack(len(body)) + body


def _decode(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ProtocolError("a message must be an object with an 'op'")
    return message


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None at a clean end of stream.

    Raises:
        ProtocolError: A malformed or oversized message, or a stream cut inside one.
    """
    try:
        header = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise ProtocolError("connection closed inside a message header") from None
    (length,) = _LENGTH.unpack(header)
    if length > MAX_MESSAGE:
        raise ProtocolError(f"message of {length} bytes is over the {MAX_MESSAGE}-byte limit")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed inside a message") from None
    return _decode(body)


# ---------------------------------------------------------------------------- shared memory


def _anonymous_file(size: int) -> int:
    """A file descriptor of ``size`` zero bytes that no path names."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("framecast-frames", os.MFD_CLOEXEC)
    else:  # macOS: an unlinked temporary file serves the same way
        with tempfile.TemporaryFile() as handle:
            fd = os.dup(handle.fileno())
    os.ftruncate(fd, size)
    return fd


class Slots:
    """``count`` frame slots of ``size`` bytes each, in one shared-memory mapping.

    Args:
        count: Slots (frames that may be in flight at once).
        size: Bytes per slot (the largest frame it takes).
        fd: An existing shared-memory file to map (the worker's side); a new one when None.
            It belongs to the object once made (:meth:`close` closes it).
    """

    def __init__(self, count: int, size: int, *, fd: int | None = None) -> None:
        if count < 1 or size < 1:
            raise ValueError("slots need a count and a size of at least 1")
        self.count = count
        self.size = size
        self.fd = _anonymous_file(count * size) if fd is None else fd
        # A given descriptor stays the caller's to close if this fails.
        if os.fstat(self.fd).st_size < count * size:
            raise ProtocolError(f"the shared memory is smaller than {count} slots of {size} bytes")
        self._map = mmap.mmap(self.fd, count * size)

    def write(self, slot: int, image: np.ndarray) -> None:
        """Copy ``image`` (uint8) into ``slot`` (the producer's one copy of the frame)."""
        target = np.ndarray(image.shape, np.uint8, buffer=self._map, offset=slot * self.size)
        np.copyto(target, image, casting="no")

    def view(self, slot: int, height: int, width: int) -> np.ndarray:
        """The frame in ``slot`` as a ``height x width x 3`` array, without copying.

        Raises:
            ProtocolError: The slot or the size does not fit.
        """
        if not 0 <= slot < self.count or height < 1 or width < 1 or height * width * 3 > self.size:
            raise ProtocolError(f"slot {slot} cannot hold a {width}x{height} frame")
        return np.ndarray((height, width, 3), np.uint8, buffer=self._map, offset=slot * self.size)

    def close(self) -> None:
        """Unmap and close (views taken before must no longer be used)."""
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


# ---------------------------------------------------------------------------- hello, with the fd


def send_hello(sock: socket.socket, *, camera: str, slots: Slots) -> None:
    """Send the hello and the shared memory's descriptor (blocking socket)."""
    message = encode(
        {"op": "hello", "v": VERSION, "camera": camera, "slots": slots.count, "slot_bytes": slots.size}
    )
    socket.send_fds(sock, [message], [slots.fd])


async def recv_hello(sock: socket.socket) -> tuple[dict[str, Any], int]:
    """The hello and its descriptor from a non-blocking socket, in the running loop.

    asyncio's streams cannot read ancillary data, so this one message is read on the raw socket
    when it becomes readable; everything after it goes through a stream.

    Raises:
        EOFError: The peer closed without sending anything (``framecast up`` probing the socket).
        ProtocolError: No descriptor, or not a hello.
    """
    loop = asyncio.get_running_loop()
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
            break
        except (BlockingIOError, InterruptedError):
            readable = asyncio.Event()
            loop.add_reader(sock.fileno(), readable.set)
            try:
                await readable.wait()
            finally:
                loop.remove_reader(sock.fileno())
    if not fds:
        if not data:
            raise EOFError("closed without a word (a probe of the socket)")
        raise ProtocolError("the hello carried no shared memory")
    fd = fds[0]
    try:
        if len(data) < _LENGTH.size or _LENGTH.unpack(data[: _LENGTH.size])[0] != len(data) - _LENGTH.size:
            raise ProtocolError("the hello must come alone, in one piece")
        message = _decode(data[_LENGTH.size :])
        if message.get("op") != "hello":
            raise ProtocolError(f"expected a hello, got {message.get('op')!r}")
    except BaseException:
        os.close(fd)
        raise
    return message, fd
