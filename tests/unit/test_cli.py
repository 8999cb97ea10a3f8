"""The ``framecast`` entry point, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from framecast import cli


@pytest.mark.parametrize("args", [[], ["--version"]], ids=["usage", "version"])
def test_a_reader_that_went_away_is_not_a_traceback(args: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `framecast | head` once head has exited: every write fails
    try:
        done = subprocess.run(
            [sys.executable, "-m", "framecast.cli", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 0


def test_usage_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in ("up", "producer", "gateway", "watch", "bench"))


def test_gateway_is_dispatched_to_gateway_main() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "framecast.cli", "gateway", "--help"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().startswith("usage: framecast gateway")
    assert cli._COMMANDS["gateway"][0] == "gateway.main"


def test_bench_without_a_checkout_is_one_line_saying_where_it_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As after `pip install framecast`: the wheel has no bench package.
    for name in [m for m in sys.modules if m == "bench" or m.startswith("bench.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "bench", None)
    assert cli.main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "source checkout" in err and "python -m bench" in err
