"""URLs are made safe to log: passwords and secret query values never reach a log line."""

from __future__ import annotations

import pytest

from framecast.client import Subscription
from framecast.logs import redact_url


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://app:hunter2@cache:6380/1", "rediss://app:***@cache:6380/1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://app@cache:6379", "redis://app@cache:6379"),  # a user alone is no secret
        # Percent-encoded passwords, and a raw "@" inside one (the host is after the last "@").
        ("redis://app:p%40ss%3Aw@cache:6379/0", "redis://app:***@cache:6379/0"),
        ("redis://app:p@ss@cache:6379/0", "redis://app:***@cache:6379/0"),
        ("redis://a%3Ab:pw@[::1]:6379/0", "redis://a%3Ab:***@[::1]:6379/0"),
        # redis-py also reads the password from the query; the gateway reads tokens from it.
        ("redis://cache:6379/0?password=hunter2&db=1", "redis://cache:6379/0?password=***&db=1"),
        ("unix:///run/valkey.sock?db=0&PASSWORD=hunter2", "unix:///run/valkey.sock?db=0&PASSWORD=***"),
        ("ws://gw:8000/ws?token=eyJ.x.y&a=%20b#top", "ws://gw:8000/ws?token=***&a=%20b#top"),
    ],
)
def test_passwords_and_secret_parameters_never_reach_the_logs(url: str, logged: str) -> None:
    assert redact_url(url) == logged
    assert "hunter2" not in redact_url(url)


def test_a_client_names_its_gateway_without_the_token() -> None:
    subscription = Subscription("http://user:pw@127.0.0.1:8000/ws", ["cam"], token="s3cret")
    assert subscription.url == "ws://user:***@127.0.0.1:8000/ws?token=***"
