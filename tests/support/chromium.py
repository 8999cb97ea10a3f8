"""Drive Debian's Chromium with Playwright, and read the viewer's test hooks."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

# scripts/test.sh installs Debian's chromium here; FRAMECAST_CHROMIUM points elsewhere.
CHROMIUM = Path(os.environ.get("FRAMECAST_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WAIT_MS = 30_000  # a bound for every wait_for_function: generous, the machine is shared

OVERLAY_PIXELS = """() => {
  const c = document.getElementById("overlay");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
  return n;
}"""
"""Count of painted (non-transparent) pixels on the box overlay."""

FRAME_PIXEL = """([x, y]) => Array.from(
  document.getElementById("frame").getContext("2d").getImageData(x, y, 1, 1).data
)"""
"""RGBA of one pixel of the picture canvas."""


@contextlib.contextmanager
def chromium(*, args: tuple[str, ...] = ()) -> Iterator[Browser]:
    """A headless Chromium for the duration of the block (``args``: more command-line switches)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*ARGS, *args]
        )
        try:
            yield browser
        finally:
            browser.close()


def status(page: Page) -> dict[str, str]:
    """The viewer's ``#status`` data-* attributes (camelCase keys, as in ``dataset``)."""
    result: dict[str, str] = page.evaluate("() => ({...document.getElementById('status').dataset})")
    return result


def wait_status(page: Page, condition: str, *, timeout: float = WAIT_MS) -> None:
    """Wait until a JS expression over ``s`` (the #status dataset) is true."""
    page.wait_for_function(
        f"() => {{ const s = document.getElementById('status').dataset; return {condition}; }}",
        timeout=timeout,
        polling=50,
    )
