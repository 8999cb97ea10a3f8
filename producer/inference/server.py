"""The shared inference worker: one model, the frames of many producers, batched inferences.

Each producer connects to the Unix socket, hands over its shared-memory slots
(:mod:`producer.inference.protocol`) and sends one small message per frame. The frames wait in a
:class:`~producer.inference.batcher.Batcher`; one inference task takes a batch at a time and
runs the model on its own thread (onnxruntime and OpenCV release the GIL), so reading and
answering the sockets never waits for the model. Each result goes back to the connection its
frame came from, with the frame's index and capture time, so the producer publishes it to its
own stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from framecast import wire
from producer import detectors
from producer.inference import protocol
from producer.inference.batcher import Batcher, Waiting
from producer.inference.metrics import WorkerMetrics

__all__ = ["HELLO_TIMEOUT", "MAX_SLOT_BYTES", "Worker"]

log = logging.getLogger("producer.inference")

HELLO_TIMEOUT = 5.0
"""Seconds a new connection has to send its hello."""
MAX_SLOTS = 16
MAX_SLOT_BYTES = 256 << 20
"""Largest frame slot accepted (an 8K BGR frame is ~100 MB)."""
WRITE_LIMIT = 1 << 20
"""Bytes of unread results after which a producer counts as stuck and is dropped."""

BatchPredictor = Callable[[Sequence[np.ndarray]], Sequence[Any]]
"""``frames -> detections of each``: :meth:`producer.detectors.yolo.Yolo.batch` and the like."""


class _Client:
    """One connected producer."""

    def __init__(self, number: int, camera: str, slots: protocol.Slots, writer: asyncio.StreamWriter) -> None:
        self.number = number
        self.camera = camera
        self.slots = slots
        self.writer = writer
        self.in_batch = 0
        """Its frames in the inference now running: the slots stay mapped until it ends."""
        self.closed = False

    def __repr__(self) -> str:
        return f"camera {self.camera!r} (connection {self.number})"

    def release(self) -> None:
        """Unmap its slots once it is closed and no inference reads them any more."""
        if self.closed and not self.in_batch:
            self.slots.close()


@dataclass(frozen=True, slots=True)
class _Request:
    client: _Client
    id: int
    frame: int
    captured_at: float
    image: np.ndarray


def _field(message: dict[str, Any], key: str, kind: type) -> Any:
    value = message.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise protocol.ProtocolError(f"{key}: expected {kind.__name__}, got {value!r}")
    return value


class Worker:
    """Serves one batch predictor to every producer that connects.

    Args:
        predict: ``frames -> detections of each`` (one inference for the whole batch).
        describe: What the ready message tells producers (``engine``, ``provider``, ``device``).
        max_batch: Most frames per inference.
        batch_wait: Seconds the oldest frame may wait for others to join its batch.
        concurrency: Inferences that may run at once (each on its own thread, one model): a
            second one letterboxes and decodes while the first computes.
        metrics: Where to count (None: nowhere).
    """

    def __init__(
        self,
        predict: BatchPredictor,
        *,
        describe: dict[str, str],
        max_batch: int,
        batch_wait: float,
        concurrency: int = 1,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self._predict_batch = predict
        self._concurrency = concurrency
        self._describe = describe
        self._metrics = metrics
        self.batcher: Batcher[_Request] = Batcher(max_batch=max_batch, wait=batch_wait)
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="infer")
        self._connections = 0
        self._sessions: set[asyncio.Task[None]] = set()
        self.id = os.urandom(4).hex()
        """This run of the worker (a restarted worker has a new one)."""
        self.batches = 0
        """Inferences run so far."""

    async def serve(self, listener: socket.socket, stop: asyncio.Event) -> None:
        """Accept producers on ``listener`` and run batches until ``stop`` is set."""
        listener.setblocking(False)
        tasks = [
            asyncio.create_task(self._accept(listener), name="accept"),
            asyncio.create_task(self._infer(), name="infer"),
        ]
        stopper: asyncio.Task[Any] = asyncio.create_task(stop.wait(), name="stop")
        try:
            await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in [*tasks, stopper, *self._sessions]:
                task.cancel()
            await asyncio.wait([*tasks, stopper, *self._sessions], timeout=5)
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ connections

    async def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            connection, _ = await loop.sock_accept(listener)
            self._connections += 1
            task = asyncio.create_task(self._session(connection, self._connections), name="session")
            self._sessions.add(task)
            task.add_done_callback(self._sessions.discard)

    async def _session(self, connection: socket.socket, number: int) -> None:
        connection.setblocking(False)
        try:
            async with asyncio.timeout(HELLO_TIMEOUT):
                hello, fd = await protocol.recv_hello(connection)
        except EOFError:
            connection.close()  # a probe: someone checking that we listen
            return
        except (TimeoutError, protocol.ProtocolError, OSError) as exc:
            log.warning("connection %d: no valid hello (%s); closing it", number, exc or type(exc).__name__)
            connection.close()
            return
        try:
            camera, slots = self._accept_hello(hello, fd)
        except (protocol.ProtocolError, OSError) as exc:
            with contextlib.suppress(OSError):
                connection.send(protocol.encode({"op": "refused", "error": str(exc)}))
            log.warning("connection %d refused: %s", number, exc)
            connection.close()
            return
        reader, writer = await asyncio.open_unix_connection(sock=connection)
        client = _Client(number, camera, slots, writer)
        writer.write(
            protocol.encode(
                {
                    "op": "ready",
                    "worker": self.id,
                    "pid": os.getpid(),
                    **self._describe,
                    "max_batch": self.batcher.max_batch,
                }
            )
        )
        self.batcher.connect(client)
        self._count_clients(+1)
        log.info("%s connected", client)
        reason = "disconnected"
        try:
            while (message := await protocol.read_message(reader)) is not None:
                self._received(client, message)
        except (protocol.ProtocolError, ConnectionError, OSError) as exc:
            reason = f"dropped: {exc}"
        finally:
            client.closed = True
            self.batcher.disconnect(client)
            self._count_clients(-1)
            writer.close()
            client.release()
            log.info("%s %s", client, reason)

    def _accept_hello(self, hello: dict[str, Any], fd: int) -> tuple[str, protocol.Slots]:
        try:
            if hello.get("v") != protocol.VERSION:
                raise protocol.ProtocolError(
                    f"protocol version {hello.get('v')!r}; this worker speaks {protocol.VERSION}"
                )
            camera = _field(hello, "camera", str)
            count, size = _field(hello, "slots", int), _field(hello, "slot_bytes", int)
            if not 1 <= count <= MAX_SLOTS or not 1 <= size <= MAX_SLOT_BYTES:
                raise protocol.ProtocolError(f"{count} slots of {size} bytes is out of bounds")
            return camera, protocol.Slots(count, size, fd=fd)
        except BaseException:
            os.close(fd)
            raise

    def _received(self, client: _Client, message: dict[str, Any]) -> None:
        if message["op"] != "frame":
            raise protocol.ProtocolError(f"unexpected {message['op']!r}")
        height, width = _field(message, "height", int), _field(message, "width", int)
        image = client.slots.view(_field(message, "slot", int), height, width)
        captured_at = message.get("captured_at")
        if not isinstance(captured_at, int | float) or isinstance(captured_at, bool):
            raise protocol.ProtocolError(f"captured_at: expected a number, got {captured_at!r}")
        request = _Request(
            client, _field(message, "id", int), _field(message, "frame", int), captured_at, image
        )
        self.batcher.add(client, request, time.monotonic())
        self._wake.set()

    # ------------------------------------------------------------------ batches

    async def _infer(self) -> None:
        """Take batches as they become ready; up to ``concurrency`` run at once."""
        slots = asyncio.Semaphore(self._concurrency)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                batch = await self._next_batch()
                task = asyncio.create_task(self._run(batch), name="batch")
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _: slots.release())
        finally:
            for task in running:
                task.cancel()

    async def _next_batch(self) -> list[Waiting[_Request]]:
        while True:
            now = time.monotonic()
            if self.batcher.ready(now):
                batch = self.batcher.take()
                for waiting in batch:
                    waiting.item.client.in_batch += 1
                return batch
            self._wake.clear()
            due = self.batcher.due()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if due is None else max(0.0, due - now)):
                    await self._wake.wait()

    async def _run(self, batch: list[Waiting[_Request]]) -> None:
        """One inference on the inference threads, then each frame's result to its camera."""
        started = time.monotonic()
        images = [w.item.image for w in batch]
        error: str | None = None
        found: Sequence[tuple[wire.Detection, ...]] = ()
        try:
            found = await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, images)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error("inference on %d frames failed: %s", len(batch), error, exc_info=self.batches == 0)
        seconds = time.monotonic() - started
        self.batches += 1
        if self._metrics is not None:
            self._metrics.observe(
                len(batch), seconds, [started - w.arrived for w in batch], failed=bool(error)
            )
        for index, waiting in enumerate(batch):
            request = waiting.item
            self.batcher.finished(request.client)
            request.client.in_batch -= 1
            reply: dict[str, Any] = {
                "op": "result",
                "id": request.id,
                "frame": request.frame,
                "captured_at": request.captured_at,
                "batch": len(batch),
                "waited": round(started - waiting.arrived, 6),
                "inference": round(seconds, 6),
            }
            if error is not None:
                reply["error"] = error
            else:
                reply["detections"] = [[d.label, d.confidence, *d.box] for d in found[index]]
            self._send(request.client, reply)
            request.client.release()

    def _predict(self, images: list[np.ndarray]) -> list[tuple[wire.Detection, ...]]:
        """Runs on the inference thread: one inference, outputs checked and clipped like a producer's."""
        raw = self._predict_batch(images)
        if len(raw) != len(images):
            raise TypeError(f"the predictor answered {len(raw)} results for {len(images)} frames")
        return [detectors.clip(r, i.shape[1], i.shape[0]) for r, i in zip(raw, images, strict=True)]

    def _send(self, client: _Client, reply: dict[str, Any]) -> None:
        if client.closed or client.writer.is_closing():
            return
        client.writer.write(protocol.encode(reply))
        # A producer reads its results promptly; one that does not is not allowed to grow our memory.
        if client.writer.transport.get_write_buffer_size() > WRITE_LIMIT:
            log.warning("%s does not read its results; dropping it", client)
            client.writer.transport.abort()

    def _count_clients(self, change: int) -> None:
        if self._metrics is not None:
            self._metrics.clients.inc(change)
