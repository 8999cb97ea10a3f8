"""The viewer's tracks, zones, lines and events, in a real Chromium, against the door example.

valkey -> producer (examples/door.toml: the scripted door scene, the `people` detector, ByteTrack,
a door line and a hall zone) -> 2 gateways -> nginx -> Chromium. The example the README runs with
one command is the stack under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from framecast.local import cameras
from framecast.local.up import Stack, running
from tests.support.chromium import WAIT_MS, chromium, wait_status
from tests.support.gateway import gateway_env

pytestmark = pytest.mark.browser

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "door.toml"
LINE_PIXEL = """([x, y]) => Array.from(
  document.getElementById("overlay").getContext("2d").getImageData(x, y, 1, 1).data
)"""


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running(gateways=2, cameras=cameras.load(EXAMPLE), env=gateway_env()) as stack:
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


def test_the_door_counter_shows_zones_lines_trails_counters_and_events(
    stack: Stack, page: Page, artifacts: Path
) -> None:
    page.goto(f"{stack.url}?stream=door&previews=0")
    wait_status(page, "s.connection === 'open' && s.stream === 'door' && +s.results > 0")
    state = "window.framecastViewer.overlay"
    # The heartbeat tells where the zone and the line are; every result draws them.
    page.wait_for_function(
        f"() => {state}.drawn.zones === 1 && {state}.drawn.lines === 1", timeout=WAIT_MS, polling=50
    )
    assert page.evaluate(f"() => {state}.zones.hall.length") == 4
    assert page.evaluate(f"() => {state}.lines.door") == [[100, 300], [540, 300]]
    # The line is painted where it is (blank frame: previews off), in the line colour.
    assert page.evaluate(LINE_PIXEL, [320, 300])[:3] == [255, 200, 0]
    # Tracked people get a trail; the first one through the door makes a crossing, then an enter.
    page.wait_for_function(f"() => {state}.drawn.trails >= 1", timeout=WAIT_MS, polling=50)
    page.wait_for_selector("#events li[data-kind='cross']", timeout=WAIT_MS)
    page.wait_for_selector("#events li[data-kind='enter']", timeout=WAIT_MS)
    page.wait_for_function(
        f"() => ({state}.crossings.door ?? {{in: 0}}).in >= 1", timeout=WAIT_MS, polling=50
    )
    events = page.evaluate(f"() => {state}.events")
    cross = next(e for e in events if e["kind"] == "cross")
    assert cross["line"] == "door" and cross["direction"] == "in" and cross["label"] == "person"
    assert f"#{cross['track']} person crossed door in" in page.text_content("#events")
    assert not page.is_hidden("#analytics")
    counters = page.text_content("#counters li[data-key='line:door']") or ""
    assert "in " in counters and "out " in counters
    assert page.text_content("#counters li[data-key='zone:hall']")
    page.screenshot(path=str(artifacts / "viewer-door.png"))


def test_a_new_epoch_starts_new_trails_under_reused_track_ids(stack: Stack, page: Page) -> None:
    # A restarted producer numbers its tracks from 1 again: its track 1 is not the old track 1.
    page.goto(f"{stack.url}?stream=door&previews=0")
    wait_status(page, "s.connection === 'open'")
    trails = page.evaluate(
        """async () => {
            const { Overlay } = await import("./overlay.js");
            const overlay = new Overlay({
                counters: document.createElement("ul"), events: document.createElement("ol"),
            });
            const result = (epoch, x) => ({
                type: "result", epoch, detections: [{ label: "person", box: [x, 10, x + 20, 50], track: 1 }],
            });
            overlay.onResult(result("a", 10));
            overlay.onResult(result("a", 30));
            const before = overlay.trails.get(1).points.length;
            overlay.onResult(result("b", 300));
            return [before, overlay.trails.get(1).points];
        }"""
    )
    assert trails == [2, [[310, 50]]]
