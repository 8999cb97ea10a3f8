"""A producer's side of the shared inference worker: :class:`SharedWorkers`.

It has the interface of :class:`producer.workers.Workers` (the producer's loop cannot tell them
apart) but sends each frame to the worker on ``--predictor-socket``: the pixels into a slot of
its own shared memory, a small message over the socket, the result back as a future.

The worker may be absent (not started yet, crashed, restarting): the connection is retried with
backoff forever, as Redis is. Meanwhile :attr:`~SharedWorkers.ready` is False (the loop takes no
frame: they count as skipped), heartbeats say ``predictor: "down"``, and predictions that were in
flight fail with :class:`WorkerLost`. Each state change is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import BrokenExecutor
from typing import Any

from framecast import wire
from framecast.exceptions import FramecastError
from framecast.retry import backoff
from producer import detectors
from producer.config import Config
from producer.inference import protocol
from producer.latest import Frame
from producer.workers import Prediction

__all__ = ["CONNECT_TIMEOUT", "SLOT_BYTES", "SharedWorkers", "WorkerLost"]

log = logging.getLogger("producer")

SLOT_BYTES = 3840 * 2160 * 3
"""A slot's size: a 4K BGR frame. Shared memory is only backed where written, so a 640x480
camera uses 0.9 MB of it; a larger frame reconnects with larger slots."""
CONNECT_TIMEOUT = 5.0
"""Seconds to connect and get the worker's answer to the hello."""


class WorkerLost(FramecastError, BrokenExecutor):
    """The shared worker went away with this frame; it is not predicted (the next one will be)."""


class SharedWorkers:
    """Predictions by the shared inference worker on ``config.predictor_socket``.

    Create it inside the running event loop; it connects in the background.

    Args:
        config: Settings: ``predictor_socket`` and ``stream`` (the camera's name for the worker).
        on_state: Called in the loop each time the worker is reached or lost.
    """

    def __init__(self, config: Config, *, on_state: Callable[[], None] | None = None) -> None:
        assert config.predictor_socket, "SharedWorkers needs config.predictor_socket"
        self._path = config.predictor_socket
        self._camera = config.stream
        self._on_state = on_state
        self._slot_bytes = SLOT_BYTES
        self._slots: protocol.Slots | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, tuple[asyncio.Future[Prediction], Frame, float]] = {}
        self._ids = itertools.count(1)
        self._ready = asyncio.Event()
        self._ever_ready = False
        self._restarts = 0
        self._provider = ""
        self.worker: dict[str, Any] = {}
        """The worker's ready message (its id, pid, engine, provider, device, max batch)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shared-predictor")

    # ------------------------------------------------------------------ the Runner interface

    @property
    def slots(self) -> int:
        """One frame in flight, as with a worker thread: the next one is the newest when it is taken."""
        return 1

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def state(self) -> wire.PredictorState:
        return "ready" if self.ready else "down"

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def provider(self) -> str:
        return self._provider

    async def wait_ready(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()

    def submit(self, frame: Frame) -> tuple[asyncio.Future[Prediction], object]:
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        image = frame.image
        if not self.ready or self._writer is None or self._slots is None:
            future.set_exception(WorkerLost("the shared predictor is not connected"))
            return future, self
        if image.dtype.name != "uint8" or image.ndim != 3 or image.shape[2] != 3:
            future.set_exception(TypeError(f"frames must be BGR uint8, got {image.dtype} {image.shape}"))
            return future, self
        if image.nbytes > self._slots.size:
            # A bigger camera than the slots: reconnect with slots that fit it; this frame is lost.
            log.info("a %dx%d frame: reconnecting with larger shared memory", image.shape[1], image.shape[0])
            self._slot_bytes = image.nbytes
            self._writer.close()
            future.set_exception(WorkerLost(f"a {image.shape[1]}x{image.shape[0]} frame needs larger slots"))
            return future, self
        self._slots.write(0, image)
        request = next(self._ids)
        self._pending[request] = (future, frame, time.perf_counter())
        self._writer.write(
            protocol.encode(
                {
                    "op": "frame",
                    "id": request,
                    "slot": 0,
                    "height": image.shape[0],
                    "width": image.shape[1],
                    "frame": frame.index,
                    "captured_at": frame.captured_at,
                }
            )
        )
        return future, self

    def replace(self, token: object) -> bool:
        # Reconnection is this object's own business, logged once by it.
        return False

    async def stop(self) -> bool:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return True

    # ------------------------------------------------------------------ the connection

    async def _run(self) -> None:
        delays = backoff(initial=0.1, maximum=2.0)
        failure: str | None = None
        try:
            while True:
                try:
                    reader = await self._connect()
                except (OSError, protocol.ProtocolError, TimeoutError) as exc:
                    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    if failure is None:
                        log.warning("shared predictor at %s unreachable (%s); retrying", self._path, reason)
                    failure = reason
                    await asyncio.sleep(next(delays))
                    continue
                failure = None
                delays = backoff(initial=0.1, maximum=2.0)
                self._went("ready")
                try:
                    await self._read_results(reader)
                    reason = "the worker closed the connection"
                except (OSError, protocol.ProtocolError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                self._lost(reason)
                log.warning("shared predictor at %s lost (%s); reconnecting", self._path, reason)
                failure = reason
        finally:
            self._lost("the producer is stopping")

    async def _connect(self) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        slots: protocol.Slots | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            sock.setblocking(False)
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.sock_connect(sock, self._path)
                slots = protocol.Slots(1, self._slot_bytes)
                protocol.send_hello(sock, camera=self._camera, slots=slots)
                reader, writer = await asyncio.open_unix_connection(sock=sock)
                answer = await protocol.read_message(reader)
        except BaseException:
            if writer is not None:
                writer.close()  # it owns the socket now
            else:
                sock.close()
            if slots is not None:
                slots.close()
            raise
        if answer is None or answer.get("op") != "ready":
            writer.close()
            slots.close()
            why = answer.get("error") if answer else "it closed the connection"
            raise protocol.ProtocolError(f"the worker refused this producer: {why}")
        self._slots, self._writer = slots, writer
        self.worker = answer
        self._provider = str(answer.get("provider", ""))
        return reader

    async def _read_results(self, reader: asyncio.StreamReader) -> None:
        while (message := await protocol.read_message(reader)) is not None:
            if message.get("op") != "result":
                raise protocol.ProtocolError(f"unexpected {message.get('op')!r} from the worker")
            entry = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
            if entry is None:
                raise protocol.ProtocolError(f"a result for unknown request {message.get('id')!r}")
            future, frame, sent = entry
            if future.done():
                continue
            if message.get("frame") != frame.index:
                raise protocol.ProtocolError(
                    f"the result of request {message.get('id')} is for frame {message.get('frame')!r}, "
                    f"not {frame.index}"
                )
            if "error" in message:
                future.set_exception(RuntimeError(f"shared predictor: {message['error']}"))
                continue
            try:
                found = detectors.clip(
                    [(d[0], d[1], d[2:6]) for d in message.get("detections") or ()],
                    frame.image.shape[1],
                    frame.image.shape[0],
                )
            except (TypeError, IndexError, KeyError) as exc:
                future.set_exception(TypeError(f"shared predictor sent unusable detections: {exc}"))
                continue
            future.set_result((found, time.perf_counter() - sent))

    def _went(self, state: str) -> None:
        if state == "ready":
            if self._ever_ready:
                self._restarts += 1
            log.info(
                "shared predictor at %s: connected (worker %s, %s on %s, batches of up to %s)%s",
                self._path,
                self.worker.get("worker"),
                self.worker.get("detector"),
                self.worker.get("provider") or self.worker.get("engine"),
                self.worker.get("max_batch"),
                f"; found again ({self._restarts} restarts)" if self._ever_ready else "",
            )
            self._ever_ready = True
            self._ready.set()
        if self._on_state is not None:
            self._on_state()

    def _lost(self, reason: str) -> None:
        was_ready = self._ready.is_set()
        self._ready.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        pending, self._pending = self._pending, {}
        for future, _, _ in pending.values():
            if not future.done():
                future.set_exception(WorkerLost(reason))
        if self._slots is not None:
            self._slots.close()
            self._slots = None
        if was_ready and self._on_state is not None:
            self._on_state()
