"""The canary's books (pure logic; the real frozen link is tests/integration/test_gateway_faults.py)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.canary import Canary, Deaf

CHANNEL = "framecast:canary:gw"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _FrozenBroker:
    """A PUBLISH that is never acknowledged: the link is frozen both ways."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, channel: str, data: str) -> None:
        self.published.append(data)
        await asyncio.Event().wait()


def _canary(clock: _Clock, store: object) -> Canary:
    canary = Canary(store, ready_timeout=3.0, interval=1.0, clock=clock)  # type: ignore[arg-type]
    canary.reset((CHANNEL,))
    canary.link_up()
    return canary


async def test_canaries_never_acknowledged_make_the_link_deaf_after_twice_the_ready_timeout() -> None:
    clock, store = _Clock(), _FrozenBroker()
    canary = _canary(clock, store)
    canary.back(CHANNEL, b"0")  # one round trip before the freeze
    send = asyncio.ensure_future(canary._send(CHANNEL, 1, lambda: True))
    await asyncio.sleep(0)
    assert store.published == ["1"]
    clock.now += 5.9
    canary.check()  # not yet twice the ready timeout
    assert canary.stale_reason() is not None  # but already unready
    clock.now += 0.2
    with pytest.raises(Deaf):
        canary.check()
    send.cancel()


async def test_a_canary_back_after_a_deaf_silence_still_rebuilds_the_link_once() -> None:
    clock, store = _Clock(), _FrozenBroker()
    canary = _canary(clock, store)
    canary.back(CHANNEL, b"0")
    clock.now += 6.5  # thawed just before the watchdog looked
    canary.back(CHANNEL, b"1")
    assert canary.stale_reason() is None
    with pytest.raises(Deaf, match=r"after 6\.5 s of silence"):
        canary.check()
    canary.check()  # once


async def test_a_punctual_canary_keeps_the_link() -> None:
    clock, store = _Clock(), _FrozenBroker()
    canary = _canary(clock, store)
    for seq in range(10):
        clock.now += 1.0
        canary.back(CHANNEL, str(seq).encode())
        canary.check()
    assert canary.stale_reason() is None
