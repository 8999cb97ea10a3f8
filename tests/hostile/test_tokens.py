"""Hostile tokens against a real gateway requiring HS256 tokens (issue 12).

docs/protocol.md: 401 for a missing, invalid or expired token; 403 when it does not allow the
stream in the path; ``alg`` only selects between configured keys (``none`` refused); the
``streams`` claim is a list of names or ``"*"``; close 4001 when the token expires mid-connection.
"""

from __future__ import annotations

import base64
import json
import time

import pytest

from tests.hostile._frames import FrameReader, status_of
from tests.hostile.conftest import Bench, token
from tests.support.gateway import raw_websocket


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _status(bench: Bench, path: str, *, headers: dict[str, str] | None = None) -> int | None:
    sock, head = raw_websocket(bench.port, path, headers=headers)
    sock.close()
    return status_of(head)


def _refused() -> dict[str, str]:
    now = int(time.time())
    signed_part = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64({"streams": "*"})
    return {
        "forged (another secret)": token(key="not-the-secret-" * 5),
        "expired": token({"streams": "*", "exp": now - 3600}),
        "not yet valid": token({"streams": "*", "nbf": now + 3600}),
        "wrong algorithm (HS512)": token(algorithm="HS512"),
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({"streams": "*"}) + ".",
        "alg None unsigned": _b64({"alg": "None"}) + "." + _b64({"streams": "*"}) + ".",
        "RS256 header, HMAC signature": _b64({"alg": "RS256"})
        + "."
        + _b64({"streams": "*"})
        + "."
        + "a" * 43,
        "signature stripped": signed_part + ".",
        "garbage": "not.a.token",
        "oversized claims": token({"streams": ["s" * 60] * 60}, key="not-the-secret-" * 5),
        # Known defect (issue 12): a plain string was read as a one-stream list.
        "streams as a plain string": token({"streams": "default"}),
    }


@pytest.mark.parametrize("name", list(_refused()))
@pytest.mark.parametrize("where", ["query", "header"])
def test_bad_tokens_are_refused_with_401(auth_bench: Bench, name: str, where: str) -> None:
    bad = _refused()[name]
    if where == "query":
        got = _status(auth_bench, f"/ws/default?token={bad}")
    else:
        got = _status(auth_bench, "/ws/default", headers={"Authorization": f"Bearer {bad}"})
    assert got == 401, f"{name} ({where}): {got}"
    auth_bench.assert_undisturbed()


def test_no_token_is_401_and_a_token_for_another_stream_403(auth_bench: Bench) -> None:
    assert _status(auth_bench, "/ws/default") == 401
    assert _status(auth_bench, "/ws") == 401
    assert _status(auth_bench, f"/ws/default?token={token({'streams': ['lab']})}") == 403
    assert _status(auth_bench, f"/ws/default?token={token({'streams': ['default']})}") == 101
    auth_bench.assert_undisturbed()


def test_a_huge_token_gets_a_4xx_or_a_close(auth_bench: Bench) -> None:
    for size in (16_000, 200_000):
        huge = token({"streams": "*", "pad": "p" * size})
        for headers, path in (
            ({}, f"/ws/default?token={huge}"),
            ({"Authorization": f"Bearer {huge}"}, "/ws/default"),
        ):
            got = _status(auth_bench, path, headers=headers)
            assert got is None or 400 <= got < 500, f"{size}-byte token: {got}"
    auth_bench.assert_undisturbed()


def test_a_token_expiring_mid_connection_closes_with_4001(auth_bench: Bench) -> None:
    short = token({"streams": "*", "exp": int(time.time()) + 3})
    sock, head = raw_websocket(auth_bench.port, f"/ws/default?token={short}")
    with sock:
        assert status_of(head) == 101
        _, code = FrameReader(sock).until_close(timeout=30)
        assert code == 4001
    auth_bench.assert_undisturbed()
