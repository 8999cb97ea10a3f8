"""Small pure pieces of the producer: rates, settings validation (URL redaction: test_logs.py)."""

from __future__ import annotations

import pytest

from framecast.settings import parse
from producer.config import Config
from producer.metrics import Rates


def test_rates_average_over_a_sliding_window() -> None:
    rates = Rates(window=5.0)
    assert rates.update(100.0, 0, 0) == (0.0, 0.0)
    assert rates.update(101.0, 30, 15) == (30.0, 15.0)
    assert rates.update(102.0, 60, 30) == (30.0, 15.0)
    for second in range(3, 12):  # the capture rate halves; the old samples age out of the window
        rates.update(100.0 + second, 60 + 15 * (second - 2), 30)
    assert rates.update(112.0, 60 + 15 * 10, 30) == (15.0, 0.0)


def test_settings_come_from_flags_then_environment_then_defaults() -> None:
    config = parse(
        Config,
        ["--stream", "lab-1", "--workers", "2", "--no-demand"],
        prog="producer",
        description="",
        environ={
            "REDIS_URL": "redis://cache:6379/2",
            "FRAMECAST_MAX_FPS": "5",
            "FRAMECAST_STREAM": "ignored",
        },
    )
    assert config.stream == "lab-1"
    assert config.redis_url == "redis://cache:6379/2"
    assert config.max_fps == 5.0
    assert config.workers == 2
    assert config.demand is False
    assert config.source == "synthetic" and config.detector == "motion"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--confidence", "1.5"], "--confidence=1.5: must be between 0 and 1"),
        (["--input-size", "100"], "--input-size=100: must be a multiple of 32"),
        (["--preview-quality", "0"], "--preview-quality=0: must be between 1 and 100"),
        (["--log-level", "LOUD"], "--log-level=LOUD: expected one of DEBUG, INFO, WARNING, ERROR"),
        (["--stall-timeout", "0"], "--stall-timeout=0: must be greater than 0"),
        (["--source", " "], "--source= : must not be empty"),
    ],
)
def test_bad_settings_name_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(Config, argv, prog="producer", description="", environ={})
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
