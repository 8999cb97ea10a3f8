"""``python -m bench`` / ``framecast bench``: every measurement in one run, one command.

Runs the parts (fan-out strategies in one gateway process, the real topology,
the producer's predictors, the ONNX engines, cameras sharing one model), writes the raw results as JSON under
``bench/results/`` and regenerates ``docs/performance.md`` with its plots in
``docs/perf/``. ``--quick`` is a tiny configuration (seconds) that keeps the
harness working in CI; its report goes to ``bench/results/quick/`` so it never
replaces the real figures.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import machine
from bench.procs import ROOT, BenchError
from framecast import settings
from framecast.settings import option

__all__ = ["BenchConfig", "main"]

PARTS = ("fanout", "topology", "producer", "predictors", "shared", "tracking", "filters")
# Run only when asked (--parts ...,profile): it needs py-spy (the bench extra) and root or ptrace rights.
# capacity (docs/capacity.md's own inputs) holds ~12k connections open: only when asked, too.
# video (the gateway's video fan-out against previews) holds 1000 viewers of each: only when asked.
EXTRA_PARTS = ("profile", "capacity", "video")
STRATEGIES = (
    "framecast",
    "framecast-noprobe",
    "broadcast",
    "sequential",
    "tasks",
    "floor-transport",
    "floor-socket",
)
PREDICTORS = ("motion", "faces", "people", "qr")

DESCRIPTION = """\
Measure framecast, with numbers anyone can rerun:

  fanout    fan-out strategies inside one gateway process (framecast's Fanout,
            websockets.broadcast(), sequential await ws.send(), asyncio.wait over
            one task per client): deliveries/s at saturation, gateway CPU µs per
            delivery, capture->client latency and event-loop lag at --rate results/s,
            and the same with 10% of the clients stalled. Two cost floors frame each
            message once by hand and write it to every connection with nothing else:
            floor-transport (asyncio transport.write) and floor-socket (the raw
            socket.send, the transport taking what the kernel did not).
  topology  Redis -> 1, 2, 4 real gateways -> nginx -> clients (framecast up).
  producer  each built-in predictor on 640x480 frames: fps, frame age at
            inference, event-loop lag while predicting.
  predictors  a YOLOv8n graph (Ultralytics' own definition, random weights, built
            in its own environment: python -m bench.models) on OpenCV DNN and on
            onnxruntime, per thread count and batch size: frames/s and call
            latency; letterbox and NMS costs; a frame's trip to another process
            through shared memory vs pickled through a pipe.
  shared    4 cameras at 15 fps, each producer loading the model vs one shared
            inference worker batching them: total RSS, predictions/s per camera,
            CPU per prediction, capture->publish p50/p99.
  tracking  the tracker (ByteTrack per label) at 10, 50 and 200 detections per
            frame: ms and CPU per frame, id switches; with a zone and a line; and
            its share of the people detector's own CPU time (target < 10%).
  filters   subscription filters on a real gateway: gateway CPU per result for 1000
            full subscribers alone, with 1000 events-only clients (kinds=event,status)
            and with 1000 capped ones (max_rate=2) beside them, and 1000 of each alone,
            at 15 results/s; 3 interleaved rounds, median and range of the ratios.
  capacity  (only when named in --parts) RSS per idle connection of a gateway (10k
            connections) and of nginx, and Redis PUBLISH messages/s per valkey core:
            the inputs of docs/capacity.md that the other parts do not measure.
  profile   (only when named in --parts) the framecast strategy at saturation under
            py-spy: a flamegraph and a top-N summary in docs/perf/.
  video     (only when named in --parts) the gateway's video fan-out (VP8, 15 fps) against
            JPEG previews at 100 and 1000 viewers in one run: bytes/s and pictures/s per
            viewer, gateway CPU per picture and per MB, time to first picture, viewers per
            1 and 10 Gbit/s link (python -m bench.video_fanout; docs/capacity.md).

Results go to bench/results/<time>.json (and latest.json); docs/performance.md
and docs/perf/*.png are regenerated from them. The default run takes about fifteen
minutes on two cores; --quick takes seconds and writes its report under
bench/results/quick/ instead of docs/."""

EPILOG = """\
examples:
  python -m bench                          the full run, regenerates docs/performance.md
  python -m bench --quick                  a smoke run (seconds)
  python -m bench --parts fanout --clients 1000 --strategies framecast,broadcast
  python -m bench --report-only bench/results/latest.json   redraw the docs from saved results
  python -m bench --parts fanout,profile --clients 1000      fan-out, then py-spy's view of it

exit status: 0 when every step ran, 1 when a step failed (the others still run
and the report says which), 2 on a bad setting."""


def _choices(allowed: Sequence[str]) -> Any:
    def check(value: tuple[str, ...]) -> None:
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise ValueError(f"unknown {', '.join(unknown)} (expected some of {', '.join(allowed)})")

    return check


def _counts(value: tuple[str, ...]) -> None:
    for item in value:
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"{item!r} is not a whole number of at least 1")


def _non_negative_or_none(value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError("must be 0 or greater")


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Settings of ``python -m bench``; unset durations and sizes take the mode's default."""

    quick: bool = option(
        False,
        help="Tiny configuration for CI: a few clients, sub-second phases (about 30 s in all).",
        env="FRAMECAST_BENCH_QUICK",
    )
    parts: tuple[str, ...] = option(
        PARTS,
        help="Parts to run, comma-separated (profile only when named).",
        check=_choices(PARTS + EXTRA_PARTS),
        env="FRAMECAST_BENCH_PARTS",
    )
    output: str = option(
        str(ROOT / "bench" / "results"), help="Directory for the JSON results.", env="FRAMECAST_BENCH_OUTPUT"
    )
    docs: str = option(
        "",
        help="Markdown report to regenerate; plots go to perf/ beside it "
        "(default: docs/performance.md, or bench/results/quick/performance.md with --quick).",
        env="FRAMECAST_BENCH_DOCS",
    )
    report_only: str = option(
        "",
        help="Redraw the report from this results JSON without measuring anything.",
        metavar="JSON",
        env="FRAMECAST_BENCH_REPORT_ONLY",
    )

    clients: tuple[str, ...] = option(
        (),
        help="fanout: client counts (default 100,1000,5000; 20 with --quick).",
        check=_counts,
        env="FRAMECAST_BENCH_CLIENTS",
        group="fanout",
    )
    strategies: tuple[str, ...] = option(
        STRATEGIES,
        help="fanout: strategies to compare.",
        check=_choices(STRATEGIES),
        env="FRAMECAST_BENCH_STRATEGIES",
        group="fanout",
    )
    client_processes: int = option(
        2,
        help="Load-client processes each run spreads its connections over.",
        check=settings.positive,
        env="FRAMECAST_BENCH_CLIENT_PROCESSES",
        group="fanout",
    )
    rate: float = option(
        30.0,
        help="Results per second in the latency phases.",
        check=settings.positive,
        env="FRAMECAST_BENCH_RATE",
        group="fanout",
    )
    time_scale: float = option(
        1.0,
        help="Multiply the length of every phase by this (2: twice as long, steadier figures).",
        check=settings.positive,
        env="FRAMECAST_BENCH_TIME_SCALE",
        group="fanout",
    )
    pin: bool = option(
        True,
        help="fanout: pin the gateway process to CPU 0 and the load clients to the other CPUs.",
        env="FRAMECAST_BENCH_PIN",
        group="fanout",
    )
    stall: bool = option(
        True,
        help="fanout: also run each strategy with 10% of the clients stalled.",
        env="FRAMECAST_BENCH_STALL",
        group="fanout",
    )

    gateways: tuple[str, ...] = option(
        (),
        help="topology: gateway counts (default 1,2,4; 1,2 with --quick).",
        check=_counts,
        env="FRAMECAST_BENCH_GATEWAYS",
        group="topology",
    )
    topology_clients: int | None = option(
        None,
        help="topology: clients through nginx (default 1000; 20 with --quick).",
        check=_non_negative_or_none,
        env="FRAMECAST_BENCH_TOPOLOGY_CLIENTS",
        group="topology",
    )

    predictors: tuple[str, ...] = option(
        PREDICTORS,
        help="producer: predictors to measure.",
        check=_choices(PREDICTORS),
        env="FRAMECAST_BENCH_PREDICTORS",
        group="producer",
    )

    onnx_model: str = option(
        "",
        help="predictors, shared: yolov8n (built once with Ultralytics in .venv-yolo-export, a few "
        "minutes and ~1.6 GB) or standin (YOLOv8n's output shape, a fraction of its compute). "
        "Default: yolov8n, standin with --quick.",
        choices=("yolov8n", "standin"),
        env="FRAMECAST_BENCH_ONNX_MODEL",
        group="predictors",
    )


def _plan(config: BenchConfig) -> dict[str, Any]:
    """The options of each part, from the mode and the flags given."""
    from bench.capacity import CapacityOptions
    from bench.engines import EngineOptions
    from bench.filters import FiltersOptions
    from bench.predictors import PredictorOptions
    from bench.profile import ProfileOptions
    from bench.sharing import SharingOptions
    from bench.single import SingleOptions
    from bench.topology import TopologyOptions
    from bench.tracking import TrackingOptions
    from bench.video_fanout import VideoOptions

    quick = config.quick
    scale = config.time_scale
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinning: dict[str, Any] = {}
    if config.pin and len(cores) >= 2:
        pinning = {"server_cpus": (cores[0],), "client_cpus": tuple(cores[1:])}
    clients = tuple(int(c) for c in config.clients) or ((20,) if quick else (100, 1000, 5000))
    gateways = tuple(int(g) for g in config.gateways) or ((1, 2) if quick else (1, 2, 4))
    topology_clients = int(config.topology_clients or (20 if quick else 1000))
    model = config.onnx_model or ("standin" if quick else "yolov8n")
    if quick:
        single = SingleOptions(
            clients=clients,
            strategies=config.strategies,
            processes=config.client_processes,
            warmup=0.1,
            saturation=0.4 * scale,
            latency=0.6 * scale,
            rate=config.rate,
            stall=1.0 * scale if config.stall else 0.0,
            stall_max_lag=0.5,
            windows=2,
            **pinning,
        )
        topology = TopologyOptions(
            gateways=gateways,
            clients=topology_clients,
            processes=config.client_processes,
            warmup=0.2,
            saturation=0.4 * scale,
            latency=0.6 * scale,
            rate=config.rate,
            burst=20,
            burst_window=0.4,
            settle=0.3,
        )
        producer = PredictorOptions(names=config.predictors, alone=0.2 * scale, service=0.6 * scale)
        engines = EngineOptions(
            model=model, threads=(1,), batches=(1, 2), seconds=0.2 * scale, max_calls=5, transport_frames=30
        )
        sharing = SharingOptions(
            model=model, cameras=2, fps=5.0, modes=("separate", "shared"), warmup=0.3, seconds=1.5 * scale
        )
    else:
        single = SingleOptions(
            clients=clients,
            strategies=config.strategies,
            processes=config.client_processes,
            saturation=3.0 * scale,
            latency=5.0 * scale,
            rate=config.rate,
            stall=12.0 * scale if config.stall else 0.0,
            **pinning,
        )
        topology = TopologyOptions(
            gateways=gateways,
            clients=topology_clients,
            processes=config.client_processes,
            saturation=4.0 * scale,
            latency=5.0 * scale,
            rate=config.rate,
        )
        producer = PredictorOptions(names=config.predictors, alone=3.0 * scale, service=5.0 * scale)
        engines = EngineOptions(model=model, seconds=4.0 * scale)
        sharing = SharingOptions(model=model, warmup=8.0 * scale, seconds=20.0 * scale)
    profile = ProfileOptions(
        clients=clients[-1] if config.clients else (20 if quick else 1000),
        processes=config.client_processes,
        seconds=(2.0 if quick else 6.0) * scale,
        warmup=0.1 if quick else 0.5,
        **pinning,
    )
    capacity = (
        CapacityOptions(idle=20, nginx_idle=10, settle=0.3, redis_seconds=0.3)
        if quick
        else CapacityOptions(redis_seconds=3.0 * scale)
    )
    tracking = (
        TrackingOptions(frames=90, people_seconds=0.3 * scale)
        if quick
        else TrackingOptions(frames=600, people_seconds=3.0 * scale)
    )
    filters = (
        FiltersOptions(
            # One round, one client process per group: the smoke run checks what the clients got
            # and that the harness works, in seconds (the full run interleaves three rounds).
            full=10,
            filtered=10,
            rounds=1,
            window=0.5 * scale,
            settle=0.2,
            beat=0.2,
            processes=1,
            **pinning,
        )
        if quick
        else FiltersOptions(window=8.0 * scale, processes=config.client_processes, **pinning)
    )
    return {
        "fanout": single,
        "filters": filters,
        "topology": topology,
        "producer": producer,
        "tracking": tracking,
        "predictors": engines,
        "shared": sharing,
        "profile": profile,
        "capacity": capacity,
        "video": VideoOptions(viewers=(10,), seconds=2.0) if quick else VideoOptions(seconds=10.0 * scale),
    }


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _docs_path(config: BenchConfig) -> Path:
    if config.docs:
        return Path(config.docs)
    if config.quick:
        return Path(config.output) / "quick" / "performance.md"
    return ROOT / "docs" / "performance.md"


def measure(config: BenchConfig) -> dict[str, Any]:
    """Run the selected parts; failures of one part are recorded and the others still run."""
    from dataclasses import asdict

    plan = _plan(config)
    results: dict[str, Any] = {
        "machine": machine.describe(),
        "quick": config.quick,
        "options": {part: asdict(plan[part]) for part in config.parts},
        "errors": [],
    }
    _say(
        f"bench: {results['machine']['cpu_model']}, {results['machine']['cores']} cores, "
        f"Python {results['machine']['python']}, websockets {results['machine']['websockets']}"
    )
    started = time.monotonic()
    for part in config.parts:
        try:
            if part == "fanout":
                from bench import single

                results["fanout"] = single.run(plan["fanout"], say=_say)
            elif part == "topology":
                from bench import topology

                results["topology"] = topology.run(plan["topology"], say=_say)
            elif part == "producer":
                from bench import predictors

                results["producer"] = predictors.run(plan["producer"], say=_say)
            elif part == "predictors":
                from bench import engines

                results["predictors"] = engines.run(plan["predictors"], say=_say)
            elif part == "shared":
                from bench import sharing

                results["shared"] = sharing.run(plan["shared"], say=_say)
            elif part == "tracking":
                from bench import tracking

                results["tracking"] = tracking.run(plan["tracking"], say=_say)
            elif part == "filters":
                from bench import filters

                results["filters"] = filters.run(plan["filters"], say=_say)
            elif part == "capacity":
                from bench import capacity

                results["capacity"] = capacity.run(plan["capacity"], say=_say)
            elif part == "video":
                from bench import video_fanout

                results["video"] = video_fanout.run(plan["video"], say=_say)
            elif part == "profile":
                from bench import profile, report

                results["profile"] = profile.run(
                    plan["profile"],
                    directory=_docs_path(config).parent / "perf",
                    machine=report.caption(results["machine"]),
                    say=_say,
                )
        except BenchError as exc:
            _say(f"bench: {part} failed: {exc}")
            results["errors"].append(f"{part}: {exc}")
        entries = results.get(part, [])
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and "error" in entry:
                results["errors"].append(f"{part}: {entry['error']}")
    results["duration_s"] = round(time.monotonic() - started, 1)
    return results


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m bench") -> int:
    """Run the benchmark (or redraw its report); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["faults"]:  # the fault suite (issue 12) has its own flags
        from bench import faults

        return faults.main(args[1:], prog=f"{prog} faults")
    if args[:1] == ["stalled"]:  # one stalled client, direct and through nginx (issue 20)
        from bench import stalled

        return stalled.main(args[1:], prog=f"{prog} stalled")
    config = settings.parse(BenchConfig, argv, prog=prog, description=DESCRIPTION, epilog=EPILOG)
    from bench import report

    docs = _docs_path(config)
    if config.report_only:
        source = Path(config.report_only)
        try:
            results = json.loads(source.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            return settings.fail(prog, f"--report-only={source}: cannot read results: {exc}")
        report.write(results, docs)
        _say(f"bench: report regenerated in {docs}")
        return 0
    output = Path(config.output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return settings.fail(prog, f"--output={output}: cannot create the directory: {exc}")
    results = measure(config)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{'quick-' if config.quick else ''}{stamp}.json"
    text = json.dumps(results, indent=1)
    (output / name).write_text(text)
    (output / ("latest-quick.json" if config.quick else "latest.json")).write_text(text)
    report.write(results, docs)
    _say(f"bench: done in {results['duration_s']} s; results in {output / name}, report in {docs}")
    if results["errors"]:
        _say(f"bench: {len(results['errors'])} step(s) failed: " + "; ".join(results["errors"][:5]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
