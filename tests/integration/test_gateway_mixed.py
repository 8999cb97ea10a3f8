"""Video (issue 19) and events with a kinds filter (issue 22) on one subscription, on the real stack.

valkey -> producer (examples/door.toml: the scripted door scene, the `people` detector, ByteTrack,
a line and a zone; VP8 video) -> gateway -> nginx -> a real WebSocket client asking
``/ws/door?video=1&kinds=event,status``. It gets an unbroken video chain from a keyframe that
FFmpeg decodes, and events, and no result: the choices apply to the text kinds, video follows its
own rules.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from framecast import wire
from framecast.local import cameras
from framecast.local.up import Stack, running
from tests.support.gateway import gateway_env
from tests.support.video import decode

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "door.toml"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running(gateways=1, cameras=cameras.load(EXAMPLE), env=gateway_env()) as stack:
        yield stack


async def _watch(url: str) -> tuple[wire.Subscribed, list[wire.VideoFrame], list[wire.TextMessage]]:
    """Read until 30 video frames and 2 events came (what came besides, in order)."""
    frames: list[wire.VideoFrame] = []
    texts: list[wire.TextMessage] = []
    subscribed: wire.Subscribed | None = None
    async with connect(url, max_size=None) as ws, asyncio.timeout(180):
        while len(frames) < 30 or sum(isinstance(t, wire.Event) for t in texts) < 2:
            message = await ws.recv()
            if isinstance(message, bytes):
                assert wire.is_video(message), "a binary message that is not video (previews were not asked)"
                frames.append(wire.decode_video(message))
                continue
            decoded = wire.decode(message)
            if isinstance(decoded, wire.Subscribed):
                subscribed = decoded
            elif not isinstance(decoded, wire.Hello):
                texts.append(decoded)
    assert subscribed is not None
    return subscribed, frames, texts


def test_an_events_only_subscription_with_video_gets_video_and_events_and_no_result(stack: Stack) -> None:
    url = stack.url.replace("http://", "ws://").rstrip("/") + "/ws/door?video=1&kinds=event,status"
    subscribed, frames, texts = asyncio.run(_watch(url))
    assert subscribed.video and subscribed.kinds == ("event", "status")
    kinds = {type(t).__name__ for t in texts}
    assert "Result" not in kinds, kinds
    assert {"Event", "Status"} <= kinds, kinds
    # The chain starts at a keyframe and every delta follows its predecessor (or a keyframe
    # restarts it): FFmpeg decodes each frame to one picture.
    assert frames[0].key
    for a, b in itertools.pairwise(frames):
        assert b.key or (b.epoch, b.seq) == (a.epoch, a.seq + 1), f"delta {b.seq} after {a.seq}"
    assert len(decode(frames)) == len(frames)
