"""When the shared worker runs a batch, and with which frames (sans I/O: times are passed in).

The rule, the same as Triton's dynamic batcher (``max_queue_delay``) and DeepStream's muxer
(``batched-push-timeout``) with one shortcut:

* a batch goes as soon as it holds ``max_batch`` frames;
* or as soon as every connected camera has a frame waiting, except cameras whose frame is in an
  inference running now: each camera has one frame in flight, so nobody else is coming and
  waiting longer would only add latency;
* else once its oldest frame has waited ``wait`` seconds (the latency budget, e.g. 10 ms).

So a camera whose source stalls costs the others at most ``wait`` per batch, never a stall of
their own; frames go in arrival order, so no camera is starved by busier ones.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Batcher", "Waiting"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Waiting(Generic[T]):
    """A frame waiting for a batch: who sent it, what it is, when it arrived (monotonic seconds)."""

    client: Hashable
    item: T
    arrived: float


class Batcher(Generic[T]):
    """Frames from several clients, handed out in batches.

    Args:
        max_batch: Most frames in one batch.
        wait: Seconds the oldest waiting frame may wait for others to join it.
    """

    def __init__(self, *, max_batch: int, wait: float) -> None:
        if max_batch < 1 or wait < 0:
            raise ValueError("max_batch must be at least 1 and wait at least 0")
        self.max_batch = max_batch
        self.wait = wait
        self._waiting: deque[Waiting[T]] = deque()
        self._clients: set[Hashable] = set()
        self._running: Counter[Hashable] = Counter()

    def __len__(self) -> int:
        return len(self._waiting)

    def connect(self, client: Hashable) -> None:
        """A client may send frames from now on (and is expected in a batch)."""
        self._clients.add(client)

    def disconnect(self, client: Hashable) -> list[T]:
        """A client is gone: no longer waited for; its waiting frames are dropped and returned."""
        self._clients.discard(client)
        del self._running[client]
        dropped = [w.item for w in self._waiting if w.client == client]
        if dropped:
            self._waiting = deque(w for w in self._waiting if w.client != client)
        return dropped

    def add(self, client: Hashable, item: T, now: float) -> None:
        """A frame from ``client`` arrived at ``now``."""
        self._waiting.append(Waiting(client, item, now))

    def due(self) -> float | None:
        """When the oldest waiting frame's budget runs out (None when nothing waits)."""
        return self._waiting[0].arrived + self.wait if self._waiting else None

    def ready(self, now: float) -> bool:
        """Whether a batch should go now (see the module docstring)."""
        if not self._waiting:
            return False
        if len(self._waiting) >= self.max_batch or now >= self._waiting[0].arrived + self.wait:
            return True
        expected = {c for c in self._clients if not self._running[c]}
        return expected <= {w.client for w in self._waiting}

    def take(self) -> list[Waiting[T]]:
        """The next batch: up to ``max_batch`` frames, oldest first; call :meth:`finished` for each."""
        count = min(self.max_batch, len(self._waiting))
        batch = [self._waiting.popleft() for _ in range(count)]
        for waiting in batch:
            if waiting.client in self._clients:
                self._running[waiting.client] += 1
        return batch

    def finished(self, client: Hashable) -> None:
        """One of ``client``'s frames taken by :meth:`take` is done (its inference ended)."""
        if self._running[client] > 0:
            self._running[client] -= 1
