"""CI's short form of the fault suite (issue 12): every scenario of ``bench faults``, few clients.

The suite runs once (real valkey, a TCP proxy on the gateways' Redis link, two gateways, the real
producer, nginx; clients through nginx) and each test checks one scenario's row against what
docs/guarantees.md promises a *resuming* client (``framecast.client``): nothing lost inside the
replay window, nothing duplicated, nothing reordered, every client live again. The raw live-only
clients are measured, not asserted: losing what was published while they were away is their
documented behaviour.

The soak's short form (60 s) is opt-in: ``FRAMECAST_SOAK=1`` (it doubles the suite's time).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from bench.fault_soak import BOUNDS
from bench.faults import SCENARIOS, FaultsConfig, run

CLIENTS = 12
STORM = 240
MAX_CONNECTIONS = 100  # per gateway: the storm goes past both, so some must get 503
RSS_BOUND = 64 * 2**20  # over the baseline, all gateways together
FDS_BOUND = 32  # over the fds before the storm, once it is closed
SHORT = tuple(name for name in SCENARIOS if name != "soak")
SOAK = os.environ.get("FRAMECAST_SOAK") == "1"


@pytest.fixture(scope="module")
def rows() -> Iterator[dict[str, dict[str, Any]]]:
    config = FaultsConfig(
        clients=CLIENTS,
        storm=STORM,
        max_connections=MAX_CONNECTIONS,
        settle=2.0,
        scenarios=SCENARIOS if SOAK else SHORT,
        soak=60.0,
        churn=10,
    )
    yield {row["scenario"]: row for row in run(config, say=lambda _: None)}


@pytest.mark.parametrize("scenario", SCENARIOS if SOAK else SHORT)
def test_resuming_clients_lose_nothing_and_recover(rows: dict[str, dict[str, Any]], scenario: str) -> None:
    resume = rows[scenario]["resume"]
    assert resume["unrecovered"] == 0, f"{scenario}: {resume}"
    assert (resume["duplicated"], resume["reordered"]) == (0, 0), f"{scenario}: {resume}"
    if scenario != "redis-restart":
        # A restarted (empty) Redis holds no history, and the producer publishes only its newest
        # result after an outage (docs/producer.md): loss there is documented, not a defect.
        assert resume["lost"] == 0, f"{scenario}: {resume}"
    if scenario == "soak":
        soak = rows[scenario]["soak"]
        assert soak["connects"] > soak["churners"], soak  # they did churn
        for key, bound in BOUNDS.items():
            assert soak["after"][key] - soak["before"][key] <= bound, f"{key} grew: {soak}"


def test_raw_clients_saw_every_result_in_order_when_nothing_failed(rows: dict[str, dict[str, Any]]) -> None:
    raw = rows["baseline"]["raw"]
    assert (raw["lost"], raw["duplicated"], raw["reordered"], raw["unrecovered"]) == (0, 0, 0, 0), raw


def test_a_redis_outage_is_announced_with_gap(rows: dict[str, dict[str, Any]]) -> None:
    for scenario in ("redis-restart", "redis-stall"):
        assert "gap:redis-reconnected" in rows[scenario]["resume"]["notices"], rows[scenario]


def test_a_producer_restart_is_a_new_epoch_never_mixed_with_the_old(rows: dict[str, dict[str, Any]]) -> None:
    for kind in ("resume", "raw"):
        seen = rows["producer-restart"][kind]
        assert seen["epochs"] == 2 and seen["mixed"] == 0, f"{kind}: {seen}"


def test_stalled_clients_do_not_grow_the_gateways_without_bound(rows: dict[str, dict[str, Any]]) -> None:
    grown = (rows["stalled-clients"]["peak_rss_mb"] - rows["baseline"]["peak_rss_mb"]) * 2**20
    assert grown < RSS_BOUND, rows["stalled-clients"]


def test_a_connection_storm_gets_503_past_the_limit_and_its_fds_are_returned(
    rows: dict[str, dict[str, Any]],
) -> None:
    storm = rows["storm"]["storm"]
    assert storm["outcomes"].get("503", 0) > 0, storm
    assert storm["outcomes"].get("101", 0) >= MAX_CONNECTIONS, storm
    assert sum(storm["outcomes"].values()) == STORM, storm
    assert set(storm["outcomes"]) <= {"101", "503"}, f"answers other than 101/503: {storm}"
    assert storm["fds_after"] <= storm["fds_before"] + FDS_BOUND, storm
    assert storm["rss_after"] - storm["rss_before"] < RSS_BOUND, storm


def test_stalled_clients_behind_nginx_are_closed_with_4008_and_bounded_in_nginx(
    rows: dict[str, dict[str, Any]],
) -> None:
    """Known defect (issue 20): through nginx a stalled client was never seen lagging, nginx held
    megabytes for it, and it ended with 1011 (keepalive) instead of 4008."""
    from framecast.local import nginx

    stalled = rows["stalled-clients"]["stalled"]
    assert stalled["closed_after_s"] is not None, stalled
    assert stalled["close_codes"] == ["4008"] * stalled["count"], stalled
    # The sockets' queues are the kernel's exact count; nginx's RSS, with one stalled client among
    # a dozen readers, moves by more than one connection's share (test_slow_through_nginx.py
    # bounds RSS + queues over 200 stalled clients).
    assert stalled["nginx_queued_peak"] <= stalled["count"] * nginx.stalled_client_bound(), stalled
