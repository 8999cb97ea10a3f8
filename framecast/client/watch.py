"""``framecast watch``: print the results a gateway serves, one line each.

A thin command-line face of :mod:`framecast.client`: it reconnects, resumes and
de-duplicates like any client, so what it prints is what an application sees.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from framecast import client, logs, settings, wire
from framecast.settings import option

__all__ = ["WatchConfig", "list_streams", "main"]

DESCRIPTION = """\
Print the live results of framecast streams, one line per result:

  cam1  seq 1234  latency 42 ms  person 91%, car 55%

Latency is the time from capture to this terminal; it includes any offset
between the camera host's clock and this machine's. With --json, each result
is printed as received from the gateway, one JSON object per line (NDJSON).

URL is the viewer's address (http://host:port), a ws://host:port/ws URL, or
ws://host:port/ws/STREAM. Without --stream, every stream the gateway lists at
/streams is watched. Dropped connections are retried with backoff and resumed
without loss or duplicates within the gateway's history window."""

EPILOG = """\
exit status:
  0  --count N results arrived (before --duration ran out, if given); or,
     with only --duration, at least one result arrived in that time
  1  too few or no results, the gateway could not be reached (after
     --retries attempts), refused the token (HTTP 401/403) or every stream
  2  bad arguments
  130 interrupted (Ctrl-C) while running without --count or --duration

examples:
  framecast watch http://127.0.0.1:8080 --stream default --count 10
  framecast watch ws://127.0.0.1:8080/ws/cam1 --json --duration 5 | jq .seq
  FRAMECAST_TOKEN=eyJ... framecast watch https://cams.example.com --stream lobby"""


@dataclass(frozen=True, kw_only=True)
class WatchConfig:
    """Settings of ``framecast watch``."""

    count: int | None = option(
        None,
        help="Stop with status 0 after this many results.",
        env="FRAMECAST_WATCH_COUNT",
        check=settings.positive,
        metavar="N",
        group="when to stop",
    )
    duration: float | None = option(
        None,
        help="Stop after this many seconds (status 1 if --count was not reached, or nothing arrived).",
        env="FRAMECAST_WATCH_DURATION",
        check=settings.positive,
        metavar="SECONDS",
        group="when to stop",
    )
    json: bool = option(
        False,
        help="Print each message exactly as received, one JSON object per line.",
        env="FRAMECAST_WATCH_JSON",
        group="output",
    )
    all: bool = option(
        False,
        help="Also print heartbeats, resets, gaps and connection messages, not only results.",
        env="FRAMECAST_WATCH_ALL",
        group="output",
    )
    token: str | None = option(
        None,
        help="Access token (JWT) for gateways that require one; prefer the variable, "
        "which other users cannot read from the process list.",
        env="FRAMECAST_TOKEN",
        metavar="T",
        group="connection",
    )
    retries: int = option(
        5,
        help="Failed connection attempts in a row before giving up (0: retry forever).",
        env="FRAMECAST_WATCH_RETRIES",
        check=settings.non_negative,
        metavar="N",
        group="connection",
    )


def _positional(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url", metavar="URL", help="gateway or load balancer: http://host:port or ws://host:port/ws"
    )
    parser.add_argument(
        "--stream",
        "-s",
        dest="streams",
        action="append",
        default=[],
        metavar="S",
        help="Stream to watch; repeat or separate with commas for several [default: all at /streams].",
    )


def list_streams(url: str, *, token: str | None = None, timeout: float = 5.0) -> list[str]:
    """Names of the streams a gateway lists at ``/streams``.

    Args:
        url: Any URL :func:`framecast.client.websocket_url` accepts.
        token: Sent as ``Authorization: Bearer``.
        timeout: Seconds for the HTTP request.

    Raises:
        client.ClientError: Unreachable, refused, or not a stream list.
    """
    ws_url, _ = client.websocket_url(url)
    parts = urllib.parse.urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path[: -len("ws")] + "streams"
    http_url = urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))
    request = urllib.request.Request(http_url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: Any = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise client.AuthError(
                f"{http_url}: HTTP {exc.code}: the gateway refused the token", status=exc.code
            ) from None
        raise client.ClientError(f"{http_url}: HTTP {exc.code} {exc.reason}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise client.ClientError(f"cannot list streams at {http_url}: {reason}") from None
    items = body.get("streams") if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise client.ClientError(f"{http_url}: expected a list of streams, got {type(body).__name__}")
    # Gateways answer [{"stream": name, "state": ..., ...}, ...]; plain names are accepted too.
    names = [
        item if isinstance(item, str) else item.get("stream")
        for item in items
        if isinstance(item, str | dict)
    ]
    return [n for n in names if isinstance(n, str)]


def _split_streams(values: Sequence[str]) -> list[str]:
    streams: dict[str, None] = {}
    for value in values:
        for name in value.split(","):
            if name.strip():
                streams[wire.check_stream_name(name.strip())] = None
    return list(streams)


def _labels(result: wire.Result) -> str:
    if not result.detections:
        return "-"
    return ", ".join(f"{d.label} {d.confidence * 100:.0f}%" for d in result.detections)


def _line(message: client.Message) -> str | None:
    """The human-readable line for a message (None: not worth a line)."""
    if isinstance(message, wire.Result):
        latency = (time.time() - message.captured_at) * 1000
        return f"{message.stream}  seq {message.seq}  latency {latency:.0f} ms  {_labels(message)}"
    if isinstance(message, wire.Status):
        state = message.state if message.active else f"{message.state}, paused"
        return (
            f"{message.stream}  status {state}  seq {message.seq}  {message.process_fps:.1f} fps "
            f"(capture {message.capture_fps:.1f}, skipped {message.skipped}, reconnects {message.reconnects})"
        )
    if isinstance(message, wire.Hello):
        return f"connected to gateway {message.gateway}"
    if isinstance(message, wire.Reset):
        return f"{message.stream}  reset ({message.reason}): earlier results cannot be replayed"
    if isinstance(message, wire.Gap):
        return f"{message.stream}  gap ({message.reason}): asking for a replay"
    if isinstance(message, wire.Subscribed):
        return f"{message.stream}  subscribed"
    if isinstance(message, wire.Unsubscribed):
        return f"{message.stream}  unsubscribed"
    return None


@dataclass
class _Tally:
    results: int = 0
    last_status: dict[str, wire.Status] | None = None


def _quiet_reason(streams: Sequence[str], tally: _Tally) -> str:
    statuses = tally.last_status or {}
    hints = []
    for stream in streams:
        status = statuses.get(stream)
        if status is None:
            hints.append(f"{stream}: no heartbeat either (is a producer publishing it?)")
        elif status.state == "offline":
            # The gateway says why in `source` when it made the status itself (no heartbeat).
            hints.append(f"{stream}: offline" + (f" ({status.source})" if status.source else ""))
        else:
            hints.append(f"{stream}: heartbeats arrive but no results")
    return "; ".join(hints)


async def _watch(
    config: WatchConfig, url: str, streams: list[str], prog: str, out: TextIO, tally: _Tally
) -> int:
    def on_disconnect(reason: str, delay: float) -> None:
        print(f"{prog}: {reason}; reconnecting in {delay:.1f} s", file=sys.stderr, flush=True)

    tally.last_status = {}
    subscription = client.subscribe(
        url,
        streams,
        token=config.token,
        max_attempts=config.retries or None,
        on_disconnect=on_disconnect,
    )
    deadline = asyncio.timeout(config.duration)
    try:
        async with deadline:
            async for message in subscription:
                if isinstance(message, wire.Status):
                    tally.last_status[message.stream] = message
                if isinstance(message, wire.Error):
                    where = f" ({message.stream})" if message.stream else ""
                    print(f"{prog}: gateway error{where}: {message.code}: {message.message}", file=sys.stderr)
                elif isinstance(message, wire.Result) or config.all:
                    raw = subscription.raw
                    text = raw if config.json and isinstance(raw, str) else _line(message)
                    if text is not None:
                        print(text, file=out, flush=True)
                if isinstance(message, wire.Result):
                    tally.results += 1
                    if config.count is not None and tally.results >= config.count:
                        return 0
    except TimeoutError:
        if not deadline.expired():
            raise
    finally:
        await subscription.aclose()
    if config.count is not None:
        return settings.fail(
            prog, f"received {tally.results} of {config.count} results in {config.duration:g} s"
        )
    if tally.results == 0:
        return settings.fail(
            prog,
            f"no results in {config.duration:g} s ({_quiet_reason(subscription.streams or streams, tally)})",
        )
    return 0


def main(argv: Sequence[str] | None = None, *, prog: str = "framecast watch") -> int:
    """Run ``framecast watch``; returns the exit status (see ``--help``)."""
    config, args = settings.parse_with_args(
        WatchConfig, argv, prog=prog, description=DESCRIPTION, epilog=EPILOG, extra=_positional
    )
    logs.setup("WARNING", name="watch")
    try:
        client.websocket_url(args.url)
        streams = _split_streams(args.streams)
    except (client.ClientError, wire.WireError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    tally = _Tally()
    try:
        if not streams and client.websocket_url(args.url)[1] is None:
            streams = list_streams(args.url, token=config.token)
            if not streams:
                return settings.fail(prog, f"{args.url} lists no streams yet: name one with --stream")
        return asyncio.run(_watch(config, args.url, streams, prog, sys.stdout, tally))
    except client.AuthError as exc:
        hint = "check --token / FRAMECAST_TOKEN" if config.token else "pass --token or set FRAMECAST_TOKEN"
        return settings.fail(prog, f"{exc} ({hint})")
    except client.ClientError as exc:
        return settings.fail(prog, str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `framecast watch ... | head`: the reader has what it wanted.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
