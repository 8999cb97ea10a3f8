"""The fault suite (issue 12): real processes, faults injected, what the clients saw, as one table.

``python -m bench faults`` (``framecast bench faults``) starts the topology ``framecast up`` runs --
valkey, N gateways (reaching Redis through a TCP proxy that can stall the link), the real producer
on a synthetic source, nginx -- connects ``--clients`` clients through nginx (resume clients using
:mod:`framecast.client`, plus raw live-only clients), and runs each scenario in turn. Per scenario
it prints: clients, results lost / duplicated / reordered as the clients saw them (per kind of
client), the recovery time (fault cleared -> every client has a result published after it), peak
gateway RSS and open fds. Run it from a checkout (the proxy is ``tests/support/proxy.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fault_clients import Seen, raw_client, resume_client
from bench.fault_topology import ROOT, Topology
from framecast import settings
from framecast.settings import option

SCENARIOS = (
    "baseline",
    "gateway-kill",
    "redis-restart",
    "redis-stall",
    "producer-restart",
    "gateway-sigstop",
    "nginx-restart",
    "stalled-clients",
    "storm",
    "soak",
)
READY_TIMEOUT = 3.0


@dataclass(frozen=True, kw_only=True)
class FaultsConfig:
    """Settings of ``python -m bench faults``."""

    clients: int = option(
        50, help="Reading clients through nginx (>= 500 for the issue's full run).", check=settings.positive
    )
    gateways: int = option(2, help="Gateway processes behind nginx.", check=settings.positive)
    raw_share: float = option(0.2, help="Share of the clients that are raw, live-only (no resume).")
    scenarios: tuple[str, ...] = option(SCENARIOS, help=f"Scenarios to run ({', '.join(SCENARIOS)}).")
    settle: float = option(
        4.0, help="Seconds of steady delivery measured after each fault clears.", check=settings.positive
    )
    storm: int = option(5000, help="Connections opened at once by the storm scenario.")
    max_connections: int = option(
        2000, help="--max-connections of each gateway (the storm goes past the sum, to see 503s)."
    )
    soak: float = option(
        600.0, help="Seconds of the soak scenario (steady load, clients churning).", check=settings.positive
    )
    churn: int = option(20, help="Clients of the soak that connect, read briefly and close, over and over.")
    output: str = option("", help="Write the rows as JSON here too.")


# --------------------------------------------------------------------------
# Scenarios: each injects its fault and returns the time it was cleared.


async def _to_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def _gateway_kill(top: Topology) -> float:
    await _to_thread(top.kill, "gw1")
    cleared = time.time()
    await _to_thread(top.start_gateway, "gw1")
    return cleared


async def _redis_restart(top: Topology) -> float:
    await _to_thread(top.kill, "valkey")
    await asyncio.sleep(2.0)
    await _to_thread(top.start_valkey)
    return time.time()


async def _redis_stall(top: Topology) -> float:
    top.proxy.freeze()
    await asyncio.sleep(2 * READY_TIMEOUT)
    top.proxy.thaw()
    return time.time()


async def _producer_restart(top: Topology) -> float:
    await _to_thread(top.kill, "producer")
    await _to_thread(top.start_producer)
    return time.time()


async def _gateway_sigstop(top: Topology) -> float:
    top.kill("gw1", signal.SIGSTOP)
    await asyncio.sleep(2 * READY_TIMEOUT)
    top.kill("gw1", signal.SIGCONT)
    return time.time()


async def _nginx_restart(top: Topology) -> float:
    await _to_thread(top.kill, "nginx", signal.SIGTERM)
    await _to_thread(top.start_nginx)
    return time.time()


async def _stalled_clients(top: Topology, count: int) -> tuple[float, dict[str, Any]]:
    """``count`` raw sockets through nginx that take previews and never read, until the gateways
    close them (4008, ``--max-lag`` after their lag probes go unanswered; 30 s at most).

    Measured: how long until every one was closed, what nginx held meanwhile (its RSS and its
    sockets' queues, above their level before), and the close code each read once it drained.
    """
    from tests.support.gateway import raw_websocket
    from tests.support.sockets import children, drain, queued_bytes, rss_bytes

    nginx = [top.procs["nginx"].pid, *children(top.procs["nginx"].pid)]

    def held() -> tuple[int, int]:
        return rss_bytes(nginx), sum(queued_bytes(nginx))

    def closes() -> float:
        return sum(top.metric(name, "framecast_gateway_slow_consumer_closes_total") for name in top.ports)

    (rss_before, queued_before), closed_before = held(), await _to_thread(closes)
    rss_peak, queued_peak, held_peak = rss_before, queued_before, rss_before + queued_before
    started = time.time()
    socks = [raw_websocket(top.nginx_port, "/ws/default?previews=1", rcvbuf=4096)[0] for _ in range(count)]
    closed_after: float | None = None
    for _ in range(300):
        await asyncio.sleep(0.1)
        rss, queued = held()
        rss_peak, queued_peak, held_peak = (
            max(rss_peak, rss),
            max(queued_peak, queued),
            max(held_peak, rss + queued),
        )
        if await _to_thread(closes) - closed_before >= count:
            closed_after = time.time() - started
            break
        if time.time() - started > 30:
            break
    # The gateways closed them: each read ends with the close frame or the end of the connection,
    # however long a loaded machine takes to pass on what was in flight (not at a quiet spell).
    drained = await asyncio.gather(*(asyncio.to_thread(drain, sock, idle=30.0, limit=60.0) for sock in socks))
    for sock in socks:
        sock.close()
    return time.time(), {
        "count": count,
        "closed_after_s": round(closed_after, 2) if closed_after is not None else None,
        "close_codes": sorted(str(d.close_code) for d in drained),
        "ended": sorted({d.describe() for d in drained}),
        "previews_read": sum(d.previews for d in drained),
        "results_read": sum(len(d.results) for d in drained),
        "nginx_held_bytes": held_peak - rss_before - queued_before,
        "nginx_held_per_client": (held_peak - rss_before - queued_before) // count,
        "nginx_rss_growth": rss_peak - rss_before,
        "nginx_queued_peak": queued_peak - queued_before,
    }


async def _storm(top: Topology, count: int) -> tuple[float, dict[str, Any]]:
    """``count`` WebSocket connects at once through nginx, then all closed.

    The connections come from a process of their own (:mod:`bench.fault_storm`): from this
    process's event loop they would starve the clients being measured.
    """
    before = top.gateway_usage()
    storm = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.fault_storm",
        f"{top.url}/ws/default",
        str(count),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert storm.stdin is not None and storm.stdout is not None
    try:
        counts: dict[str, int] = json.loads(await asyncio.wait_for(storm.stdout.readline(), 300))
        peak = top.gateway_usage()
        storm.stdin.write(b"close\n")
        await storm.stdin.drain()
        closed = await asyncio.wait_for(storm.stdout.readline(), 120)
        if closed.strip() != b"closed":
            raise AssertionError(f"the storm process did not close its connections: {closed!r}")
    finally:
        if storm.returncode is None:
            storm.kill()
        await storm.wait()
    cleared = time.time()
    after = before
    for _ in range(60):
        await asyncio.sleep(0.5)
        after = top.gateway_usage()
        if after[1] <= before[1] + 16:
            break
    return cleared, {
        "outcomes": counts,
        "rss_before": before[0],
        "rss_peak": peak[0],
        "rss_after": after[0],
        "fds_before": before[1],
        "fds_peak": peak[1],
        "fds_after": after[1],
    }


# --------------------------------------------------------------------------
# Running


async def _run(config: FaultsConfig, top: Topology, say: Callable[[str], None]) -> list[dict[str, Any]]:
    raw_count = int(config.clients * config.raw_share)
    seen = [Seen(resume=i >= raw_count) for i in range(config.clients)]
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            resume_client(top.url, seen, i, stop) if s.resume else raw_client(top.url, seen, i, stop)
        )
        for i, s in enumerate(seen)
    ]
    rows: list[dict[str, Any]] = []
    try:
        await _wait(lambda: all(s.results for s in seen), 120, "every client's first result")
        # Warm-up: hundreds of clients connecting at once start behind (conflated, some reset);
        # the scenarios measure from steady delivery, when every client reads live.
        steady = time.time()
        await _wait(functools.partial(_all_recovered, seen, steady), 120, "steady delivery to every client")
        for name in config.scenarios:
            for s in seen:
                s.results.clear()
                s.received_at.clear()
                s.duplicates = 0
                s.notices.clear()
            await asyncio.sleep(1.0)
            first_epoch = (
                next(s.results[0][0] for s in seen if s.results) if any(s.results for s in seen) else ""
            )
            extra: dict[str, Any] = {}
            peak = [0, 0]
            sampler = asyncio.create_task(_sample(top, peak))
            started = time.time()
            cleared = await _inject(name, top, config, extra)
            await asyncio.sleep(config.settle)
            with contextlib.suppress(AssertionError):
                await _wait(functools.partial(_all_recovered, seen, cleared), 30, "recovery")
            sampler.cancel()
            rows.append(_row(name, seen, first_epoch, started, cleared, peak, extra))
            say(_format(rows[-1]))
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return rows


def _all_recovered(seen: list[Seen], cleared: float) -> bool:
    return all(s.recovered_at(cleared) for s in seen)


async def _inject(name: str, top: Topology, config: FaultsConfig, extra: dict[str, Any]) -> float:
    simple: dict[str, Callable[[Topology], Awaitable[float]]] = {
        "gateway-kill": _gateway_kill,
        "redis-restart": _redis_restart,
        "redis-stall": _redis_stall,
        "producer-restart": _producer_restart,
        "gateway-sigstop": _gateway_sigstop,
        "nginx-restart": _nginx_restart,
    }
    if name in simple:
        return await simple[name](top)
    if name == "stalled-clients":
        cleared, extra["stalled"] = await _stalled_clients(top, max(1, config.clients // 10))
        return cleared
    if name == "storm":
        cleared, extra["storm"] = await _storm(top, config.storm)
        return cleared
    if name == "soak":
        from bench.fault_soak import soak

        cleared, extra["soak"] = await soak(top, duration=config.soak, churners=config.churn)
        return cleared
    return time.time()  # baseline


async def _sample(top: Topology, peak: list[int]) -> None:
    while True:
        rss, fds = top.gateway_usage()
        peak[0], peak[1] = max(peak[0], rss), max(peak[1], fds)
        await asyncio.sleep(0.25)


async def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.1) + 1):
        if condition():
            return
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _row(
    name: str,
    seen: list[Seen],
    first_epoch: str,
    started: float,
    cleared: float,
    peak: list[int],
    extra: dict[str, Any],
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "scenario": name,
        "clients": len(seen),
        "peak_rss_mb": round(peak[0] / 2**20, 1),
        "peak_fds": peak[1],
        **extra,
    }
    for kind, group in (
        ("resume", [s for s in seen if s.resume]),
        ("raw", [s for s in seen if not s.resume]),
    ):
        pairs = [s.lost_reordered(first_epoch) for s in group]
        recoveries = [s.recovered_at(cleared) for s in group]
        row[kind] = {
            "clients": len(group),
            "lost": sum(p[0] for p in pairs),
            "duplicated": sum(s.duplicates for s in group),
            "reordered": sum(p[1] for p in pairs),
            "recovery_s": round(max((r - cleared for r in recoveries if r), default=0.0), 2),
            "unrecovered": sum(1 for r in recoveries if r is None),
            "notices": sorted({n for s in group for n in s.notices}),
            "epochs": max((s.epochs_mixed()[0] for s in group), default=0),
            "mixed": sum(s.epochs_mixed()[1] for s in group),
        }
    row["fault_s"] = round(cleared - started, 2)
    return row


def _format(row: dict[str, Any]) -> str:
    r, w = row["resume"], row["raw"]
    return (
        f"| {row['scenario']} | {row['clients']} | {r['lost']} / {w['lost']} | {r['duplicated']} / "
        f"{w['duplicated']} | {r['reordered']} / {w['reordered']} | {r['recovery_s']} s"
        f"{' (' + str(r['unrecovered']) + ' not recovered)' if r['unrecovered'] else ''} | "
        f"{row['peak_rss_mb']} MB | {row['peak_fds']} | {', '.join(r['notices']) or '-'} |"
    )


HEADER = (
    "| scenario | clients | lost (resume / raw) | duplicated | reordered | recovery (resume) "
    "| peak gateway RSS | peak gateway fds | resume clients were told |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def run(config: FaultsConfig, *, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Start the topology, run the scenarios, stop everything; returns one row per scenario."""
    unknown = sorted(set(config.scenarios) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"--scenarios: unknown {', '.join(unknown)} (choose from {', '.join(SCENARIOS)})")
    top = Topology(config)
    try:
        say(HEADER)
        return asyncio.run(_run(config, top, say))
    finally:
        top.close()


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m bench faults") -> int:
    """``python -m bench faults``: print the fault table (and write JSON with ``--output``)."""
    config = settings.parse(FaultsConfig, argv, prog=prog, description=__doc__)
    try:
        rows = run(config)
    except ValueError as exc:
        return settings.fail(prog, str(exc), 2)
    for row in rows:
        for extra in ("storm", "soak", "stalled"):
            if extra in row:
                print(f"{extra}: {json.dumps(row[extra])}")
    if config.output:
        Path(config.output).write_text(json.dumps(rows, indent=1))
    return 0
