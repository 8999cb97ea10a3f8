"""``framecast watch`` as a real subprocess against a real gateway and valkey."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator

import jwt
import pytest

from framecast.local.embedded import free_port
from tests.support.feed import Feed
from tests.support.gateway import GatewayProc, running_gateway
from tests.support.valkey import RedisServer

SECRET = "watch-tests-secret-of-at-least-32-bytes"


def _watch(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framecast.cli", "watch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def gateway(redis_server: RedisServer) -> Iterator[GatewayProc]:
    with running_gateway(redis_url=redis_server.url, wait="ready") as gw:
        yield gw


@pytest.fixture
def live_feed(redis_server: RedisServer) -> Iterator[Feed]:
    feed = Feed(redis_server.url, "cam")
    feed.publish(3)
    feed.start(rate=25)
    try:
        yield feed
    finally:
        feed.stop()


def test_count_json_prints_that_many_results_as_received(
    gateway: GatewayProc, live_feed: Feed, child_env: dict[str, str]
) -> None:
    done = _watch(gateway.ws_url + "/ws", "--stream", "cam", "--count", "10", "--json", env=child_env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 10
    messages = [json.loads(line) for line in lines]
    assert {m["type"] for m in messages} == {"result"}
    assert {m["stream"] for m in messages} == {"cam"}
    assert {m["epoch"] for m in messages} == {live_feed.epoch}
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + 10))  # consecutive: nothing lost, nothing twice
    # Printed exactly as the gateway forwarded it, which is what the producer published.
    assert lines[0] == json.dumps(messages[0], separators=(",", ":"))
    assert messages[0]["detections"][0]["label"] == "thing"


def test_without_stream_it_watches_what_streams_lists_in_readable_lines(
    gateway: GatewayProc, live_feed: Feed, child_env: dict[str, str]
) -> None:
    done = _watch(gateway.url, "--count", "3", env=child_env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch(r"cam  seq \d+  latency -?\d+ ms  thing 90%", line), line


def test_all_includes_heartbeats_and_connection_messages(
    gateway: GatewayProc, live_feed: Feed, child_env: dict[str, str]
) -> None:
    done = _watch(f"{gateway.ws_url}/ws/cam", "--all", "--json", "--count", "30", env=child_env)
    assert done.returncode == 0, done.stderr
    types = [json.loads(line)["type"] for line in done.stdout.splitlines()]
    assert types[:2] == ["hello", "subscribed"]
    assert types.count("result") == 30
    assert "status" in types


def test_duration_without_results_fails_with_the_reason(
    gateway: GatewayProc, child_env: dict[str, str]
) -> None:
    done = _watch(gateway.url, "--stream", "nobody-home", "--duration", "1.5", env=child_env)
    assert done.returncode == 1
    assert done.stdout == ""
    # The gateway reports a stream without heartbeats as offline, and says why.
    assert re.fullmatch(
        r"framecast watch: error: no results in 1\.5 s "
        r"\(nobody-home: offline \(gateway gw-\d+: no heartbeat.*\)\)",
        done.stderr.strip().splitlines()[-1],
    ), done.stderr


def test_duration_with_results_succeeds(
    gateway: GatewayProc, live_feed: Feed, child_env: dict[str, str]
) -> None:
    done = _watch(gateway.url, "--stream", "cam", "--duration", "1.5", "--json", env=child_env)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) >= 1


def test_unreachable_gateway_fails_with_one_line(child_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = _watch(url, "--stream", "cam", "--retries", "2", env=child_env)
    assert done.returncode == 1
    assert done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("framecast watch: error: ws://127.0.0.1:")
    assert last.endswith("(gave up after 2 attempts)")


def test_refused_token_fails_at_once_without_printing_it(
    redis_server: RedisServer, child_env: dict[str, str]
) -> None:
    wrong = jwt.encode({"streams": "*"}, "a-different-secret-of-at-least-32-bytes", algorithm="HS256")
    with running_gateway(redis_url=redis_server.url, args=["--jwt-secret", SECRET], wait="ready") as gw:
        done = _watch(gw.url, "--stream", "cam", env={**child_env, "FRAMECAST_TOKEN": wrong})
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # no retry chatter
    assert "HTTP 401" in lines[0] and "token" in lines[0]
    assert wrong not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://x", "--stream", "a"], "is not a gateway URL"),
        (["http://x:1", "--stream", "no spaces"], "not a valid stream name"),
        (["http://x:1", "--count", "0"], "--count=0: must be greater than 0"),
        (["http://x:1", "--duration", "soon"], "--duration=soon: expected a number"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(
    args: list[str], message: str, child_env: dict[str, str]
) -> None:
    done = _watch(*args, env=child_env)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_closed_pipe_ends_quietly(gateway: GatewayProc, live_feed: Feed, child_env: dict[str, str]) -> None:
    """``framecast watch ... | head -n 2``: watch exits 0 once head has gone, without a traceback."""
    watch = f"{sys.executable} -m framecast.cli watch {gateway.url} --stream cam --json"
    done = subprocess.run(
        ["/bin/bash", "-c", f"{watch} | head -n 2; echo watch-status=${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=60,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stderr
    assert all(json.loads(line)["type"] == "result" for line in lines[:2])
    assert lines[2] == "watch-status=0"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
