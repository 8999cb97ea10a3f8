"""When the shared worker runs a batch, and with which frames (sans I/O: times are passed in).

The rule, the same as Triton's dynamic batcher (``max_queue_delay``) and DeepStream's muxer
(``batched-push-timeout``) with one shortcut:

* a batch goes as soon as it holds ``max_batch`` frames;
* or as soon as every connected camera has a frame waiting: each camera has at most its own few
  frames in flight, so nobody else is coming and waiting longer would only add latency;
* else once its oldest frame has waited ``wait`` seconds (the latency budget, e.g. 10 ms).

So a camera whose source stalls costs the others at most ``wait`` per batch, never a stall of
their own; frames go in arrival order, so no camera is starved by busier ones.
"""

from __future__ import annotations

from collections import deque
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

    def __len__(self) -> int:
        return len(self._waiting)

    def connect(self, client: Hashable) -> None:
        """A client may send frames from now on (and is expected in a batch)."""
        self._clients.add(client)

    def disconnect(self, client: Hashable) -> list[T]:
        """A client is gone: no longer waited for; its waiting frames are dropped and returned."""
        self._clients.discard(client)
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
        return self._clients <= {w.client for w in self._waiting}

    def take(self) -> list[Waiting[T]]:
        """The next batch: up to ``max_batch`` frames, oldest first."""
        count = min(self.max_batch, len(self._waiting))
        return [self._waiting.popleft() for _ in range(count)]
