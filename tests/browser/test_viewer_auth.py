"""The viewer against a gateway that requires a JWT: the page's ?token= is what gets it in."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
from playwright.sync_api import Browser, Page

from tests.support.chromium import WAIT_MS, chromium, status, wait_status
from tests.support.feed import Feed
from tests.support.gateway import GatewayProc, running_gateway
from tests.support.valkey import RedisServer

pytestmark = pytest.mark.browser

SECRET = "viewer-tests-secret-of-at-least-32-bytes"


def _token(streams: list[str] | str) -> str:
    return jwt.encode({"streams": streams, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


@pytest.fixture
def gateway(redis_server: RedisServer) -> Iterator[GatewayProc]:
    with running_gateway(redis_url=redis_server.url, args=["--jwt-secret", SECRET], wait="ready") as gw:
        yield gw


@pytest.fixture
def feed(redis_server: RedisServer) -> Iterator[Feed]:
    feed = Feed(redis_server.url, "cam", width=320, height=240)
    feed.publish(2)
    feed.start(rate=20)
    try:
        yield feed
    finally:
        feed.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    browser: Browser
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1000, "height": 700})
        yield context.new_page()
        context.close()


def test_token_from_the_page_url_opens_the_stream(gateway: GatewayProc, feed: Feed, page: Page) -> None:
    page.goto(f"{gateway.url}/?stream=cam&previews=0&token={_token(['cam'])}")
    wait_status(page, "s.connection === 'open' && +s.results >= 5 && +s.boxes >= 5")
    s = status(page)
    assert s["gateway"] == gateway.id
    assert s["epoch"] == feed.epoch
    # Boxes are in the source frame's pixel grid: the canvas takes the result's size.
    assert page.evaluate("() => [overlay.width, overlay.height]") == [320, 240]
    assert page.text_content("#detections li[data-label] span") == "thing"


def test_missing_token_stops_with_the_reason_instead_of_retrying(
    gateway: GatewayProc, feed: Feed, page: Page
) -> None:
    page.goto(f"{gateway.url}/?stream=cam")
    wait_status(page, "s.connection === 'failed'")
    message = page.text_content("#message") or ""
    assert "HTTP 401" in message and "token" in message
    assert page.text_content("#connection") == "disconnected"
    assert status(page)["results"] == "0"


def test_token_for_another_stream_shows_the_refusal(gateway: GatewayProc, feed: Feed, page: Page) -> None:
    page.goto(f"{gateway.url}/?stream=cam&token={_token(['elsewhere'])}")
    # The client gives up (every stream it asked for was refused) and the viewer says why.
    page.wait_for_function(
        "() => document.getElementById('message').textContent.startsWith('the gateway refused every stream')",
        timeout=WAIT_MS,
    )
    assert "cam: forbidden" in (page.text_content("#message") or "")
    assert status(page)["connection"] == "failed"
    assert status(page)["results"] == "0"
