"""HTTPS at the balancer: ``framecast up --tls-cert/--tls-key`` serves the viewer and the
WebSocket over TLS beside plain HTTP, with a certificate made in the test."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from framecast import client, wire
from framecast.local.up import running
from tests.support.gateway import gateway_env
from tests.support.tls import self_signed

ROOT = Path(__file__).resolve().parents[2]


def test_the_viewer_and_the_websocket_are_served_over_https_beside_http(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    with running(gateways=2, tls_cert=str(cert), tls_key=str(key), tls_port=0, env=gateway_env()) as stack:
        assert stack.tls_url is not None and stack.tls_url.startswith("https://127.0.0.1:")
        with urllib.request.urlopen(stack.tls_url, context=trust, timeout=10) as page:
            assert b"decode-errors" in page.read()  # the viewer's page
        with urllib.request.urlopen(stack.url, timeout=10) as plain:  # HTTP stays, for health checks
            assert plain.status == 200

        async def results() -> list[wire.Result]:
            got: list[wire.Result] = []
            wss = stack.tls_url.replace("https://", "wss://") + "ws"  # type: ignore[union-attr]
            async with client.subscribe(wss, ["default"], connect_options={"ssl": trust}) as messages:
                async for message in messages:
                    if isinstance(message, wire.Result):
                        got.append(message)
                        if len(got) == 5:
                            return got
            return got

        got = asyncio.run(asyncio.wait_for(results(), 60))
        assert [r.seq for r in got] == list(range(got[0].seq, got[0].seq + 5))


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--tls-cert", "{cert}"], "--tls-cert needs --tls-key"),
        (["--tls-key", "{key}"], "--tls-key needs --tls-cert"),
        (["--tls-cert", "/nonexistent/tls.crt", "--tls-key", "{key}"], "--tls-cert=/nonexistent/tls.crt: "),
    ],
)
def test_a_half_or_missing_certificate_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], complaint: str, child_env: dict[str, str]
) -> None:
    cert, key = self_signed(tmp_path)
    argv = [a.format(cert=cert, key=key) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "up", "--port", "0", *argv],
        capture_output=True, text=True, env=child_env, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and complaint in lines[0], done.stderr
