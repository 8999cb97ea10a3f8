"""The report's sections on ONNX models: engines (part ``predictors``) and sharing (part ``shared``).

Like :mod:`bench.report`, nothing is measured here: tables and sentences are built from one
run's results, so the text never claims what the run did not show.
"""

from __future__ import annotations

from typing import Any

__all__ = ["predictors_section", "shared_section"]

_NONE = "\u2013"
_X = "\u00d7"


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return _NONE
    return f"{float(value):,.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _model_note(model: str) -> str:
    if model == "standin":
        return (
            "The model is the **stand-in** (YOLOv8n's output shape, a fraction of its compute): these rows "
            "show that the harness works, not what a detector costs."
        )
    return (
        "The model is **YOLOv8n** built from Ultralytics' own definition with random weights "
        "(`YOLO_OFFLINE=1`, nothing downloaded; `python -m bench.models`): the real architecture and "
        "compute, input 640" + _X + "640, output [N, 84, 8400]."
    )


def predictors_section(results: dict[str, Any]) -> list[str]:
    """Section 4: engines, threads and batch sizes; letterbox and NMS; the frame transport."""
    part = results.get("predictors")
    if not isinstance(part, dict) or "engines" not in part:
        return []
    lines = [
        "## 4. ONNX detectors: engines, threads, batches",
        "",
        _model_note(part.get("model", "")),
        "Each row calls the engine back to back on a ready blob (inference only); a batch of B "
        "frames is one call. onnxruntime runs a model exported with a dynamic batch axis for B > 1. "
        "The machine's load average was "
        f"{_num(part.get('load_average_before'))} before and {_num(part.get('load_average_after'))} after: "
        "other work inflates the wall-clock columns, much less the CPU per frame.",
        "",
    ]
    rows = []
    base = None
    for e in part["engines"]:
        if e["engine"] == "opencv" and e["threads"] == max(x["threads"] for x in part["engines"]):
            base = e["ms_per_frame"]
    for e in part["engines"]:
        ratio = f"{base / e['ms_per_frame']:.2f}{_X}" if base and e["ms_per_frame"] else _NONE
        rows.append(
            [
                e["engine"],
                e["provider"],
                str(e["threads"]),
                str(e["batch"]),
                _num(e["fps"]),
                _num(e["ms_per_frame"]),
                _num(e["call_ms"]["p50"]),
                _num(e["call_ms"]["p99"]),
                _num(e.get("cpu_ms_per_frame")),
                ratio,
            ]
        )
    lines += _table(
        [
            "engine",
            "provider",
            "threads",
            "batch",
            "frames/s",
            "ms per frame",
            "call p50 ms",
            "call p99 ms",
            "CPU ms per frame",
            "speed vs OpenCV (most threads)",
        ],
        rows,
    )
    pre = part.get("pre_post", {})
    if pre:
        lines += [
            "",
            "Around the model, per 640" + _X + "480 frame (p50, ms): letterbox + blob "
            f"{_num(pre['letterbox_ms']['p50'], 2)} (before: `copyMakeBorder` + `blobFromImage`, "
            f"{_num(pre['letterbox_before_ms']['p50'], 2)}). Decode + per-class NMS, at most 300 boxes kept:",
            "",
        ]
        lines += _table(
            ["output", "candidates over 0.25", "kept", "ms p50", "ms p99", "before (list + OpenCV NMS) p50"],
            [
                [
                    d["table"],
                    str(d["candidates"]),
                    str(d["kept"]),
                    _num(d["ms"]["p50"], 2),
                    _num(d["ms"]["p99"], 2),
                    _num(d["before_ms"]["p50"], 2),
                ]
                for d in pre.get("decode", [])
            ],
        )
    transport = part.get("transport")
    if transport:
        shm, pickled = transport["shared_memory_us"], transport["pickle_pipe_us"]
        lines += [
            "",
            f"A frame's round trip to another process ({transport['frame_bytes']:,} bytes, answered by a "
            "small message; µs): shared memory + a control message "
            f"p50 {_num(shm['p50'], 0)} / p99 {_num(shm['p99'], 0)}, pickled through a pipe "
            f"p50 {_num(pickled['p50'], 0)} / p99 {_num(pickled['p99'], 0)}; the sender's CPU per frame "
            f"{_num(transport['sender_cpu_us']['shared_memory'], 0)} vs "
            f"{_num(transport['sender_cpu_us']['pickle_pipe'], 0)} µs. The shared inference worker uses "
            "the first.",
        ]
    return [*lines, ""]


def shared_section(results: dict[str, Any]) -> list[str]:
    """Section 5: cameras each loading the model vs one shared worker."""
    entries = [e for e in results.get("shared", []) if "error" not in e]
    if not entries:
        return []
    options = results.get("options", {}).get("shared", {})
    lines = [
        "## 5. One model for many cameras",
        "",
        f"{options.get('cameras', '?')} synthetic cameras at `--max-fps {options.get('fps', '?')}` "
        f"(640{_X}480), measured together over one {_num(options.get('seconds'), 0)} s window after a "
        f"warm-up. *separate*: each producer loads the model (`--detector onnx:...`); *shared*: one "
        f"`framecast inference` worker, the producers with `--predictor-socket` (batches of up to 8 "
        f"within {_num((options.get('batch_wait') or 0) * 1e3, 0)} ms, or 1). RSS adds up every process "
        "of the mode; CPU per prediction is every process's CPU over the predictions published. "
        "The load average is the machine's at the window's end: other work there takes CPU from a mode "
        "with few threads (one worker) more than from one with many (a model per camera).",
        "",
        _model_note(options.get("model", "")),
        "",
    ]
    rows = []
    for e in entries:
        latency = e["capture_to_publish_ms"]
        rows.append(
            [
                e["mode"],
                str(e["processes"]),
                _num(e["rss_mb"], 0),
                _num(e["predictions_per_s_per_camera_mean"], 2)
                + " ("
                + ", ".join(_num(v, 1) for v in e["predictions_per_s_per_camera"])
                + ")",
                _num(e["cpu_ms_per_prediction"]),
                _num(e["cpu_cores"], 2),
                _num(latency["p50"]),
                _num(latency["p99"]),
                _num(e.get("mean_batch"), 2) if "mean_batch" in e else _NONE,
                _num(e.get("load_average"), 1),
            ]
        )
    lines += _table(
        [
            "mode",
            "processes",
            "RSS MB",
            "predictions/s per camera (each)",
            "CPU ms per prediction",
            "CPU cores",
            "capture->publish p50 ms",
            "p99 ms",
            "mean batch",
            "load average",
        ],
        rows,
    )
    by = {e["mode"]: e for e in entries}
    if "separate" in by and "shared" in by:
        a, b = by["separate"], by["shared"]
        rate = "predictions_per_s_per_camera_mean"
        cpu = "cpu_ms_per_prediction"
        lines += [
            "",
            f"Shared vs separate in this run: RSS {_num(b['rss_mb'], 0)} vs {_num(a['rss_mb'], 0)} MB "
            f"({_num(b['rss_mb'] / a['rss_mb'] * 100, 0)}%), predictions/s per camera "
            f"{_num(b[rate], 2)} vs {_num(a[rate], 2)}, "
            f"CPU per prediction {_num(b[cpu])} vs {_num(a[cpu])} ms.",
        ]
    return [*lines, ""]
