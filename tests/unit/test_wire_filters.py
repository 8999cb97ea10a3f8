"""The subscription's choices on the wire: kinds, max_rate and the events position."""

from __future__ import annotations

from typing import Any

import pytest

from framecast import wire


def test_a_subscribe_with_every_choice_round_trips() -> None:
    op = wire.Subscribe(
        stream="door", kinds=("event", "status"), max_rate=2.0, event_since=17, event_epoch="9f3a1c2e"
    )
    assert wire.decode_op(wire.encode(op)) == op
    plain = wire.encode(wire.Subscribe(stream="door"))
    assert plain == b'{"op":"subscribe","stream":"door","previews":false}', "nothing new unless chosen"
    reply = wire.Subscribed(stream="door", kinds=("event",), max_rate=0.5)
    assert wire.decode(wire.encode(reply)) == reply


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["status", "event"], ("event", "status")),
        ("event,status", ("event", "status")),
        ("result, result", ("result",)),
        (["result", "event", "status"], wire.KINDS),
    ],
)
def test_kinds_are_read_from_a_list_or_a_query_string(value: Any, expected: tuple[str, ...]) -> None:
    assert wire.parse_kinds(value) == expected


@pytest.mark.parametrize("value", [[], "", "results", ["event", 3], "event,preview", {"event": 1}, None])
def test_bad_kinds_are_refused(value: Any) -> None:
    with pytest.raises(wire.WireError, match="kinds") as caught:
        wire.parse_kinds(value)
    assert caught.value.code == "bad-message"


@pytest.mark.parametrize("value", [0, -1, 1001, float("nan"), float("inf"), "fast", "", True, "\u0661"])
def test_bad_rates_are_refused(value: Any) -> None:
    with pytest.raises(wire.WireError, match="max_rate"):
        wire.parse_max_rate(value)


def test_rates_are_read_from_numbers_and_text() -> None:
    assert wire.parse_max_rate(2) == 2.0
    assert wire.parse_max_rate("0.5") == 0.5
    assert wire.parse_max_rate(wire.MAX_RATE) == wire.MAX_RATE


@pytest.mark.parametrize(
    ("op", "needle"),
    [
        ('{"op":"subscribe","stream":"s","event_since":3}', "event_epoch: required with event_since"),
        ('{"op":"subscribe","stream":"s","kinds":["video"]}', "kinds: unknown kind"),
        ('{"op":"subscribe","stream":"s","max_rate":"2"}', "max_rate"),
        ('{"op":"subscribe","stream":"s","event_since":-1,"event_epoch":"e"}', "event_since"),
    ],
)
def test_a_bad_subscribe_names_the_field(op: str, needle: str) -> None:
    with pytest.raises(wire.WireError, match=needle) as caught:
        wire.decode_op(op)
    assert caught.value.code == "bad-message"


def test_an_event_reset_says_so_and_a_results_reset_is_unchanged() -> None:
    assert wire.encode(wire.Reset(stream="s", reason="history-expired")) == (
        b'{"type":"reset","stream":"s","reason":"history-expired"}'
    )
    reset = wire.Reset(stream="s", reason="history-expired", kind="event")
    assert wire.decode(wire.encode(reset)) == reset


def test_a_gateway_routes_an_event_by_its_own_seq() -> None:
    event = wire.Event(
        stream="s", epoch="e", seq=4, kind="cross", track=2, label="p", frame=9, captured_at=5.0,
        published_at=5.1, line="door", direction="in",
    )  # fmt: skip
    assert wire.peek(wire.encode(event)) == wire.Peek(type="event", epoch="e", seq=4, captured_at=5.0)
