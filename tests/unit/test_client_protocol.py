"""The Python client's protocol handling, against a scripted in-process WebSocket server.

These pin down exact client behaviour (what it sends on reconnect, what it
drops, when it gives up) that a real gateway cannot be made to provoke on
demand; tests/integration/test_client_gateway.py runs the same client against
real gateway processes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from framecast import client, wire
from framecast.client import AuthError, ClientError, ConnectError, Position
from framecast.local.embedded import free_port

Handler = Callable[[ServerConnection, int], Awaitable[None]]


def _fast() -> Iterator[float]:
    return itertools.repeat(0.01)


def _result(seq: int, epoch: str = "e1", stream: str = "cam") -> str:
    return wire.encode(
        wire.Result(
            stream=stream,
            epoch=epoch,
            seq=seq,
            frame=seq,
            captured_at=1.0,
            published_at=1.0,
            width=64,
            height=48,
        )
    ).decode()


def _text(message: Any) -> str:
    return str(wire.encode(message).decode())


class Script:
    """A WebSocket server whose n-th connection runs ``handlers[n]``; records what clients send."""

    def __init__(self, *handlers: Handler) -> None:
        self.handlers = handlers
        self.connections = 0
        self.ops: list[list[dict[str, Any]]] = []

    async def recv_op(self, ws: ServerConnection) -> dict[str, Any]:
        op: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
        self.ops[-1].append(op)
        return op

    async def _handle(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        self.ops.append([])
        await self.handlers[min(index, len(self.handlers) - 1)](ws, index)

    @asynccontextmanager
    async def running(
        self, process_request: Callable[[ServerConnection, Request], Response | None] | None = None
    ) -> AsyncIterator[str]:
        server: Server
        async with serve(self._handle, "127.0.0.1", 0, process_request=process_request) as server:
            port = server.sockets[0].getsockname()[1]
            yield f"ws://127.0.0.1:{port}/ws"


async def _collect(
    sub: client.Subscription, *, until: Callable[[list[Any]], bool], limit: int = 200
) -> list[Any]:
    got: list[Any] = []
    async with asyncio.timeout(10):
        async for message in sub:
            got.append(message)
            if until(got) or len(got) >= limit:
                break
    return got


def _results(messages: list[Any]) -> list[tuple[str, int]]:
    return [(m.epoch, m.seq) for m in messages if isinstance(m, wire.Result)]


async def test_resumes_with_since_after_going_away_and_drops_replayed_duplicates() -> None:
    script: Script

    async def first(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw-a")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam")))
        for seq in (1, 2, 3):
            await ws.send(_result(seq))
        await ws.close(wire.CLOSE_GOING_AWAY, "shutting down")

    async def second(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw-b")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam")))
        for seq in (2, 3, 4, 5):  # an overlapping replay, as a gateway racing live traffic may send
            await ws.send(_result(seq))
        await ws.wait_closed()

    script = Script(first, second)
    async with script.running() as url:
        sub = client.subscribe(url, ["cam"], delays=_fast)
        async with sub:
            got = await _collect(sub, until=lambda g: _results(g)[-1:] == [("e1", 5)])
    assert _results(got) == [("e1", s) for s in (1, 2, 3, 4, 5)]
    assert [m.gateway for m in got if isinstance(m, wire.Hello)] == ["gw-a", "gw-b"]
    assert script.ops[0] == [{"op": "subscribe", "stream": "cam", "previews": False}]
    assert script.ops[1] == [
        {"op": "subscribe", "stream": "cam", "since": 3, "epoch": "e1", "previews": False}
    ]
    assert sub.reconnects == 1
    assert sub.cursor.duplicates == 2
    assert sub.cursor.position("cam") == Position("e1", 5)


async def test_gap_triggers_a_resubscription_from_the_last_result() -> None:
    script: Script

    async def handler(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam")))
        await ws.send(_result(7))
        await ws.send(_text(wire.Gap(stream="cam")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam")))
        await ws.send(_result(8))
        await ws.wait_closed()

    script = Script(handler)
    async with script.running() as url, client.subscribe(url, ["cam"], delays=_fast) as sub:
        got = await _collect(sub, until=lambda g: _results(g)[-1:] == [("e1", 8)])
    assert [type(m).__name__ for m in got] == ["Hello", "Subscribed", "Result", "Gap", "Subscribed", "Result"]
    assert script.ops[0][1] == {
        "op": "subscribe",
        "stream": "cam",
        "since": 7,
        "epoch": "e1",
        "previews": False,
    }


async def test_live_results_ahead_of_a_resubscription_do_not_skip_the_replay() -> None:
    # What the 500-client fault run lost: after a `gap`, results the gateway sent live before it
    # took the resubscription moved the position past the hole, and the replay that filled it
    # was then dropped as old. A gateway sends `subscribed` first, then the replay.
    script: Script

    async def handler(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam")))
        await ws.send(_result(3))
        await ws.send(_text(wire.Gap(stream="cam", reason="stale")))  # 4 and 5 were dropped
        await ws.send(_result(6))  # live, already on the wire when the resubscription is read
        await ws.send(_result(7))
        assert (await script.recv_op(ws))["since"] == 3
        await ws.send(_text(wire.Subscribed(stream="cam")))
        for seq in (4, 5, 6, 7):  # the replay after since=3
            await ws.send(_result(seq))
        await ws.send(_result(8))  # live again
        await ws.wait_closed()

    script = Script(handler)
    async with script.running() as url, client.subscribe(url, ["cam"], delays=_fast) as sub:
        got = await _collect(sub, until=lambda g: _results(g)[-1:] == [("e1", 8)])
    assert _results(got) == [("e1", s) for s in (3, 4, 5, 6, 7, 8)]
    assert sub.cursor.duplicates == 0


async def test_an_error_answering_a_subscribe_ends_the_wait_for_its_replay() -> None:
    script: Script

    async def handler(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Error(code="bad-message", message="refused once", stream="cam")))
        await ws.send(_result(1))
        await ws.wait_closed()

    script = Script(handler)
    async with script.running() as url, client.subscribe(url, ["cam"], delays=_fast) as sub:
        got = await _collect(sub, until=lambda g: _results(g)[-1:] == [("e1", 1)])
    assert [type(m).__name__ for m in got] == ["Hello", "Error", "Result"]


async def test_reset_keeps_the_position_and_a_new_epoch_is_delivered() -> None:
    script: Script

    async def handler(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam")))
        await ws.send(_result(9, epoch="e1"))
        await ws.send(_result(1, epoch="e2"))  # the restarted producer's first result, live
        await ws.send(_text(wire.Gap(stream="cam")))
        assert (await script.recv_op(ws))["epoch"] == "e2"
        await ws.send(_text(wire.Subscribed(stream="cam")))
        await ws.send(_text(wire.Reset(stream="cam", reason="history-expired")))
        await ws.send(_result(1, epoch="e2"))  # the latest, which this client already has
        await ws.send(_result(9, epoch="e1"))  # a straggler of the replaced epoch
        await ws.send(_result(2, epoch="e2"))
        await ws.wait_closed()

    script = Script(handler)
    async with script.running() as url, client.subscribe(url, ["cam"], delays=_fast) as sub:
        got = await _collect(sub, until=lambda g: _results(g)[-1:] == [("e2", 2)])
    assert _results(got) == [("e1", 9), ("e2", 1), ("e2", 2)]
    assert sub.cursor.resets == {"cam": 1}


async def test_previews_are_decoded_and_bad_or_unknown_messages_are_skipped() -> None:
    preview = wire.Preview(
        stream="cam", epoch="e1", seq=1, frame=1, captured_at=1.0, width=32, height=24, jpeg=b"\xff\xd8jpeg"
    )

    async def handler(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await ws.send(_text(wire.Subscribed(stream="cam", previews=True)))
        await ws.send('{"type":"from-the-future","v":1}')
        await ws.send("not json")
        await ws.send(b"garbage")
        await ws.send(wire.encode_preview(preview))
        await ws.send(wire.encode_preview(preview))
        await ws.send(_result(1))
        await ws.wait_closed()

    async with (
        Script(handler).running() as url,
        client.subscribe(url, ["cam"], previews=True, delays=_fast) as sub,
    ):
        got = await _collect(sub, until=lambda g: bool(_results(g)))
    assert [type(m).__name__ for m in got] == ["Hello", "Subscribed", "Preview", "Result"]
    assert got[2] == preview
    assert sub.raw == _result(1)


async def test_http_401_at_the_handshake_raises_auth_error_without_retrying() -> None:
    attempts = 0

    def refuse(_: ServerConnection, request: Request) -> Response:
        nonlocal attempts
        attempts += 1
        assert request.path == "/ws?token=wrong"
        return Response(401, "Unauthorized", Headers(), b"")

    async with Script().running(refuse) as url:
        sub = client.subscribe(url, ["cam"], token="wrong", delays=_fast)
        with pytest.raises(AuthError, match="HTTP 401") as caught:
            await _collect(sub, until=lambda _: False)
    assert caught.value.status == 401
    assert attempts == 1
    assert "wrong" not in str(caught.value)  # the token is never printed


async def test_other_4xx_at_the_handshake_is_a_client_error() -> None:
    def not_found(_: ServerConnection, __: Request) -> Response:
        return Response(404, "Not Found", Headers(), b"")

    async with Script().running(not_found) as url:
        with pytest.raises(ClientError, match="HTTP 404"):
            await _collect(client.subscribe(url, ["cam"], delays=_fast), until=lambda _: False)


async def test_every_stream_refused_is_a_client_error_naming_them() -> None:
    async def handler(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await ws.send(_text(wire.Subscribed(stream="a")))
        await ws.send(_text(wire.Error(code="forbidden", message="token does not allow b", stream="b")))
        await ws.send(_result(1, stream="a"))
        await ws.send(_text(wire.Error(code="bad-stream", message="no", stream="a")))
        await ws.wait_closed()

    seen: list[Any] = []
    async with Script(handler).running() as url:
        sub = client.subscribe(url, ["a", "b"], delays=_fast)
        with pytest.raises(ClientError, match=r"refused every stream \(b: forbidden.*; a: bad-stream"):
            async for message in sub:
                seen.append(message)
    assert [type(m).__name__ for m in seen] == ["Hello", "Subscribed", "Error", "Result"]


async def test_policy_close_is_not_retried() -> None:
    script: Script

    async def handler(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await ws.close(wire.CLOSE_BAD_REQUEST, "token expired")

    script = Script(handler)
    async with script.running() as url:
        with pytest.raises(ClientError, match="1008: token expired"):
            await _collect(client.subscribe(url, ["cam"], delays=_fast), until=lambda _: False)
    assert script.connections == 1


async def test_unreachable_gateway_gives_up_after_max_attempts() -> None:
    reasons: list[tuple[str, float]] = []
    url = f"ws://127.0.0.1:{free_port()}/ws"
    sub = client.subscribe(
        url, ["cam"], max_attempts=3, delays=_fast, on_disconnect=lambda r, d: reasons.append((r, d))
    )
    with pytest.raises(ConnectError, match="gave up after 3 attempts"):
        await _collect(sub, until=lambda _: False)
    assert len(reasons) == 2
    assert all(r.startswith("cannot connect") and d == 0.01 for r, d in reasons)


async def test_aclose_from_another_task_ends_the_iteration() -> None:
    async def handler(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await ws.wait_closed()

    async with Script(handler).running() as url:
        sub = client.subscribe(url, ["cam"], delays=_fast)
        got: list[Any] = []

        async def consume() -> None:
            async for message in sub:
                got.append(message)

        task = asyncio.create_task(consume())
        async with asyncio.timeout(5):
            while not got:
                await asyncio.sleep(0.01)
            await sub.aclose()
            await task
    assert [type(m).__name__ for m in got] == ["Hello"]
    assert not sub.connected


def test_bad_arguments_fail_at_once() -> None:
    with pytest.raises(ClientError, match="no stream"):
        client.subscribe("http://h:1", [])
    with pytest.raises(ClientError, match="not a valid stream name"):
        client.subscribe("http://h:1", ["no spaces"])
    assert client.subscribe("ws://h:1/ws/cam1", ["cam2"]).streams == ["cam1", "cam2"]


async def test_a_gateway_that_drops_every_connection_after_hello_is_backed_off_then_given_up() -> None:
    made = 0

    def counting() -> Iterator[float]:
        nonlocal made
        made += 1
        return itertools.repeat(0.01)

    async def handler(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await ws.close(wire.CLOSE_SLOW_CONSUMER, "slow consumer")

    script = Script(handler)
    async with script.running() as url:
        sub = client.subscribe(url, ["cam"], max_attempts=4, delays=counting)
        with pytest.raises(ConnectError, match=r"4008: slow consumer\) \(gave up after 4 attempts\)"):
            await _collect(sub, until=lambda _: False)
    assert script.connections == 4
    assert made == 1  # hellos alone never restarted the backoff
