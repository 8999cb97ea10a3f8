"""The Python client with events and subscription filters, against a scripted WebSocket server.

Like test_client_protocol.py: what the client sends (kinds, max_rate, both resume positions) and
what it delivers (events once each, in order, resumed from their own position), pinned down
exactly. The gateway's side of the same contract is tested against real gateways with it.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from framecast import client, wire
from framecast.client import ClientError, Position
from tests.unit.test_client_protocol import Script, _collect, _fast, _result, _text


def _event(seq: int, epoch: str = "e1", *, kind: str = "cross", stream: str = "cam") -> str:
    fields: dict[str, Any] = {"line": "door", "direction": "in"} if kind == "cross" else {"zone": "hall"}
    if kind == "leave":
        fields |= {"lost": False, "dwell": 1.0}
    return _text(
        wire.Event(
            stream=stream,
            epoch=epoch,
            seq=seq,
            kind=kind,
            track=seq,
            label="person",
            frame=seq,
            captured_at=1.0,
            published_at=1.0,
            **fields,
        )
    )


def _events(messages: list[Any]) -> list[tuple[str, int]]:
    return [(m.epoch, m.seq) for m in messages if isinstance(m, wire.Event)]


async def test_events_resume_from_their_own_position_once_each_across_an_epoch_change() -> None:
    script: Script

    async def first(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw-a")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam")))
        await ws.send(_event(1))
        await ws.send(_event(2, kind="enter"))
        await ws.send(_result(10))
        await ws.send(_result(1, epoch="e2"))  # the producer restarted: a result of the new epoch
        await ws.close(wire.CLOSE_GOING_AWAY, "shutting down")

    async def second(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw-b")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam")))
        # The events replay after (e1, 2): the rest of e1, then e2 from its start; one repeat.
        for seq, epoch in ((2, "e1"), (3, "e1"), (1, "e2"), (2, "e2")):
            await ws.send(_event(seq, epoch))
        await ws.send(_event(3, "e2"))  # live
        await ws.wait_closed()

    script = Script(first, second)
    async with script.running() as url, client.subscribe(url, ["cam"], delays=_fast) as sub:
        got = await _collect(sub, until=lambda g: _events(g)[-1:] == [("e2", 3)])
    assert _events(got) == [("e1", 1), ("e1", 2), ("e1", 3), ("e2", 1), ("e2", 2), ("e2", 3)]
    # Results moved on to e2 while events were still at (e1, 2): each position on its own.
    assert script.ops[1] == [
        {
            "op": "subscribe",
            "stream": "cam",
            "since": 1,
            "epoch": "e2",
            "previews": False,
            "event_since": 2,
            "event_epoch": "e1",
        }
    ]
    assert sub.cursor.event_position("cam") == Position("e2", 3)
    assert sub.cursor.duplicates == 1


async def test_live_events_ahead_of_a_resubscription_wait_for_the_replay_only_if_one_comes() -> None:
    script: Script

    async def handler(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam")))
        await ws.send(_event(4))
        await ws.send(_text(wire.Gap(stream="cam")))  # 5 was lost
        await ws.send(_event(6))  # live, before the resubscription was taken: the replay has it
        op = await script.recv_op(ws)
        assert (op["event_since"], op["event_epoch"]) == (4, "e1")
        await ws.send(_text(wire.Subscribed(stream="cam")))
        for seq in (5, 6, 7):
            await ws.send(_event(seq))
        await ws.wait_closed()

    script = Script(handler)
    async with script.running() as url, client.subscribe(url, ["cam"], delays=_fast) as sub:
        got = await _collect(sub, until=lambda g: _events(g)[-1:] == [("e1", 7)])
    assert _events(got) == [("e1", s) for s in (4, 5, 6, 7)]
    assert sub.cursor.duplicates == 0


async def test_without_an_event_position_nothing_is_held_back_for_a_replay() -> None:
    script: Script

    async def handler(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam")))
        await ws.send(_result(1))
        await ws.send(_text(wire.Gap(stream="cam")))
        await ws.send(_event(9))  # no event seen before: the resubscription asks no replay of them
        assert "event_since" not in await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam")))
        await ws.send(_event(10))
        await ws.wait_closed()

    script = Script(handler)
    async with script.running() as url, client.subscribe(url, ["cam"], delays=_fast) as sub:
        got = await _collect(sub, until=lambda g: _events(g)[-1:] == [("e1", 10)])
    assert _events(got) == [("e1", 9), ("e1", 10)]


async def test_kinds_and_max_rate_are_asked_for_and_only_wanted_positions_resume() -> None:
    script: Script

    async def first(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam", kinds=("event", "status"))))
        await ws.send(_event(1))
        await ws.close(wire.CLOSE_GOING_AWAY, "bye")

    async def second(ws: ServerConnection, _: int) -> None:
        await ws.send(_text(wire.Hello(gateway="gw")))
        await script.recv_op(ws)
        await ws.send(_text(wire.Subscribed(stream="cam", kinds=("event", "status"))))
        await ws.send(_event(2))
        await ws.wait_closed()

    script = Script(first, second)
    async with (
        script.running() as url,
        client.subscribe(
            url,
            ["cam"],
            kinds=["status", "event"],
            max_rate=2,
            event_since={"cam": Position("e0", 7)},
            delays=_fast,
        ) as sub,
    ):
        got = await _collect(sub, until=lambda g: _events(g)[-1:] == [("e1", 2)])
    first_op, second_op = script.ops[0][0], script.ops[1][0]
    assert first_op == {
        "op": "subscribe",
        "stream": "cam",
        "previews": False,
        "kinds": ["event", "status"],
        "max_rate": 2.0,
        "event_since": 7,
        "event_epoch": "e0",
    }
    # No results are wanted: no `since`, however the cursor stands.
    assert second_op["event_since"] == 1 and "since" not in second_op
    assert [type(m).__name__ for m in got].count("Subscribed") == 2


@pytest.mark.parametrize(
    ("kwargs", "needle"), [({"kinds": ["video"]}, "unknown kind"), ({"max_rate": 0}, "max_rate")]
)
def test_bad_filters_fail_at_once(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ClientError, match=needle):
        client.subscribe("ws://127.0.0.1:1/ws", ["cam"], **kwargs)


def test_watch_prints_events_track_ids_and_counters_on_one_line_each() -> None:
    from framecast.client.watch import _line

    result = wire.decode(
        '{"v":1,"type":"result","stream":"door","epoch":"e","seq":5,"frame":9,"captured_at":1,'
        '"published_at":1,"width":640,"height":480,"detections":[{"label":"person","confidence":0.9,'
        '"box":[1,2,3,4],"track":7}],"occupancy":{"hall":2},"crossings":{"door":{"in":12,"out":9}}}'
    )
    text = _line(result)  # type: ignore[arg-type]
    assert text is not None and "person#7 90%  hall 2  door in 12 out 9" in text
    event = wire.decode(_event(17))
    line = _line(event)  # type: ignore[arg-type]
    assert line is not None and line.startswith("cam  event 17  cross door in  track 17 person  latency ")
    leave = wire.decode(_event(3, kind="leave"))
    assert "leave hall after 1.0 s" in (_line(leave) or "")  # type: ignore[arg-type]
