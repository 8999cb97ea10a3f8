"""Subscribers' history and status reads: bounded in number, shared by a burst.

A connection storm (2000 clients subscribing at once) used to issue 2000 concurrent
XREVRANGE+GET pairs: the command pool hit its 100 connections, ~1900 subscribers got
``Too many connections`` (no latest result, no status) and the pool stayed at 100 sockets.
:class:`SubscribeReads` runs at most ``concurrency`` reads at once and queues the rest; a
subscriber whose read (same stream, ``since`` and ``epoch``) is already *queued* shares it.

A read is shared only while it has not started: every sharer joined the fan-out (which
buffers live messages for it) before the read went to Redis, so replay and live still meet
exactly for each of them. Who arrives after a read started queues a read of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from framecast import wire
from framecast.broker import Broker
from gateway.history import Replay, replay

__all__ = ["Snapshot", "SubscribeReads"]

_Key = tuple[str, int | None, str | None]


@dataclass(frozen=True)
class Snapshot:
    """What a subscribing client is sent before it goes live.

    Attributes:
        plan: The replay.
        status: The stream's status key as stored (None if it has expired).
    """

    plan: Replay
    status: bytes | None


class SubscribeReads:
    """Read replays and statuses for subscribers, ``concurrency`` at a time.

    Args:
        broker: The gateway's Redis.
        concurrency: Reads in flight at most.
        replay_limit: Most results one replay holds.
    """

    def __init__(self, broker: Broker, *, concurrency: int = 8, replay_limit: int = 1000) -> None:
        self._broker = broker
        self._slots = asyncio.Semaphore(concurrency)
        self._limit = replay_limit
        self._queued: dict[_Key, asyncio.Task[Snapshot]] = {}
        self.reads = 0
        """Reads sent to Redis so far (one per queued read, however many shared it)."""

    async def read(self, stream: str, *, since: int | None = None, epoch: str | None = None) -> Snapshot:
        """The replay and status for a subscriber that already joined the fan-out.

        Raises:
            BrokerError: Redis could not be read (every sharer gets it).
        """
        key = (stream, since, epoch)
        task = self._queued.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run(key), name=f"framecast-read-{stream}")
            task.add_done_callback(_observe)
            self._queued[key] = task
        # Shielded: one sharer giving up (its timeout) must not cancel the others' read.
        return await asyncio.shield(task)

    async def _run(self, key: _Key) -> Snapshot:
        async with self._slots:
            # Started: whoever subscribes from now on may have missed what this read sees.
            if self._queued.get(key) is asyncio.current_task():
                del self._queued[key]
            self.reads += 1
            stream, since, epoch = key
            plan = await replay(self._broker, stream, since=since, epoch=epoch, limit=self._limit)
            status = await self._broker.get(wire.status_key(stream))
            return Snapshot(plan=plan, status=status)


def _observe(task: asyncio.Task[Snapshot]) -> None:
    # Every sharer may have timed out: retrieve the exception so asyncio does not log it.
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.exception()
