"""The benchmark harness keeps working: a tiny run end to end, its load client's frame reader, and the
raw write paths of the floor and of framecast.

The smoke run starts real processes (bench servers, load clients, valkey,
gateways, nginx, the producer's predictors) with a handful of clients and
sub-second phases. It asserts what the harness produced and that the counts
it reports add up, never how fast anything was.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from bench import filters_analysis, strategies
from bench.client import ClientConfig, _Conn, _mask_frame, _Recorder
from bench.load import Records
from bench.payload import Payload
from bench.report import PLOTS
from gateway import _wsio
from tests.support.wait import poll

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


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    """One quick benchmark run shared by the tests below (about 30 s)."""
    out = tmp_path_factory.mktemp("bench")
    docs = out / "report" / "performance.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_") and k != "REDIS_URL"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(out), "--docs", str(docs)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "latest-quick.json").read_text())
    return results, docs.read_text(), docs.parent / "perf"


def test_states_machine_versions_and_date(smoke: tuple[dict[str, Any], str, Path]) -> None:
    results, markdown, _ = smoke
    machine = results["machine"]
    assert machine["cores"] >= 1
    assert machine["cpu_model"]
    assert machine["python"].startswith("3.")
    assert machine["websockets"][0].isdigit()
    assert machine["date"][:4].isdigit()
    assert machine["websockets"] in markdown and machine["cpu_model"] in markdown
    assert results["errors"] == []


def test_fanout_runs_every_strategy_and_counts_add_up(smoke: tuple[dict[str, Any], str, Path]) -> None:
    results, _, _ = smoke
    entries = {e["strategy"]: e for e in results["fanout"]}
    assert set(entries) == set(STRATEGIES)
    for name, entry in entries.items():
        assert "error" not in entry, entry.get("error")
        for phase in ("saturation", "latency", "stall"):
            figures = entry[phase]
            assert 0 < figures["delivered"] <= figures["expected"], (name, phase)
            assert figures["server_cpu_us_per_delivery"] > 0
            assert figures["latency_ms"]["n"] == figures["delivered"]
            assert figures["loop_lag_ms"]["n"] > 0
        # With every client reading, nothing is lost on the way: each client got each result once,
        # or framecast's fan-out says why it did not (a result older than max_age is dropped).
        latency = entry["latency"]
        assert latency["expected"] == latency["generated"] * entry["clients"]
        policy = name.startswith("framecast")
        dropped = sum((latency["server"]["drops"] or {}).values()) if policy else 0
        assert latency["delivered"] + dropped == latency["expected"], name
        assert latency["clients_without_any"] == 0
        stall = entry["stall"]
        assert stall["stalled"] + stall["readers"] == entry["clients"]
        assert stall["expected"] == stall["generated"] * stall["readers"]


def test_topology_spreads_clients_over_every_gateway(smoke: tuple[dict[str, Any], str, Path]) -> None:
    results, _, _ = smoke
    counts = [e["gateways"] for e in results["topology"]]
    assert counts == [1, 2]
    for entry in results["topology"]:
        assert "error" not in entry, entry.get("error")
        for phase in ("saturation", "latency", "burst"):
            figures = entry["phases"][phase]
            gateways = figures["gateways"]
            assert len(gateways) == entry["gateways"]
            # Every connection said which gateway served it, and every gateway served some.
            assert sum(g["clients"] for g in gateways) == entry["clients"]
            assert all(g["clients"] > 0 for g in gateways)
            assert sum(g["delivered"] for g in gateways) == figures["delivered"] > 0
            assert all(g["loop_lag_ms"]["n"] > 0 for g in gateways)


def test_producer_measures_every_predictor(smoke: tuple[dict[str, Any], str, Path]) -> None:
    results, _, _ = smoke
    entries = {e["predictor"]: e for e in results["producer"]}
    assert set(entries) == set(PREDICTORS)
    for name, entry in entries.items():
        assert "error" not in entry, entry.get("error")
        assert entry["alone"]["frames"] > 0 and entry["alone"]["fps"] > 0
        service = entry["service"]
        assert service["exit_status"] == 0
        assert service["results"] > 0, name
        assert service["frame_age_ms"]["n"] == service["results"]
        assert service["loop_lag_ms"]["n"] > 0


def test_tracking_is_measured_at_each_size_beside_the_people_detector(
    smoke: tuple[dict[str, Any], str, Path],
) -> None:
    results, markdown, _ = smoke
    part = results["tracking"]
    assert [e["detections"] for e in part["tracker"]] == [10, 50, 200]
    for entry in part["tracker"]:
        assert entry["frames"] > 0 and entry["cpu_ms_per_frame"] > 0
        assert entry["ms_per_frame"]["n"] == entry["frames"]
    people = part["people"]["cpu_ms_per_frame"]
    at_50 = part["tracker"][1]["cpu_ms_per_frame"]
    assert part["ratio"]["tracker"] == pytest.approx(at_50 / people, rel=1e-3)
    assert "## 6. Tracking (`--track`)" in markdown
    assert f"**{part['ratio']['tracker'] * 100:.1f} %**" in markdown


def test_filters_part_measures_each_mix_and_each_client_got_what_its_filter_says(
    smoke: tuple[dict[str, Any], str, Path],
) -> None:
    results, markdown, plots = smoke
    part, options = results["filters"], results["options"]["filters"]
    rounds, n, m = options["rounds"], options["full"], options["filtered"]
    configs = {row["config"]: row for row in part["configs"]}
    assert set(configs) == {"full", "full+events", "full+capped", "events", "capped"}
    # Interleaved: N full before, between and after the two mixed windows, in every round.
    assert configs["full"]["windows"] == 3 * rounds
    assert all(configs[name]["windows"] == rounds for name in configs if name != "full")
    assert configs["full+events"]["clients"] == {"full": n, "events": m}
    for window in part["windows"]:
        assert window["published"] > 0 and window["cpu_s"] > 0
        assert window["cpu_us_per_result"] == pytest.approx(
            window["cpu_s"] / window["published"] * 1e6, abs=0.01
        )
        # The full subscribers got the window's results (a gateway starved past --max-age may drop
        # some as stale, which the report shows as missed).
        if "full" in window["clients"]:
            assert 0 < window["deliveries"]["full"] <= window["expected_full"]
        assert window["deliveries"].get("events", 0) == 0
    # The ratios are this run's windows: round 0's events mix over the N-full windows on its sides.
    first = [w for w in part["windows"] if w["round"] == 0]
    at = next(i for i, w in enumerate(first) if w["config"] == "full+events")
    around = (first[at - 1]["cpu_us_per_result"] + first[at + 1]["cpu_us_per_result"]) / 2
    assert part["rounds"][0]["events_with_over_without"] == pytest.approx(
        first[at]["cpu_us_per_result"] / around
    )
    summary = part["summary"]["capped_alone_over_full"]
    assert summary["min"] <= summary["median"] <= summary["max"] and len(summary["rounds"]) == rounds
    # Behaviour, from each client's own records. Every client read at least two events before it
    # stopped (bench.client --min-events 2): results were published between them, so an events-only
    # client that has none was sent none, and did not just stop before they came.
    groups = part["clients"]
    assert {g["flavour"] for g in groups} == {"full", "events", "capped"}
    assert all(g["events_min"] >= 2 and g["closed_by_gateway"] == 0 for g in groups)
    events = [g for g in groups if g["flavour"] == "events"]
    assert len(events) == 2 * rounds and all(g["results"] == 0 for g in events)
    capped = [g for g in groups if g["flavour"] == "capped"]
    assert len(capped) == 2 * rounds
    # Each capped client got results (the newest, at most max_rate of them per second).
    assert all(g["clients_without_results"] == 0 and g["clients_over_cap"] == 0 for g in capped)
    assert "## 7. Subscription filters" in markdown and "perf/filters.png" in markdown
    assert f"{summary['median']:.2f}{chr(0xD7)}" in markdown
    png = plots / "filters.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_cap_check_counts_clients_past_their_cap() -> None:
    # Each result is received 0.3 s after its capture. Connection 0: the latest at subscribe, then
    # one result each 0.5 s (max_rate=2): within its cap, however late each arrives. Connection 1:
    # the latest, then five results 0.1 s apart: over it.
    captured = [0.0, 0.01, 0.51, 1.01, 1.51, 0.0, 0.01, 0.11, 0.21, 0.31, 0.41]
    records = Records(
        seq=np.arange(len(captured), dtype=np.int64),
        captured=np.asarray(captured),
        received=np.asarray(captured) + 0.3,
        conn=np.asarray([0] * 5 + [1] * 6, dtype=np.int32),
        connections=2,
    )
    check = filters_analysis.cap_check(records, 2, 2.0)
    assert check["clients_over_cap"] == 1
    assert check["max_results_per_s"] == pytest.approx(4 / 0.4)
    # A client that stalls 0.6 s reads its first live result late, with the next one in the same
    # recv(): still within its cap (a check on receipt times alone would count it over).
    records.received[1] += 0.6
    records.received[2] = records.received[1]
    assert filters_analysis.cap_check(records, 2, 2.0)["clients_over_cap"] == 1


def test_predictors_part_measures_each_engine_batch_and_the_transport(
    smoke: tuple[dict[str, Any], str, Path],
) -> None:
    results, _, _ = smoke
    part = results["predictors"]
    assert part["model"] == "standin"  # --quick: YOLOv8n's shape without PyTorch
    seen = {(e["engine"], e["threads"], e["batch"]) for e in part["engines"]}
    assert seen == {("opencv", 1, 1), ("onnxruntime", 1, 1), ("onnxruntime", 1, 2)}
    for entry in part["engines"]:
        assert entry["calls"] >= 3 and entry["fps"] > 0
        assert entry["ms_per_frame"] == pytest.approx(entry["call_ms"]["p50"] / entry["batch"], rel=0.01)
    decode = {d["table"]: d for d in part["pre_post"]["decode"]}
    assert decode["8400 candidates"]["kept"] == 300 and decode["10 objects"]["kept"] == 10
    transport = part["transport"]
    assert transport["frame_bytes"] == 640 * 480 * 3
    assert transport["shared_memory_us"]["n"] == transport["pickle_pipe_us"]["n"] > 0


def test_shared_part_runs_cameras_separately_and_on_one_worker(
    smoke: tuple[dict[str, Any], str, Path],
) -> None:
    results, _, _ = smoke
    modes = {e["mode"]: e for e in results["shared"]}
    assert set(modes) == {"separate", "shared"}
    for name, entry in modes.items():
        assert "error" not in entry, entry
        assert len(entry["predictions_per_s_per_camera"]) == 2
        assert all(rate > 0 for rate in entry["predictions_per_s_per_camera"]), name
        assert entry["rss_mb"] > 0 and entry["cpu_ms_per_prediction"] > 0
        assert entry["capture_to_publish_ms"]["n"] > 0
    assert modes["separate"]["processes"] == 2 and modes["shared"]["processes"] == 3  # + the worker
    assert modes["shared"]["mean_batch"] >= 1


def test_report_has_every_table_and_plot(smoke: tuple[dict[str, Any], str, Path]) -> None:
    _, markdown, plots = smoke
    for heading in (
        "## Which strategy when",
        "## Distance to the cost floor (20 clients)",
        "## 1. Fan-out inside one gateway process",
        "### Saturation",
        "### Latency and event-loop lag",
        "### With 10% of the clients stalled",
        "## 2. Through the real topology",
        "## 3. The producer's predictors",
        "## 4. ONNX detectors: engines, threads, batches",
        "## 5. One model for many cameras",
        "Quick smoke configuration",
    ):
        assert heading in markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| 20 |")]
    assert len(table_rows) == 3 * len(STRATEGIES)  # saturation, latency and stall tables
    for name in PLOTS:
        path = plots / name
        assert f"perf/{name}" in markdown
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000


def test_report_states_each_floor_ratio_from_the_results(smoke: tuple[dict[str, Any], str, Path]) -> None:
    results, markdown, _ = smoke
    entries = {e["strategy"]: e for e in results["fanout"]}
    section = markdown.split("## Distance to the cost floor", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "Target" not in line]
    assert len(rows) == 4
    # Each row's framecast cell is the quotient of two strategies of this very run, with its verdict.
    pairs = (
        (("saturation", "server_cpu_us_per_delivery"), "floor-socket", 1.15),
        (("latency", "server_cpu_us_per_delivery"), "floor-transport", 1.20),
        (("saturation", "server_cpu_us_per_delivery"), "broadcast", 0.70),
        (("latency", "latency_ms", "p99"), "floor-transport", 1.10),
    )
    for row, ((phase, *path), base, limit) in zip(rows, pairs, strict=True):
        ours, theirs = entries["framecast"][phase], entries[base][phase]
        for key in path:
            ours, theirs = ours[key], theirs[key]
        ratio = ours / theirs
        cell = row.split(" | ")[2]
        assert cell.startswith(f"{ratio:.2f}"), (row, ratio)
        assert cell.endswith(": met") == (ratio <= limit), row
        if ratio > limit:
            assert f"missed by {ratio / limit - 1:.0%}" in cell


def _quick_part(part: str, tmp_path: Path) -> Any:
    """Run ``python -m bench --quick --parts PART`` (report under ``tmp_path/report``); its results."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_") and k != "REDIS_URL"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    argv = [sys.executable, "-m", "bench", "--quick", "--parts", part, "--output", str(tmp_path)]
    done = subprocess.run(
        [*argv, "--docs", str(tmp_path / "report" / "performance.md")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp_path / "latest-quick.json").read_text())[part]


def test_profile_mode_writes_a_flamegraph_and_the_top_functions(tmp_path: Path) -> None:
    docs = tmp_path / "report" / "performance.md"
    profile = _quick_part("profile", tmp_path)
    assert profile["strategy"] == "framecast" and profile["fanned_out"] > 0
    assert profile["samples"] > 0
    # py-spy saw the fan-out's own hot loop under the samples, not just the event loop.
    assert any("Writer.write" in row["function"] for row in profile["total"])
    own = [row["samples"] for row in profile["self"]]
    assert own == sorted(own, reverse=True) and sum(own) <= profile["samples"]
    svg = (docs.parent / "perf" / profile["svg"]).read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "Writer.write" in svg
    text = (docs.parent / "perf" / profile["text"]).read_text()
    assert "Top functions by own time" in text and profile["self"][0]["function"] in text
    markdown = docs.read_text()
    assert f"perf/{profile['svg']}" in markdown and f"perf/{profile['text']}" in markdown
    assert f"`{profile['self'][0]['function']}`" in markdown


def test_capacity_part_measures_idle_memory_and_redis_throughput(tmp_path: Path) -> None:
    capacity = _quick_part("capacity", tmp_path)
    assert "error" not in capacity
    direct, proxied = capacity["idle"]["direct"], capacity["idle"]["nginx"]
    assert direct["connections"] == 20 and proxied["connections"] == 10
    # The processes were found and measured, and the per-connection figure is their growth / count.
    for figures in (direct, proxied):
        assert figures["gateway_rss_before"] > 0 and figures["nginx_rss_before"] > 0
        grown = figures["gateway_rss_after"] - figures["gateway_rss_before"]
        assert figures["gateway_bytes_per_connection"] == round(grown / figures["connections"])
    redis = capacity["redis"]
    # Every PUBLISH reached the one subscriber.
    assert redis["messages"] > 0 and redis["receivers"] == redis["messages"]
    if redis["valkey_cpu_s"] > 0:
        per_message = redis["valkey_cpu_s"] / redis["messages"] * 1e6
        assert redis["valkey_cpu_us_per_message"] == pytest.approx(per_message, rel=0.01, abs=0.001)


def test_video_part_measures_video_against_previews(tmp_path: Path) -> None:
    video = _quick_part("video", tmp_path)
    rows = {row["mode"]: row for row in video["rows"]}
    assert set(rows) == {"video", "previews"} and all(r["viewers"] == 10 for r in rows.values())
    # Each viewer read pictures of its kind in the window, and every one of them joined with one.
    for row in rows.values():
        assert row["pictures_per_viewer_s"] > 0 and row["first_picture_clients"] == 10
        assert row["cpu_us_per_picture"] == pytest.approx(
            row["gateway_cpu_s"] / (row["pictures_per_viewer_s"] * 10 * row["window_s"]) * 1e6, rel=1e-6
        )
    links = {entry["mode"]: entry for entry in video["links"]}
    assert links["video"]["1 Gbit/s"] == int(1e9 / 8 / rows["video"]["bytes_per_viewer_s"])
    # Capture -> paint: a sample of the viewers decoded what it received, video with FFmpeg and
    # previews with OpenCV, and every part of the latency is a real, ordered measurement.
    for row in rows.values():
        latency = row["latency"]
        assert latency["viewers"] == 2 and latency["pictures"] > 0 and latency["decode_errors"] == 0
        paint = latency["capture_to_paint_ms"]
        assert all(math.isfinite(paint[q]) and paint[q] > 0 for q in ("p50", "p95", "p99", "max"))
        assert paint["p50"] <= paint["p95"] <= paint["p99"] <= paint["max"]
        for part in ("producer", "gateway", "decode"):
            assert math.isfinite(latency["parts_ms"][part]["p50"])
        assert latency["parts_ms"]["decode"]["p50"] > 0
    # The gateway never sends a delta frame without the frames before it: nothing was skipped.
    assert rows["video"]["latency"]["skipped"] == 0
    assert rows["video"]["encode_delay_ms_mean"] > 0
    # The report shows them, with the plot.
    markdown = (tmp_path / "report" / "performance.md").read_text()
    assert "capture→paint p50 / p95 / p99" in markdown and "perf/video_latency.png" in markdown
    plot = tmp_path / "report" / "perf" / "video_latency.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_and_bad_settings() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0
    assert "--quick" in shown.stdout and "--report-only" in shown.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "bench", "--parts", "fanout,nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("python -m bench: error: --parts=fanout,nope")


# --------------------------------------------------------------------------
# The load client's frame reader, fed real frames over a real socket pair


def _server_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big") + payload


def _unmask(frame: bytes) -> tuple[int, bytes]:
    assert frame[1] & 0x80, "client frames must be masked"
    size = frame[1] & 127
    start = 2
    if size == 126:
        size, start = int.from_bytes(frame[2:4], "big"), 4
    elif size == 127:
        size, start = int.from_bytes(frame[2:10], "big"), 10
    mask = frame[start : start + 4]
    body = frame[start + 4 : start + 4 + size]
    return frame[0] & 15, bytes(b ^ mask[i % 4] for i, b in enumerate(body))


def test_client_reads_results_split_anywhere_and_answers_pings() -> None:
    ours, theirs = socket.socketpair()
    try:
        recorder = _Recorder(ClientConfig(url="ws://127.0.0.1:9/ws/bench"))
        conn = _Conn(3, ours)
        conn.state = 2  # open
        payload = Payload()
        hello = b'{"type":"hello","gateway":"gw7","v":1}'
        stream = _server_frame(hello) + b"".join(
            _server_frame(payload.make(seq, 1000.0 + seq)) for seq in range(1, 6)
        )
        stream += _server_frame(b"ping!", opcode=0x9) + _server_frame(payload.make(6, 1006.0))
        # Cut the byte stream at awkward places: inside headers, inside payloads.
        cuts = [0, 1, 3, 40, 41, 333, 700, 701, len(stream) - 5, len(stream)]
        for start, end in itertools.pairwise(cuts):
            recorder._feed(conn, stream[start:end], 2000.0)
        assert list(recorder.seq) == [1, 2, 3, 4, 5, 6]
        assert list(recorder.cap) == [1001.0, 1002.0, 1003.0, 1004.0, 1005.0, 1006.0]
        assert set(recorder.conn) == {3}
        assert conn.gateway == "gw7"
        assert conn.buf == b""
        opcode, body = _unmask(theirs.recv(1024))
        assert (opcode, body) == (0xA, b"ping!")
        # A close frame is answered and ends the connection, its code counted.
        recorder._feed(conn, _server_frame((4008).to_bytes(2, "big") + b"slow", opcode=0x8), 2001.0)
        assert recorder.close_codes == {4008: 1}
        assert conn.closed_by_peer
        assert _unmask(theirs.recv(1024)) == (0x8, (4008).to_bytes(2, "big"))
    finally:
        ours.close()
        theirs.close()


def test_client_frames_are_masked_round_trip() -> None:
    for size in (0, 5, 125, 126, 300, 70000):
        body = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        assert len(body) == size
        assert _unmask(_mask_frame(0x1, body)) == (0x1, body)


# --------------------------------------------------------------------------
# The floor and the experiment's write paths, over real sockets to real websockets clients


async def _serve(strategy: strategies.Strategy, *, sndbuf: int = 0) -> Any:
    async def handler(ws: ServerConnection) -> None:
        if sndbuf:
            ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        strategy.add(ws)
        try:
            await ws.wait_closed()
        finally:
            strategy.remove(ws)

    return serve(handler, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None)


def _message(seq: int, size: int) -> bytes:
    """A real bench result, padded with JSON whitespace to ``size`` bytes."""
    data = Payload(stream=strategies.STREAM).make(seq, time.time())
    return data + b" " * (size - len(data))


@pytest.mark.parametrize("name", ["floor-socket", "framecast"])
async def test_raw_send_hands_the_rest_to_the_transport_in_order(name: str) -> None:
    # framecast with room for everything: this test is about the write path, not the policy.
    strategy = strategies.make(name, framecast_options={"client_buffer": 1 << 26})
    async with await _serve(strategy, sndbuf=8192) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, max_size=None) as client:
            await poll(lambda: strategy.count() == 1, what="the connection to register")
            assert _wsio.writers(next(iter(server.connections)))[0] is not None
            # Far more than the kernel's buffers hold, written without yielding: the kernel takes
            # part, then refuses (a partial write, then EAGAIN), and the transport gets the rest.
            messages = [_message(seq, 200_000) for seq in range(1, 41)]
            for data in messages:
                strategy.deliver(data)
            assert strategy.stats()["buffered_bytes"] > 0
            received = [await asyncio.wait_for(client.recv(decode=False), 20) for _ in messages]
    assert [json.loads(r)["seq"] for r in received] == list(range(1, 41))
    assert received == messages
