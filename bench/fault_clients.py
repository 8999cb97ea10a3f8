"""The fault suite's clients and what each saw (bench/faults.py).

Resume clients use :mod:`framecast.client` (they resubscribe with ``since`` on ``gap`` and on
reconnect); raw clients reconnect live-only, without ``since``, as a naive client would.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import websockets
from websockets.asyncio.client import connect

from framecast import client, wire

__all__ = ["Seen", "raw_client", "resume_client"]


@dataclass
class Seen:
    """What one client received during the current scenario."""

    resume: bool
    results: list[tuple[str, int, float]] = field(default_factory=list)  # epoch, seq, published_at
    received_at: list[float] = field(default_factory=list)
    duplicates: int = 0
    notices: list[str] = field(default_factory=list)

    def on_result(self, message: wire.Result) -> None:
        if self.results and any(e == message.epoch and s == message.seq for e, s, _ in self.results[-64:]):
            self.duplicates += 1
        self.results.append((message.epoch, message.seq, message.published_at))
        self.received_at.append(time.time())

    def lost_reordered(self, first_epoch: str) -> tuple[int, int]:
        by_epoch: dict[str, list[int]] = {}
        reordered = 0
        for epoch, seq, _ in self.results:
            seqs = by_epoch.setdefault(epoch, [])
            if seqs and seq < seqs[-1]:
                reordered += 1
            seqs.append(seq)
        lost = 0
        for epoch, seqs in by_epoch.items():
            start = min(seqs) if epoch == first_epoch else 1  # a new epoch starts at 1
            lost += len(set(range(start, max(seqs) + 1)) - set(seqs))
        return lost, reordered

    def epochs_mixed(self) -> tuple[int, int]:
        """Epochs seen, and results of an epoch received after a later epoch had begun."""
        order: list[str] = []
        mixed = 0
        for epoch, _, _ in self.results:
            if epoch not in order:
                order.append(epoch)
            elif epoch != order[-1]:
                mixed += 1
        return len(order), mixed

    def recovered_at(self, cleared: float) -> float | None:
        for (_, _, published), at in zip(self.results, self.received_at, strict=True):
            if published >= cleared:
                return at
        return None


async def resume_client(url: str, seen: list[Seen], index: int, stop: asyncio.Event) -> None:
    async with client.subscribe(url, ["default"], ping_interval=5.0, open_timeout=20) as messages:
        async for message in messages:
            if stop.is_set():
                return
            if isinstance(message, wire.Result):
                seen[index].on_result(message)
            elif isinstance(message, wire.Reset | wire.Gap):
                seen[index].notices.append(f"{message.type}:{message.reason}")


async def raw_client(url: str, seen: list[Seen], index: int, stop: asyncio.Event) -> None:
    """Live only: reconnects without ``since`` (what a naive client gets)."""
    for _ in range(10_000):
        if stop.is_set():
            return
        try:
            async with connect(f"{url}/ws/default", open_timeout=20, ping_interval=5.0) as ws:
                async for raw in ws:
                    if stop.is_set():
                        return
                    message = wire.decode(raw) if isinstance(raw, str) else None
                    if isinstance(message, wire.Result):
                        seen[index].on_result(message)
        except (OSError, websockets.WebSocketException, TimeoutError):
            await asyncio.sleep(0.5)
