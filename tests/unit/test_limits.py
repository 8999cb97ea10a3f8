"""The fan-out's limits: one frozen object, built from the gateway's settings, defaults stated once."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.config import GatewayConfig, read_config
from gateway.policy import Limits


def test_the_defaults_are_the_settings_defaults() -> None:
    assert Limits() == Limits.from_config(GatewayConfig())
    assert Limits().max_age == GatewayConfig().max_age == 2.0


def test_every_setting_reaches_its_limit_under_its_own_name() -> None:
    config = read_config(
        [
            "--client-buffer=5000",
            "--max-lag=7",
            "--lag-threshold=0.5",
            "--lag-probe-interval=0.25",
            "--lag-probe-messages=9",
            "--max-age=3",
            "--send-deadline=0.2",
            "--close-timeout=4",
            "--fanout-chunk=12",
            "--fanout-slice=0.002",
        ]
    )
    assert Limits.from_config(config) == dataclasses.replace(
        Limits(),
        client_buffer=5000,
        max_lag=7.0,
        lag_threshold=0.5,
        probe_interval=0.25,
        probe_messages=9,
        max_age=3.0,
        send_deadline=0.2,
        close_timeout=4.0,
        chunk=12,
        slice_time=0.002,
    )
    assert Limits.from_config(config).low_water == 1250


def test_limits_are_frozen_and_checked() -> None:
    limits = Limits()
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_age = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="client_buffer"):
        Limits(client_buffer=0)
    assert Limits(lag_threshold=0.0).probing is False and Limits().probing is True
