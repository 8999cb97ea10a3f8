"""Producer heartbeats: telling a quiet stream (heartbeats, no detections) from a dead one.

A stream is offline after ``offline_after`` seconds without a result or status from its
producer; :meth:`Heartbeats.due` returns each such stream once, so clients are told once,
with the gateway-made ``status`` :meth:`Heartbeats.offline_status` builds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from framecast import wire

__all__ = ["Heartbeats"]


@dataclass
class _Beat:
    last_seen: float
    epoch: str = ""
    seq: int = 0
    offline: bool = False  # the gateway has announced it offline


class Heartbeats:
    """When each watched stream was last heard from, to announce dead producers once.

    Args:
        offline_after: Seconds of silence after which a stream is offline.
        gateway_id: Named in the offline statuses this gateway makes.
        clock: Monotonic clock.
        wall: Wall clock (a status's ``sent_at``).
    """

    def __init__(
        self,
        *,
        offline_after: float = 3.0,
        gateway_id: str = "",
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.offline_after = offline_after
        self._gateway_id = gateway_id
        self._clock = clock
        self._wall = wall
        self._beats: dict[str, _Beat] = {}

    def watch(self, stream: str) -> None:
        """Start tracking a stream (its silence counts from now)."""
        if stream not in self._beats:
            self._beats[stream] = _Beat(self._clock())

    def unwatch(self, stream: str) -> None:
        """Stop tracking a stream."""
        self._beats.pop(stream, None)

    def seen(self, stream: str, message: wire.Peek) -> None:
        """Record a result or status from the stream's producer."""
        beat = self._beats.get(stream)
        if beat is None:
            return
        beat.last_seen = self._clock()
        beat.epoch = message.epoch
        beat.seq = message.seq
        beat.offline = False

    def mark_offline(self, stream: str) -> None:
        """Record that clients were told the stream is offline (e.g. at subscribe time)."""
        beat = self._beats.get(stream)
        if beat is not None:
            beat.offline = True

    def is_offline(self, stream: str) -> bool:
        """Whether the stream was announced offline and has not been heard from since."""
        beat = self._beats.get(stream)
        return beat is not None and beat.offline

    def last(self, stream: str) -> tuple[str, int]:
        """Last known ``(epoch, seq)`` of a stream (``("", 0)`` if never heard)."""
        beat = self._beats.get(stream)
        return (beat.epoch, beat.seq) if beat is not None else ("", 0)

    def due(self) -> list[tuple[str, str, int]]:
        """Streams that just went silent, as ``(stream, epoch, seq)``; each is returned once."""
        now = self._clock()
        out: list[tuple[str, str, int]] = []
        for stream, beat in self._beats.items():
            if not beat.offline and now - beat.last_seen > self.offline_after:
                beat.offline = True
                out.append((stream, beat.epoch, beat.seq))
        return out

    def offline_status(self, stream: str, *, epoch: str = "", seq: int = 0) -> bytes:
        """A gateway-made ``status`` with state offline (no heartbeat heard), encoded."""
        return wire.encode(
            wire.Status(
                stream=stream,
                epoch=epoch,
                seq=seq,
                sent_at=self._wall(),
                state="offline",
                source=f"gateway {self._gateway_id}: no heartbeat for {self.offline_after:g} s",
            )
        )
