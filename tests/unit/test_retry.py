"""The one backoff every component retries with."""

from __future__ import annotations

import itertools

from framecast import client
from framecast.retry import backoff


def test_delays_stay_capped_however_long_the_outage() -> None:
    # A producer or gateway retries forever: thousands of failures (hours without Redis or a
    # camera) must keep yielding capped delays, never overflow (2.0 ** 1100 does not fit a float).
    delays = list(itertools.islice(backoff(initial=0.25, maximum=5.0), 5000))
    assert delays[0] <= 0.25
    assert all(2.5 <= d <= 5.0 for d in delays[5:])


def test_the_client_exports_the_same_backoff() -> None:
    assert client.backoff is backoff
