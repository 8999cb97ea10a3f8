"""The viewer's video in a real Chromium: WebCodecs decoding of the real producer's encoder output.

The real stack (``framecast up``: valkey, producer with the synthetic scene, motion and the real
PyAV encoder, gateways with their GOP rules, nginx) -> Chromium: the page joins mid-group and
starts from the gateway's current GOP (no frame skipped, no decode error), and a tab stalled for
3 s goes on decoding without an error. The secure-context fallback is checked against a
stand-in relay (tests/support/relay.py: the Redis channels as they come) and the real stack.
"""

from __future__ import annotations

import itertools
import math
import statistics
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, Page
from websockets.sync.client import connect

from framecast import wire
from framecast.local.up import Stack, running
from producer.synthetic import Scene
from tests.support.chromium import chromium, status, wait_status
from tests.support.gateway import gateway_env, metric
from tests.support.producer import running_producer
from tests.support.relay import relay
from tests.support.tls import self_signed
from tests.support.valkey import RedisServer
from tests.support.wait import wait_until

pytestmark = pytest.mark.browser

# The orange square of producer.synthetic.Scene (BGR 40, 90, 220), and where the motion detector's
# box over it lies on the painted picture: found in one synchronous read of both canvases' state.
SQUARE_AND_BOX = """() => {
  const c = document.getElementById("frame");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let [x1, y1, x2, y2, n] = [1e9, 1e9, -1, -1, 0];
  for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
    const i = 4 * (y * c.width + x);
    if (Math.abs(d[i] - 220) < 40 && Math.abs(d[i + 1] - 90) < 40 && Math.abs(d[i + 2] - 40) < 40) {
      x1 = Math.min(x1, x); y1 = Math.min(y1, y); x2 = Math.max(x2, x); y2 = Math.max(y2, y); n++;
    }
  }
  const v = window.framecastViewer;
  return { square: n > 500 ? [x1, y1, x2 + 1, y2 + 1] : null, drawn: v.drawn, painted: v.video.painted };
}"""


# Records every picture the viewer paints (its `framecast:paint` event, fired while the canvas
# holds exactly that picture): its identity, where the orange square lies on the canvas (centroid,
# in canvas pixels) and a hash (FNV-1a) of the picture, read from a half-size copy to keep the
# page responsive.
RECORD_PAINTS = """() => {
  const frame = document.getElementById("frame");
  const half = document.createElement("canvas");
  const ctx = half.getContext("2d", { willReadFrequently: true });
  window.paintsSeen = [];
  frame.addEventListener("framecast:paint", ({ detail }) => {
    const [w, h] = [frame.width >> 1, frame.height >> 1];
    if (half.width !== w || half.height !== h) [half.width, half.height] = [w, h];
    ctx.drawImage(frame, 0, 0, w, h);
    const d = ctx.getImageData(0, 0, w, h).data;
    let [sx, sy, n, hash] = [0, 0, 0, 0x811c9dc5];
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const i = 4 * (y * w + x);
      hash = Math.imul(hash ^ (d[i] | (d[i + 1] << 8) | (d[i + 2] << 16)), 0x01000193) >>> 0;
      if (Math.abs(d[i] - 220) < 40 && Math.abs(d[i + 1] - 90) < 40 && Math.abs(d[i + 2] - 40) < 40) {
        sx += x; sy += y; n++;
      }
    }
    const square = n > 100 ? [2 * sx / n + 1, 2 * sy / n + 1] : null;
    const seen = window.paintsSeen;
    if (seen.length < 1000) seen.push([detail.epoch, detail.seq, detail.frame, square, hash]);
  });
}"""


class Recorder:
    """A real WebSocket client watching the stream's video through nginx, on a thread: every
    frame it receives, as ``(epoch, seq, source frame index)``."""

    def __init__(self, url: str) -> None:
        self.frames: list[tuple[str, int, int]] = []
        self.errors: list[BaseException] = []
        self._url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with connect(self._url, open_timeout=10, max_queue=None) as ws:
                for _ in range(100_000):  # bounded: about 2 h of 15 fps video
                    if self._stop.is_set():
                        return
                    try:
                        message = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    if isinstance(message, bytes) and wire.is_video(message):
                        f = wire.decode_video(message)
                        self.frames.append((f.epoch, f.seq, f.frame))
        except BaseException as exc:  # handed to the test
            self.errors.append(exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive() and self.errors == [], self.errors


def _conflated(stack: Stack) -> list[float]:
    """Frames each gateway did not send a client for lack of room (skipped to a keyframe)."""
    counts = []
    for gateway in stack.gateways:
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/metrics", timeout=10) as reply:
            counts.append(
                metric(reply.read().decode(), "framecast_gateway_dropped_total", {"reason": "conflated"})
            )
    return counts


def _square_centre(scene: Scene, index: int, width: int) -> tuple[float, float] | None:
    """Where the orange square is centred in the scene's frame ``index``, in the pixels of a
    canvas ``width`` wide; None while the walking figure or the circle hides part of it (there the
    encoders blur the few edges left enough to move a centroid by pixels)."""
    b, g, r = np.moveaxis(scene.render(index).astype(np.int16), 2, 0)
    ys, xs = np.nonzero((abs(r - 220) < 40) & (abs(g - 90) < 40) & (abs(b - 40) < 40))
    side = max(8, min(scene.width, scene.height) // 8) + 1  # cv2.rectangle's filled square
    if len(xs) < side * side:
        return None
    scale = width / scene.width
    return (float(xs.mean()) + 0.5) * scale, (float(ys.mean()) + 0.5) * scale


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(args=("--host-resolver-rules=MAP viewer.test 127.0.0.1",)) as browser:
        yield browser


def _page(browser: Browser, width: int = 1280, height: int = 800) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from _page(browser)


def _stack(codec: str) -> AbstractContextManager[Stack]:
    """The real stack through nginx, its producer encoding ``codec`` with 1 s keyframe intervals."""
    env = {"FRAMECAST_VIDEO_CODEC": codec, "FRAMECAST_VIDEO_KEYFRAME_INTERVAL": "1"}
    return running(gateways=2, env=gateway_env(env))


@pytest.mark.parametrize("codec", ["vp8", "h264", "av1"])
def test_video_is_the_default_view_and_boxes_sit_on_the_picture_they_were_computed_on(
    page: Page, codec: str
) -> None:
    with _stack(codec) as stack:
        # Mid-group: the stack has run a while, and the page joins whenever it loads.
        page.goto(stack.url)
        wait_status(page, "s.videoMode === 'video' && +s.videoFrames >= 30 && +s.boxes > 0", timeout=60_000)
        first = page.evaluate("() => document.getElementById('frame').toDataURL()")
        wait_status(page, f"+s.videoFrames >= {int(status(page)['videoFrames']) + 5}")
        # It joined mid-group and started from the gateway's GOP: nothing skipped while waiting
        # for a keyframe, and the decoder never failed.
        s = status(page)
        assert s["decodeErrors"] == "0", page.evaluate("() => window.framecastViewer.video.lastError")
        assert page.evaluate("() => window.framecastViewer.video.skipped") == 0
        assert page.evaluate("() => document.getElementById('frame').toDataURL()") != first, "a still picture"
        assert float(s["videoFps"]) > 0
        assert math.isfinite(float(s["videoLatencyP50"]))  # capture -> painted
        assert page.text_content("#picture-mode") == f"video {codec_prefix(codec)}"
        # Every box drawn went up on the picture of its own result (same source frame index) ...
        pairs = page.evaluate("() => window.framecastViewer.video.pairs")
        assert pairs and all(frame == result for frame, result in pairs), pairs
        # ... and in pixels: the motion box lies on the square where this picture shows it (the
        # square moves 8 px per processed frame, so a box of the previous or next picture is off
        # by 8 px or more in x).
        measured = 0
        for _ in range(40):
            seen = page.evaluate(SQUARE_AND_BOX)
            if seen["square"] and seen["drawn"] and seen["drawn"]["boxes"]:
                sx1, sy1, sx2, sy2 = seen["square"]
                nearest = min(seen["drawn"]["boxes"], key=lambda b: abs(b[0] - sx1) + abs(b[1] - sy1))
                sizes = [(nearest[2] - nearest[0]) - (sx2 - sx1), (nearest[3] - nearest[1]) - (sy2 - sy1)]
                if max(map(abs, sizes)) > 12:
                    # The motion detector merged the square with the walking figure into one box:
                    # not a box of the square (a box of another picture has the square's size).
                    page.wait_for_timeout(100)
                    continue
                error = max(abs(nearest[i] - edge) for i, edge in enumerate(seen["square"]))
                assert error < 6, (seen["square"], nearest)
                measured += 1
                if measured >= 5:
                    break
            page.wait_for_timeout(100)  # a fresh picture: sampled 40 times at most, not a wait for absence
        assert measured >= 5
        _every_published_picture_is_painted_and_moves(page, stack)
        # The status bar stays in view at 1280x800.
        box = page.evaluate("() => document.getElementById('status').getBoundingClientRect().toJSON()")
        assert box["top"] >= 0 and box["bottom"] <= 800, box


def _every_published_picture_is_painted_and_moves(page: Page, stack: Stack) -> None:
    """The canvas paints changing frames at the scene's rate: over a window of paints, every frame
    the producer published is painted, in order, and each one shows the square moved on."""
    recorder = Recorder(stack.url.replace("http://", "ws://").rstrip("/") + "/ws/default?video=1")
    try:
        wait_until(lambda: recorder.frames or recorder.errors, what="the recording client's first frame")
        assert recorder.errors == [], recorder.errors
        page.evaluate(RECORD_PAINTS)
        page.wait_for_function("() => window.paintsSeen.length >= 60", timeout=60_000, polling=50)
        paints = page.evaluate("() => window.paintsSeen")
        wait_until(
            lambda: recorder.errors or recorder.frames[-1][1] >= paints[-1][1],
            what="the recorder at the last paint",
        )
    finally:
        recorder.close()
    # The window: from the first painted frame the recorder also has, to the last paint.
    first = max(paints[0][1], recorder.frames[0][1])
    window = [p for p in paints if p[1] >= first]
    published = [f for f in recorder.frames if first <= f[1] <= window[-1][1]]
    assert len(window) >= 30, (paints[:3], recorder.frames[:3])
    # Every frame published in the window (seq counts them) was painted, once and in order, and
    # they are the source frames the producer encoded (as an independent client received them).
    seqs = [p[1] for p in window]
    assert seqs == list(range(first, seqs[-1] + 1)), (
        "frames published but not painted; the viewer's skipped and decode error counts and the "
        "gateways' conflated video frames:",
        page.evaluate("() => [window.framecastViewer.video.skipped, window.framecastViewer.video.errors]"),
        _conflated(stack),
        seqs,
    )
    assert [tuple(p[:3]) for p in window] == published
    # The painted pixels change with every picture (a hash of the picture on the canvas) ...
    for a, b in itertools.pairwise(window):
        assert b[2] > a[2] and a[4] != b[4], (a, b)
    # ... and each shows the orange square where the scene draws it in that source frame (one
    # frame index off moves it by 5 px; the median, as at 500 kbit/s an encoder smears the square
    # of a few pictures by pixels; pictures where the figure hides part of it are left out).
    width = page.evaluate("() => document.getElementById('frame').width")
    scene = Scene()
    errors = []
    for _, _, index, seen, _ in window:
        assert seen is not None, window  # the square is on every picture
        if (want := _square_centre(scene, index, width)) is not None:
            errors.append(math.dist(seen, want))
    assert len(errors) >= 20 and statistics.median(errors) < 1.5, sorted(errors)


def test_a_tab_stalled_for_3_s_goes_on_decoding_without_an_error(page: Page) -> None:
    with _stack("vp8") as stack:
        page.goto(stack.url)
        wait_status(page, "s.videoMode === 'video' && +s.videoFrames >= 15", timeout=60_000)
        # The page's main thread busy for 3 s: nothing is read, decoded or painted meanwhile.
        page.evaluate("() => { const end = Date.now() + 3000; while (Date.now() < end) {} }")
        painted = int(status(page)["videoFrames"])
        wait_status(page, f"+s.videoFrames >= {painted + 30}", timeout=60_000)
        s = status(page)
        assert s["decodeErrors"] == "0", page.evaluate("() => window.framecastViewer.video.lastError")
        assert s["videoMode"] == "video"


def codec_prefix(codec: str) -> str:
    return {"vp8": "vp8", "h264": "avc1", "vp9": "vp09", "av1": "av01"}[codec]


def test_chromium_decodes_every_codec_the_producer_offers(redis_server: RedisServer, page: Page) -> None:
    with relay(redis_server.url) as url:
        page.goto(url)
        supported = page.evaluate(
            """async () => Object.fromEntries(await Promise.all(
                ["vp8", "vp09.00.30.08", "avc1.42C016", "av01.0.04M.08"].map(async (codec) => [codec,
                  (await VideoDecoder.isConfigSupported({codec, codedWidth: 640, codedHeight: 480}))
                    .supported])))"""
        )
    assert supported == {"vp8": True, "vp09.00.30.08": True, "avc1.42C016": True, "av01.0.04M.08": True}


def test_plain_http_from_another_host_falls_back_to_previews_and_says_why(
    redis_server: RedisServer, child_env: dict[str, str], page: Page
) -> None:
    # viewer.test resolves to 127.0.0.1 in this browser only (see the fixture): a host that is not
    # localhost, over plain HTTP, is not a secure context, and there browsers have no WebCodecs.
    with (
        running_producer(redis_server.url, ["--heartbeat-interval", "0.25"], env=child_env),
        relay(redis_server.url) as url,
    ):
        page.goto(url.replace("127.0.0.1", "viewer.test"))
        assert page.evaluate("() => [isSecureContext, typeof VideoDecoder]") == [False, "undefined"]
        wait_status(page, "s.videoMode === 'insecure' && +s.previews >= 3 && +s.boxes > 0")
        assert page.is_disabled("#video") and not page.is_checked("#video")
        assert "HTTPS" in (page.text_content("#picture-mode") or "")


def test_over_https_through_nginx_a_remote_host_gets_webcodecs_and_http_does_not(
    browser: Browser, tmp_path: Path
) -> None:
    # The real stack (valkey, producer, 2 gateways, nginx with --tls-cert): viewer.test is not
    # localhost, so only HTTPS makes the page a secure context, and there the video plays.
    cert, key = self_signed(tmp_path)
    with running(gateways=2, tls_cert=str(cert), tls_key=str(key), tls_port=0, env=gateway_env()) as stack:
        assert stack.tls_url is not None
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
        try:
            secure = context.new_page()
            secure.goto(stack.tls_url.replace("127.0.0.1", "viewer.test"))
            assert secure.evaluate("() => [isSecureContext, typeof VideoDecoder]") == [True, "function"]
            wait_status(secure, "s.videoMode === 'video' && +s.videoFrames >= 15 && +s.results >= 5")
            assert status(secure)["decodeErrors"] == "0"
            assert not secure.is_disabled("#video")

            plain = context.new_page()
            plain.goto(stack.url.replace("127.0.0.1", "viewer.test"))
            assert plain.evaluate("() => [isSecureContext, typeof VideoDecoder]") == [False, "undefined"]
            wait_status(plain, "s.videoMode === 'insecure' && +s.results >= 5")
        finally:
            context.close()
