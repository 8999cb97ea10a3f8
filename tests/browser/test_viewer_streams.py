"""The viewer's stream picker and stream state, against one real gateway fed like a producer."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from framecast.local.cameras import Camera
from framecast.local.up import running
from tests.support.chromium import chromium, status, wait_status
from tests.support.feed import Feed
from tests.support.gateway import GatewayProc, running_gateway
from tests.support.valkey import RedisServer

pytestmark = pytest.mark.browser


@pytest.fixture
def gateway(redis_server: RedisServer) -> Iterator[GatewayProc]:
    with running_gateway(redis_url=redis_server.url, wait="ready") as gw:
        yield gw


@pytest.fixture
def feeds(redis_server: RedisServer) -> Iterator[dict[str, Feed]]:
    feeds = {name: Feed(redis_server.url, name) for name in ("north", "south")}
    for feed in feeds.values():
        feed.publish(1)
        feed.heartbeat()  # listed by /streams from now on
        feed.start(rate=20)
    try:
        yield feeds
    finally:
        for feed in feeds.values():
            feed.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1000, "height": 700})
        yield context.new_page()
        context.close()


def test_picker_lists_live_streams_and_switches_between_them(
    gateway: GatewayProc, feeds: dict[str, Feed], page: Page
) -> None:
    page.goto(gateway.url + "/?previews=0")
    # No ?stream=: the first stream /streams lists.
    wait_status(page, "s.stream === 'north' && s.connection === 'open' && +s.results >= 3")
    assert status(page)["epoch"] == feeds["north"].epoch
    assert page.eval_on_selector_all("#stream option", "opts => opts.map(o => o.value)") == ["north", "south"]

    page.select_option("#stream", "south")
    wait_status(page, f"s.stream === 'south' && s.epoch === '{feeds['south'].epoch}'")
    switched_at = int(status(page)["results"])
    wait_status(page, f"+s.results >= {switched_at + 3} && s.streamState === 'online'")
    assert page.evaluate("() => new URL(location.href).searchParams.get('stream')") == "south"
    # Only south's results are drawn after the switch, still one connection.
    seqs = page.evaluate("() => window.framecastViewer.seqs")
    epochs_after = {epoch for epoch, _ in seqs[switched_at:]}
    assert epochs_after == {feeds["south"].epoch}
    assert status(page)["reconnects"] == "0"


def test_a_stream_without_a_producer_shows_offline(gateway: GatewayProc, page: Page) -> None:
    page.goto(gateway.url + "/?stream=nobody-home")
    wait_status(page, "s.connection === 'open' && s.streamState === 'offline'")
    assert page.text_content("#stream-state") == "offline"
    assert status(page)["results"] == "0"
    assert page.is_visible("#placeholder")


def test_picker_lists_every_camera_of_one_framecast_up(child_env: dict[str, str], page: Page) -> None:
    cams = tuple(
        Camera(name=name, source="synthetic", options=(("detector", detector), ("max_fps", "5")))
        for name, detector in (("porch", "motion"), ("garage", "qr"), ("attic", "motion"))
    )
    with running(gateways=2, env=child_env, cameras=cams) as stack:
        page.goto(stack.url + "?previews=0")
        # /streams lists them by name: the first one is shown, and the picker offers all three.
        wait_status(page, "s.stream === 'attic' && s.connection === 'open' && +s.results >= 2")
        options = page.eval_on_selector_all("#stream option", "opts => opts.map(o => o.value)")
        assert options == ["attic", "garage", "porch"]

        page.select_option("#stream", "garage")
        wait_status(page, "s.stream === 'garage' && s.streamState === 'online'")
        switched_at = int(status(page)["results"])
        wait_status(page, f"+s.results >= {switched_at + 2}")
        epochs = {epoch for epoch, _ in page.evaluate("() => window.framecastViewer.seqs")[switched_at:]}
        with urllib.request.urlopen(stack.url + "streams", timeout=5) as response:
            listed = {s["stream"]: s["epoch"] for s in json.loads(response.read())}
        assert sorted(listed) == ["attic", "garage", "porch"]
        assert epochs == {listed["garage"]}  # only garage's producer's results after the switch
        assert stack.failure is None
