"""The gateway's video fan-out on the real stack: valkey, the producer's real encoder, gateways, nginx.

Clients are real WebSocket clients through nginx; frames are decoded with FFmpeg (PyAV). What is
held: a client joining mid-group starts at once with the group's keyframe (the gateway's GOP),
and decodes with no error; a client stalled for 3 s (found by the lag probes behind its video)
skips whole groups and resumes at a keyframe, never a delta without its chain; the gateway holds
one Redis subscription to the video channel per stream, whatever its number of video clients,
and none once they left; a lone viewer who leaves and comes back within ``--video-linger``
starts at once from the cached GOP, and the channel (with its GOP) is given up once the linger
passed with nobody watching; ``framecast record`` saves a clip that plays from a keyframe.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import av
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

from framecast import wire
from framecast.local.up import Stack, running
from tests.support.gateway import GatewayProc, gateway_env, metric, running_gateway
from tests.support.valkey import RedisServer
from tests.support.video import decode
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
STREAM = "default"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # One gateway, so every client meets the same GOP; keyframes every second of capture time
    # (the producer reads its settings from the environment too).
    with running(gateways=1, env=gateway_env({"FRAMECAST_VIDEO_KEYFRAME_INTERVAL": "1"})) as stack:
        yield stack


def _ws(stack: Stack) -> str:
    return stack.url.replace("http://", "ws://").rstrip("/") + f"/ws/{STREAM}?video=1"


async def _hello(ws: ClientConnection) -> wire.Subscribed:
    """Read up to the ``subscribed`` reply."""
    async with asyncio.timeout(30):
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                decoded = wire.decode(message)
                if isinstance(decoded, wire.Subscribed):
                    return decoded


async def _frames(ws: ClientConnection, until: object, *, timeout: float = 30.0) -> list[wire.VideoFrame]:
    """Video frames from ``ws`` until ``until(frames)`` holds."""
    frames: list[wire.VideoFrame] = []
    async with asyncio.timeout(timeout):
        while not until(frames):  # type: ignore[operator]
            message = await ws.recv()
            if isinstance(message, bytes) and wire.is_video(message):
                frames.append(wire.decode_video(message))
    return frames


def _check_chains(frames: list[wire.VideoFrame]) -> list[int]:
    """Every delta follows its predecessor: returns the indexes where a frame was skipped."""
    assert frames and frames[0].key, "the first frame is not a keyframe"
    gaps = []
    for index in range(1, len(frames)):
        a, b = frames[index - 1], frames[index]
        if (b.epoch, b.seq) != (a.epoch, a.seq + 1):
            assert b.key, f"delta {b.seq} after {a.seq}: a broken chain"
            gaps.append(index)
        else:
            assert b.group == (b.seq if b.key else a.group)
    return gaps


def _skipped(stack: Stack) -> float:
    """Video frames the (one) gateway did not send to a client for lack of room."""
    port = stack.gateways[0].port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return metric(text, "framecast_gateway_dropped_total", {"reason": "conflated"})


def _video_subscribers(stack: Stack) -> int:
    client = redis.Redis.from_url(stack.redis_url)
    try:
        return int(client.pubsub_numsub(wire.video_channel(STREAM))[0][1])
    finally:
        client.close()


def test_a_client_joining_mid_group_starts_from_the_gop_and_decodes_without_error(stack: Stack) -> None:
    async def scenario() -> tuple[list[wire.VideoFrame], list[wire.VideoFrame], float, int, float]:
        async with connect(_ws(stack)) as first:
            assert (await _hello(first)).video is True
            # Mid-group: a keyframe and at least three of its deltas went by.
            seen = await _frames(first, lambda f: any(x.key for x in f) and not f[-1].key and len(f) >= 4)
            asked = time.perf_counter()
            asked_at = time.time()
            async with connect(_ws(stack)) as second:
                assert (await _hello(second)).video is True
                joined = await _frames(second, lambda f: len(f) >= 1)
                first_frame = time.perf_counter() - asked
                joined += await _frames(second, lambda f: len(f) >= 20)
                subscribers = _video_subscribers(stack)
            seen += await _frames(first, lambda f: len(f) >= 5)
        return seen, joined, first_frame, subscribers, asked_at

    seen, joined, first_frame, subscribers, asked_at = asyncio.run(scenario())
    assert _check_chains(seen) == []
    # It started at the keyframe of the group under way when it joined (the gateway's GOP), not
    # at the next one: a keyframe captured before it even asked. (Not "the group the first
    # client was in": with 1 s groups, a keyframe may come while the joiner's handshake is on
    # its way, and that group is then the one under way.)
    assert joined[0].key and joined[0].captured_at < asked_at, (joined[0], asked_at)
    assert _check_chains(joined) == []
    assert len(decode(joined)) == len(joined)  # FFmpeg decodes every frame to one picture
    # One Redis subscription to the video channel for both clients.
    assert subscribers == 1
    print(f"time to first frame through nginx: {first_frame * 1000:.0f} ms")
    # Both left: the gateway gave the channel up.
    wait_until(lambda: _video_subscribers(stack) == 0, what="the video channel given up")


def test_a_client_stalled_for_3_s_resumes_at_a_keyframe_without_a_broken_chain(stack: Stack) -> None:
    frames = asyncio.run(_stalled(stack))
    gaps = _check_chains(frames)
    assert gaps, "the stalled client skipped nothing"
    assert all(frames[i].key for i in gaps)
    assert len(decode(frames)) == len(frames)


def _gaps(frames: list[wire.VideoFrame]) -> list[int]:
    return [i for i in range(1, len(frames)) if frames[i].seq != frames[i - 1].seq + 1]


async def _stalled(stack: Stack) -> list[wire.VideoFrame]:
    # A small queue: while the test does not read, websockets stops reading the socket too, so
    # the gateway's lag probe (a ping behind the video) goes unanswered, as in a stalled tab.
    async with connect(_ws(stack), max_queue=2) as ws:
        await _hello(ws)
        frames = await _frames(ws, lambda f: sum(x.key for x in f) >= 2)
        skipped = await asyncio.to_thread(_skipped, stack)
        await asyncio.sleep(3)  # the stall itself
        # ... and until the gateway skipped frames for it (its lag probe went unanswered): the
        # probe rides the next frame after a wave, so when in the stall it is found varies.
        for _ in range(300):
            if await asyncio.to_thread(_skipped, stack) > skipped:
                break
            await asyncio.sleep(0.1)

        def resumed(more: list[wire.VideoFrame]) -> bool:
            gaps = _gaps(frames + more)
            return bool(gaps) and len(frames + more) > gaps[-1] + 3

        return frames + await _frames(ws, resumed, timeout=60)


def test_record_saves_a_clip_that_decodes_from_a_keyframe(stack: Stack, tmp_path: Path) -> None:
    out = tmp_path / "clip.webm"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "framecast.cli",
            "record",
            _ws(stack).split("?")[0],
            "--seconds",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=gateway_env(),
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        pictures = list(container.decode(container.streams.video[0]))
    assert pictures and pictures[0].key_frame
    assert pictures[-1].time - pictures[0].time >= 2.5  # about the 3 s asked for
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one summary line


LINGER = "linger"  # a stream of its own, whose frames the test publishes itself


def _frame(seq: int, group: int) -> bytes:
    """A video frame of :data:`LINGER` as the producer frames it (the gateway never decodes one)."""
    key = seq == group
    return wire.encode_video(
        wire.VideoFrame(
            stream=LINGER, epoch="e1", seq=seq, group=group, frame=seq, captured_at=time.time(),
            width=64, height=48, key=key, codec="vp8" if key else "", data=bytes(200),
        )
    )  # fmt: skip


def test_a_viewer_back_within_the_linger_starts_from_the_cached_gop_which_goes_with_the_channel(
    redis_server: RedisServer,
) -> None:
    # The test is the producer here, so it decides where keyframes fall: what a viewer gets
    # first says exactly where it came from. --max-age 0: no frame is refused for its age.
    with running_gateway(redis_url=redis_server.url, args=["--max-age", "0"], wait="ready") as gw:
        asyncio.run(_linger(gw, redis_server.url))


async def _linger(gw: GatewayProc, redis_url: str) -> None:
    import redis.asyncio as aioredis

    url = f"{gw.ws_url}/ws/{LINGER}?video=1"
    channel = wire.video_channel(LINGER)
    producer = aioredis.Redis.from_url(redis_url)

    async def publish(seq: int, group: int) -> int:
        """Publish a frame; returns how many subscribers (the gateway) it reached."""
        return int(await producer.publish(channel, _frame(seq, group)))

    async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
        """Poll ``check`` (bounded: 30 s, 1500 tries) until it holds."""
        for _ in range(1500):
            if await check():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def nobody_on_the_gateway() -> bool:
        return await asyncio.to_thread(gw.metric, "framecast_gateway_subscriptions") == 0

    async def channel_given_up() -> bool:
        return int((await producer.pubsub_numsub(channel))[0][1]) == 0

    async def read_until_key(ws: ClientConnection, seq: int) -> list[wire.VideoFrame]:
        """Frames up to and including the keyframe ``seq`` (a later event than any before it)."""
        return await _frames(ws, lambda f: bool(f) and f[-1].key and f[-1].seq == seq)

    try:
        # A lone viewer watches a group: keyframe 1 and its deltas 2, 3.
        async with connect(url) as lone:
            assert (await _hello(lone)).video is True
            assert await publish(1, 1) == 1, "the gateway holds the video channel once 'subscribed' came"
            for seq in (2, 3):
                await publish(seq, 1)
            assert [f.seq for f in await _frames(lone, lambda f: len(f) >= 3)] == [1, 2, 3]
        # It left (the gateway saw it go). Nobody watches, yet the channel is held and the
        # group kept current: delta 4 still reaches the gateway.
        await until(nobody_on_the_gateway, "the gateway to see the viewer go")
        assert await publish(4, 1) == 1, "the video channel was given up as the last viewer left"
        # A viewer back (a reload) starts at once from the cached group: keyframe 1, published
        # before it came, then 2..4; delta 5 live; keyframe 6 is the next the producer sends.
        async with connect(url) as back:
            assert (await _hello(back)).video is True
            await publish(5, 1)
            await publish(6, 6)
            frames = await read_until_key(back, 6)
        assert [f.seq for f in frames] == [1, 2, 3, 4, 5, 6], "it did not start from the cached group"
        assert frames[0].key and frames[0].group == 1
        # Nobody watches again: once the linger passed, the gateway gives the channel up.
        await until(channel_given_up, "the video channel given up after the linger")
        # ... and its group with it: a viewer now starts at the next keyframe (9), not at the
        # group of keyframe 6, which delta 7 (the chain's next frame) would have continued.
        async with connect(url) as late:
            assert (await _hello(late)).video is True
            assert await publish(7, 6) == 1
            await publish(8, 6)
            await publish(9, 9)
            frames = await read_until_key(late, 9)
        assert [f.seq for f in frames] == [9], "a group from before the channel was given up was sent"
    finally:
        await producer.aclose()
