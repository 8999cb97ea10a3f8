"""Stopping a producer whose user predictor never returns: bounded, then abandoned or killed."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.producer import Listener, start_producer
from tests.support.wait import wait_until

if TYPE_CHECKING:
    from tests.support.valkey import RedisServer

_STUCK = """
import os
import threading

def predict(frame):
    # Say we are in, then never return (as a model stuck in a driver call would).
    with open(os.environ["STUCK_MARKER"], "a") as marker:
        marker.write(f"{os.getpid()}\\n")
    threading.Event().wait()
"""


@pytest.mark.parametrize(
    ("workers", "logged"),
    [("0", "abandoning its thread"), ("1", "killing 1 worker process")],
)
def test_a_predictor_that_never_returns_does_not_block_shutdown(
    workers: str, logged: str, tmp_path: Path, redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    (tmp_path / "stuck_plugin.py").write_text(textwrap.dedent(_STUCK))
    marker = tmp_path / "entered"
    env = dict(child_env)
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env['PYTHONPATH']}"
    env["STUCK_MARKER"] = str(marker)
    args = ["--detector", "stuck_plugin:predict", "--workers", workers, "--no-demand"]
    with Listener(redis_server.url) as heard:
        producer = start_producer(redis_server.url, args, env=env)
        try:
            wait_until(marker.exists, timeout=60, what="the predictor to be called")
            pids = [int(line) for line in marker.read_text().split()]
            heard.wait_for(lambda: heard.statuses, what="a heartbeat while the predictor hangs")
            # SIGTERM; stop() falls back to SIGKILL (status -9) if the producer hung.
            status = producer.stop(timeout=30)
        finally:
            producer.stop()
        assert status == 0, producer.logs
        heard.wait_for(lambda: heard.statuses[-1].state == "offline", what="the final offline heartbeat")
    assert logged in producer.logs, producer.logs
    assert not heard.results  # the predictor never answered
    if workers != "0":
        for pid in pids:  # the stuck worker process is gone, not orphaned
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
