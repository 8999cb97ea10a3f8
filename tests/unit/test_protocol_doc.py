"""docs/protocol.md describes every message type and field that framecast.wire defines."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from framecast import wire

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()

MESSAGES = [
    wire.Hello,
    wire.Subscribed,
    wire.Unsubscribed,
    wire.Result,
    wire.Status,
    wire.Reset,
    wire.Gap,
    wire.Error,
    wire.Preview,
    wire.VideoFrame,
    wire.Subscribe,
    wire.Unsubscribe,
]


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
def test_every_field_is_documented(cls: type) -> None:
    for f in dataclasses.fields(cls):
        if f.name == "jpeg":  # the payload after the header, described in prose
            assert "then        the JPEG" in DOC
            continue
        assert re.search(rf"[`\"]{f.name}[`\"]", DOC), f"{cls.__name__}.{f.name} is not in docs/protocol.md"


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
def test_every_message_type_is_documented(cls: type) -> None:
    kind = next(f.default for f in dataclasses.fields(cls) if f.name in ("type", "op"))
    assert f"`{kind}`" in DOC


def test_every_close_code_is_documented() -> None:
    for code in (
        wire.CLOSE_GOING_AWAY,
        wire.CLOSE_BAD_REQUEST,
        wire.CLOSE_TOKEN_EXPIRED,
        wire.CLOSE_SLOW_CONSUMER,
    ):
        assert f"| {code} |" in DOC


def test_examples_in_the_doc_decode() -> None:
    """Every JSON example of a gateway message in the doc is a valid message."""
    examples = re.findall(r"^(\{\"(?:v|type)\".*?\})$", DOC.replace("\n ", " "), flags=re.M)
    assert len(examples) >= 8
    for example in examples:
        wire.decode(example)
