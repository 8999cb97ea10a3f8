"""A page on another origin imports a real gateway's ``/client.js`` in a real Chromium.

Two origins on 127.0.0.1: a tiny static server (this test's page, the "other origin") and the
gateway. With the page's origin in ``--origins`` the module import succeeds and the page receives
a result over the gateway's WebSocket; with ``--origins`` excluding it, the browser refuses the
import (no ``Access-Control-Allow-Origin`` for that origin).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Browser

from tests.support.chromium import WAIT_MS, chromium
from tests.support.gateway import FakeProducer, GatewayProc, running_gateway
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

pytestmark = pytest.mark.browser

STREAM = "cors"
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>another origin</title>
<script type="module">
  window.results = [];
  try {
    const { subscribe } = await import("http://127.0.0.1:%(port)d/client.js");
    subscribe(["%(stream)s"], {
      url: "ws://127.0.0.1:%(port)d/ws",
      onMessage(msg) { if (msg.type === "result") window.results.push(msg.seq); },
    });
    window.outcome = "imported";
  } catch (error) {
    window.outcome = "failed: " + error;
  }
</script>
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _page_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free loopback port: the page's own origin."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="page-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def _open(browser: Browser, origin: str, directory: Path, gw: GatewayProc) -> Any:
    (directory / "index.html").write_text(PAGE % {"port": gw.port, "stream": STREAM})
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{origin}/index.html")
    page.wait_for_function("() => window.outcome !== undefined", timeout=WAIT_MS, polling=50)
    return context, page


def test_a_page_on_an_allowed_origin_imports_the_client_and_receives_a_result(
    browser: Browser, redis_server: RedisServer, tmp_path: Path
) -> None:
    with _page_server(tmp_path) as origin:
        args = ["--origins", f"{origin},https://app.example"]
        with running_gateway(redis_url=redis_server.url, args=args, wait="ready") as gw:
            context, page = _open(browser, origin, tmp_path, gw)
            try:
                assert page.evaluate("() => window.outcome") == "imported"
                producer = FakeProducer(redis_server.url, STREAM)
                producer.status(ttl=60)
                try:

                    def received() -> list[int]:
                        # Publish until one arrives: the subscription may open after the first ones.
                        producer.result()
                        seqs: list[int] = page.evaluate("() => window.results")
                        return seqs

                    seqs = wait_until(received, timeout=30, what="a result on the page")
                    assert seqs and all(isinstance(s, int) for s in seqs), seqs
                finally:
                    producer.close()
            finally:
                context.close()


def test_a_page_on_an_origin_outside_the_allowlist_cannot_import_the_client(
    browser: Browser, redis_server: RedisServer, tmp_path: Path
) -> None:
    with _page_server(tmp_path) as origin:
        args = ["--origins", "https://app.example"]
        with running_gateway(redis_url=redis_server.url, args=args, wait="ready") as gw:
            context, page = _open(browser, origin, tmp_path, gw)
            try:
                outcome = page.evaluate("() => window.outcome")
                assert outcome.startswith("failed: TypeError"), outcome
                # The gateway did serve the file: it is the browser's CORS check that refused it.
                assert gw.get("/client.js")[0] == 200
            finally:
                context.close()
