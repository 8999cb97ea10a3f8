"""Gateway settings: flags, environment, defaults, one-line errors."""

from __future__ import annotations

import pytest

from framecast.settings import parse
from gateway.config import GatewayConfig


def read(argv: list[str], environ: dict[str, str] | None = None) -> GatewayConfig:
    return parse(GatewayConfig, argv, prog="gw", description="", environ=environ or {})


def test_defaults_are_safe() -> None:
    config = read([])
    assert config.host == "127.0.0.1"
    assert config.compression == "off"
    assert config.client_buffer == 1 << 20
    assert not config.auth_required
    assert config.id  # hostname-pid


def test_flags_and_environment() -> None:
    config = read(
        ["--port", "9000", "--origins", "https://a.example,https://b.example", "--no-reuse-port"],
        {"REDIS_URL": "redis://r:6379/1", "FRAMECAST_JWT_SECRET": "s", "FRAMECAST_MAX_AGE": "0"},
    )
    assert config.port == 9000
    assert config.origins == ("https://a.example", "https://b.example")
    assert config.redis_url == "redis://r:6379/1"
    assert config.auth_required and config.max_age == 0


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--port", "70000"], "--port"),
        (["--send-deadline", "0"], "--send-deadline"),
        (["--origins", "example.com"], "--origins"),
        (["--id", "has space"], "--id"),
        (["--send-deadline", "5", "--max-lag", "1"], "--send-deadline"),
        (["--jwt-public-key", "/nonexistent.pem"], "--jwt-public-key"),
        (["--require-auth"], "FRAMECAST_JWT_SECRET"),
        (["--send-buffer", str(2**31)], "--send-buffer"),  # setsockopt's C int (issue 20)
        (["--lag-threshold", "11", "--max-lag", "10"], "--lag-threshold"),
        (["--lag-probe-interval", "0"], "--lag-probe-interval"),
    ],
)
def test_bad_values_exit_2_naming_the_flag(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        read(argv)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err


def test_require_auth_with_a_secret_or_key_starts() -> None:
    assert read(["--require-auth"], {"FRAMECAST_JWT_SECRET": "s"}).auth_required
    assert read([], {"FRAMECAST_REQUIRE_AUTH": "false"}).require_auth is False
