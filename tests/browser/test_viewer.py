"""The web viewer in a real Chromium, served through nginx by the whole local topology.

valkey -> producer (synthetic scene, motion detector) -> 3 gateways -> nginx -> Chromium.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from framecast.local.up import Stack, running
from tests.support.chromium import FRAME_PIXEL, OVERLAY_PIXELS, WAIT_MS, chromium, status, wait_status
from tests.support.gateway import gateway_env

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLANK = [0x24, 0x27, 0x2C, 255]  # the viewer's blank-frame colour


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running(gateways=3, env=gateway_env()) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1120, "height": 760})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _seqs(page: Page) -> list[tuple[str, int]]:
    return [(e, s) for e, s in page.evaluate("() => window.framecastViewer.seqs")]


def _assert_consecutive(seqs: list[tuple[str, int]]) -> None:
    """Within an epoch every result follows the previous one: no gap, no duplicate."""
    for (epoch_a, a), (epoch_b, b) in itertools.pairwise(seqs):
        if epoch_a == epoch_b:
            assert b == a + 1, f"seq {a} was followed by {b}"


def test_boxes_appear_over_the_preview_and_the_status_bar_is_live(
    stack: Stack, page: Page, artifacts: Path
) -> None:
    # Previews, not the default video (tests/browser/test_viewer_video.py has the video).
    page.goto(stack.url + "?video=0")
    # No ?stream=: the viewer picks the first stream /streams lists (the producer's "default").
    wait_status(page, "s.connection === 'open' && s.stream === 'default'")
    wait_status(page, "+s.results >= 10 && +s.boxes > 0 && +s.previews > 0")
    page.wait_for_function(f"({OVERLAY_PIXELS})() > 0", timeout=WAIT_MS, polling=50)
    page.wait_for_selector("#detections li[data-label]", timeout=WAIT_MS)
    wait_status(page, "s.streamState === 'online' && s.rate !== undefined && +s.rate > 0")

    s = status(page)
    assert s["gateway"] in {g.name for g in stack.gateways}
    assert page.text_content("#gateway") == s["gateway"]
    assert page.text_content("#connection") == "connected"
    assert re.fullmatch(r"-?\d+", page.text_content("#latency") or ""), page.text_content("#latency")
    assert math.isfinite(float(s["latencyP50"]))
    assert page.text_content("#stream-state") == "online"
    assert page.eval_on_selector_all("#stream option", "opts => opts.map(o => o.value)") == ["default"]
    # The picture is the producer's JPEG, not the blank frame.
    width, height = page.evaluate("() => [frame.width, frame.height]")
    assert (width, height) == (640, 480)
    assert page.evaluate(FRAME_PIXEL, [width // 2, height // 2]) != BLANK
    assert s["gaps"] == "0"
    _assert_consecutive(_seqs(page))

    shot = artifacts / "viewer.png"
    page.screenshot(path=str(shot))
    if os.environ.get("FRAMECAST_UPDATE_DOCS") == "1":  # refresh the README's picture on request only
        shutil.copyfile(shot, DOCS / "viewer.png")


def test_without_previews_boxes_are_drawn_on_a_blank_frame(stack: Stack, page: Page) -> None:
    page.goto(stack.url + "?stream=default&previews=0&video=0")
    wait_status(page, "s.connection === 'open' && +s.results >= 5 && +s.boxes > 0")
    page.wait_for_function(f"({OVERLAY_PIXELS})() > 0", timeout=WAIT_MS, polling=50)
    assert status(page)["previews"] == "0"
    assert not page.is_checked("#previews")
    assert page.evaluate(FRAME_PIXEL, [1, 1]) == BLANK
    assert page.evaluate("() => [frame.width, frame.height]") == [640, 480]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "shutdown"])
def test_killing_the_serving_gateway_reconnects_through_nginx_without_gap_or_duplicate(
    stack: Stack, page: Page, sig: int
) -> None:
    alive = [g.name for g in stack.gateways if g.process is not None and g.process.poll() is None]
    assert len(alive) >= 2, "this test needs a gateway to fail over to"
    page.goto(stack.url + "?stream=default")
    wait_status(page, "s.connection === 'open' && +s.results >= 5")
    before = status(page)
    served_by = before["gateway"]

    stack.kill(served_by, sig)
    wait_status(
        page, f"s.gateway !== {json.dumps(served_by)} && s.connection === 'open' && +s.reconnects === 1"
    )
    after_reconnect = int(status(page)["results"])
    wait_status(page, f"+s.results >= {after_reconnect + 10}")

    # One snapshot of both, as results keep arriving.
    s, raw_seqs = page.evaluate(
        "() => [{...document.getElementById('status').dataset}, window.framecastViewer.seqs]"
    )
    seqs = [(e, q) for e, q in raw_seqs]
    assert s["gateway"] in set(alive) - {served_by}
    assert page.text_content("#reconnects") == "1"
    assert int(s["results"]) == len(seqs)
    _assert_consecutive(seqs)
    assert s["gaps"] == "0"
    assert len({epoch for epoch, _ in seqs}) == 1
    assert int(before["seq"]) < int(s["seq"])


def test_client_module_deduplicates_and_decodes_previews_in_the_browser(stack: Stack, page: Page) -> None:
    page.goto(stack.url + "?stream=default")
    outcome = page.evaluate(
        """async () => {
          const { Cursor, decodePreview, websocketUrl } = await import("/client.js");
          const cursor = new Cursor({ cam: { epoch: "e1", seq: 2 } });
          const r = (epoch, seq) => ({ type: "result", stream: "cam", epoch, seq });
          const accepted = [r("e1", 2), r("e1", 3), r("e1", 3), r("e2", 1), r("e1", 4), r("e2", 2)]
            .map((m) => cursor.accept(m));
          const header = new TextEncoder().encode(JSON.stringify({
            v: 1, type: "preview", stream: "cam", epoch: "e1", seq: 7, frame: 9,
            captured_at: 1, width: 2, height: 1,
          }));
          const bytes = new Uint8Array(8 + header.length + 3);
          bytes.set(new TextEncoder().encode("FCP1"));
          new DataView(bytes.buffer).setUint32(4, header.length, false);
          bytes.set(header, 8);
          bytes.set([0xff, 0xd8, 0xff], 8 + header.length);
          const preview = decodePreview(bytes.buffer);
          return {
            accepted,
            duplicates: cursor.duplicates,
            preview: {
              seq: preview.seq, type: preview.type, size: preview.jpeg.size, mime: preview.jpeg.type,
            },
            junk: decodePreview(new TextEncoder().encode("not a preview").buffer),
            url: websocketUrl("ws", { token: "t k", base: "https://example.com/cams/" }),
          };
        }"""
    )
    assert outcome == {
        "accepted": [False, True, False, True, False, True],
        "duplicates": 3,
        "preview": {"seq": 7, "type": "preview", "size": 3, "mime": "image/jpeg"},
        "junk": None,
        "url": "wss://example.com/cams/ws?token=t+k",
    }
