"""Pure logic of the Python client: positions, de-duplication, backoff, URL handling."""

from __future__ import annotations

import itertools

import pytest

from framecast import wire
from framecast.client import POSITION_AHEAD, ClientError, Cursor, Position, backoff, websocket_url


def _result(seq: int, epoch: str = "e1", stream: str = "cam") -> wire.Result:
    return wire.Result(
        stream=stream, epoch=epoch, seq=seq, frame=seq, captured_at=1.0, published_at=1.0, width=64, height=48
    )


def _preview(seq: int, epoch: str = "e1", stream: str = "cam") -> wire.Preview:
    return wire.Preview(
        stream=stream, epoch=epoch, seq=seq, frame=seq, captured_at=1.0, width=32, height=24, jpeg=b"jpeg"
    )


def test_cursor_accepts_increasing_seq_and_drops_repeats_and_older() -> None:
    cursor = Cursor()
    assert [cursor.accept(_result(s)) for s in (1, 2, 2, 1, 5, 4, 6)] == [
        True,
        True,
        False,
        False,
        True,
        False,
        True,
    ]
    assert cursor.duplicates == 3
    assert cursor.position("cam") == Position("e1", 6)


def test_cursor_tracks_streams_independently() -> None:
    cursor = Cursor()
    assert cursor.accept(_result(5, stream="a"))
    assert cursor.accept(_result(1, stream="b"))
    assert not cursor.accept(_result(5, stream="a"))
    assert cursor.positions == {"a": Position("e1", 5), "b": Position("e1", 1)}


def test_cursor_new_epoch_is_accepted_and_old_epoch_stragglers_are_dropped() -> None:
    cursor = Cursor()
    assert cursor.accept(_result(100, epoch="old"))
    assert cursor.accept(_result(1, epoch="new"))
    assert not cursor.accept(_result(101, epoch="old"))
    assert cursor.accept(_result(2, epoch="new"))
    assert cursor.position("cam") == Position("new", 2)


def test_cursor_since_marks_earlier_results_as_seen() -> None:
    cursor = Cursor({"cam": Position("e1", 10)})
    assert not cursor.accept(_result(10))
    assert cursor.accept(_result(11))


def test_cursor_after_reset_still_drops_what_was_delivered() -> None:
    # The 500-client fault run's duplicates: a resubscription with an old-epoch `since` was in
    # flight while the new epoch's first results arrived live; the gateway answered `reset
    # epoch-changed` and the latest result, which this client already had.
    cursor = Cursor()
    assert cursor.accept(_result(41, epoch="old"))
    assert cursor.accept(_result(1, epoch="new"))
    assert cursor.accept(_result(2, epoch="new"))
    cursor.reset("cam")
    assert cursor.position("cam") == Position("new", 2)
    assert not cursor.accept(_result(2, epoch="new"))
    assert not cursor.accept(_result(1, epoch="new"))
    assert cursor.accept(_result(3, epoch="new"))
    assert (cursor.duplicates, cursor.resets) == (2, {"cam": 1})


def test_cursor_after_reset_accepts_the_latest_ahead_of_its_position() -> None:
    cursor = Cursor()
    assert cursor.accept(_result(50))
    cursor.reset("cam")  # history-expired: the latest is far ahead, in the same epoch
    assert cursor.accept(_result(900))
    assert cursor.position("cam") == Position("e1", 900)


def test_cursor_previews_are_deduplicated_apart_from_results() -> None:
    cursor = Cursor()
    assert cursor.accept(_result(7))
    assert cursor.accept(_preview(7))
    assert not cursor.accept(_preview(7))
    assert cursor.accept(_preview(8))
    assert cursor.position("cam") == Position("e1", 7)


def test_cursor_seed_does_not_move_a_known_position() -> None:
    cursor = Cursor()
    cursor.seed("cam", Position("e1", 4))
    assert not cursor.accept(_result(4))
    cursor.seed("cam", Position("e1", 1))
    assert cursor.position("cam") == Position("e1", 4)


def test_backoff_grows_to_the_cap_and_jitter_only_shortens() -> None:
    fixed = list(itertools.islice(backoff(initial=0.5, maximum=4.0, jitter=0.0), 6))
    assert fixed == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    jittered = list(itertools.islice(backoff(initial=0.5, maximum=4.0, jitter=0.5), 200))
    caps = [0.5, 1.0, 2.0] + [4.0] * 197
    assert all(cap * 0.5 <= d <= cap for d, cap in zip(jittered, caps, strict=True))
    assert len({round(d, 6) for d in jittered[3:]}) > 1  # not in lock-step


@pytest.mark.parametrize(
    ("given", "expected", "stream"),
    [
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/ws", None),
        ("http://127.0.0.1:8080/", "ws://127.0.0.1:8080/ws", None),
        ("https://cams.example.com/framecast/", "wss://cams.example.com/framecast/ws", None),
        ("ws://h:1/ws", "ws://h:1/ws", None),
        ("ws://h:1/ws/", "ws://h:1/ws", None),
        ("ws://h:1/ws/cam1?since=3&epoch=e", "ws://h:1/ws", "cam1"),
        ("wss://h/prefix/ws/cam-2", "wss://h/prefix/ws", "cam-2"),
    ],
)
def test_websocket_url_normalises_what_users_type(given: str, expected: str, stream: str | None) -> None:
    assert websocket_url(given) == (expected, stream)


def test_websocket_url_adds_or_replaces_the_token() -> None:
    assert websocket_url("http://h:1/?token=old", token="a b") == ("ws://h:1/ws?token=a+b", None)
    assert websocket_url("http://h:1/?token=kept") == ("ws://h:1/ws?token=kept", None)


@pytest.mark.parametrize("bad", ["ftp://h/", "h:8080", "http://", "/ws"])
def test_websocket_url_rejects_non_gateway_urls(bad: str) -> None:
    with pytest.raises(ClientError, match="not a gateway URL"):
        websocket_url(bad)


def test_cursor_after_reset_a_new_epoch_retires_the_old_one() -> None:
    cursor = Cursor()
    assert cursor.accept(_result(9, epoch="old"))
    cursor.reset("cam")
    assert cursor.accept(_result(1, epoch="new"))
    assert not cursor.accept(_result(10, epoch="old"))
    assert cursor.accept(_result(2, epoch="new"))


def test_cursor_drops_a_position_the_gateway_says_is_ahead_of_the_stream() -> None:
    """Known defect (issue 20): a ``since`` beyond the stream's newest dropped every result."""
    cursor = Cursor({"cam": Position("e1", 1_000_000)})
    assert cursor.accept(_result(5)) is False
    cursor.reset("cam", POSITION_AHEAD)
    assert cursor.position("cam") is None
    assert cursor.accept(_result(5)) and cursor.accept(_result(6))
    cursor.reset("cam", "history-expired")  # any other reason keeps the position
    assert cursor.position("cam") == Position("e1", 6)
