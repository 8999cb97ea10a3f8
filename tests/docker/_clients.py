"""Clients of a compose project, through its published port only."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from framecast import client, wire
from tests.support.wait import poll


async def hello_gateway(url: str) -> str:
    """Open one raw WebSocket through nginx and return the id of the gateway that answered."""
    async with connect(url, open_timeout=20) as ws:
        hello = wire.decode(await asyncio.wait_for(ws.recv(), 20))
        assert isinstance(hello, wire.Hello), hello
        return hello.gateway


@contextlib.asynccontextmanager
async def raw_sockets(url: str, count: int) -> AsyncIterator[list[tuple[str, ClientConnection]]]:
    """``count`` raw WebSockets (gateway id, connection), drained by tasks so closes are seen."""
    opened: list[tuple[str, ClientConnection]] = []

    async def open_one() -> None:
        ws = await connect(url, open_timeout=20)
        hello = wire.decode(await asyncio.wait_for(ws.recv(), 20))
        assert isinstance(hello, wire.Hello), hello
        opened.append((hello.gateway, ws))

    async def drain(ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    try:
        await asyncio.gather(*(open_one() for _ in range(count)))
        tasks = [asyncio.create_task(drain(ws)) for _, ws in opened]
        yield opened
    finally:
        await asyncio.gather(*(ws.close() for _, ws in opened), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class Watcher:
    """One resuming :func:`framecast.client.subscribe` client, recording what it was given."""

    subscription: client.Subscription
    results: list[tuple[str, wire.Result]] = field(default_factory=list)
    resets: list[wire.Reset] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> str | None:
        return self.subscription.gateway

    def count_on(self, gateway: str) -> int:
        return sum(1 for served_by, _ in self.results if served_by == gateway)

    def check_no_gap_no_duplicate(self) -> None:
        """Within an epoch every seq follows the previous one; the gateway sent nothing twice."""
        for (_, before), (_, after) in itertools.pairwise(self.results):
            if before.epoch == after.epoch:
                assert after.seq == before.seq + 1, f"seq {before.seq} -> {after.seq} ({self.disconnects})"
        assert self.subscription.cursor.duplicates == 0


async def _pump(watcher: Watcher) -> None:
    async for message in watcher.subscription:
        if isinstance(message, wire.Result):
            watcher.results.append((watcher.subscription.gateway or "", message))
        elif isinstance(message, wire.Reset):
            watcher.resets.append(message)


@contextlib.asynccontextmanager
async def watchers(
    base_url: str, count: int, *, since: client.Position | None = None
) -> AsyncIterator[list[Watcher]]:
    """``count`` subscribers of stream ``default`` through ``base_url``, each read by its own task."""
    made: list[Watcher] = []
    for _ in range(count):
        reasons: list[str] = []

        def note(reason: str, _delay: float, reasons: list[str] = reasons) -> None:
            reasons.append(reason)

        sub = client.subscribe(
            base_url, ["default"], since={"default": since} if since else None, on_disconnect=note
        )
        made.append(Watcher(sub, disconnects=reasons))
    tasks = [asyncio.create_task(_pump(w)) for w in made]
    try:
        yield made
    finally:
        for w in made:
            await w.subscription.aclose()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


async def each_gets(watchers_: list[Watcher], more: int, *, what: str, timeout: float = 60) -> None:
    """Wait until every watcher has ``more`` results beyond what it has now."""
    targets = [(w, len(w.results) + more) for w in watchers_]

    def condition() -> bool:
        return all(len(w.results) >= n for w, n in targets)

    await poll(condition, timeout=timeout, what=what)
