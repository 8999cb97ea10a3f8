"""Profile mode: where the gateway's time goes, as py-spy sees it.

One ``bench.server`` running the ``framecast`` strategy to ``clients`` load
clients is driven at saturation (as in part 1's saturation phase) while
``py-spy record`` samples it twice in a row: once into a flamegraph SVG, once
into collapsed stacks, which :func:`summarise` turns into the top functions by
own time and by inclusive time. Both land in ``perf/`` beside the report
(``profile-<strategy>.svg`` and ``.txt``); the results keep the summary.

py-spy (the ``bench`` extra) attaches to a running process: it needs root or
``ptrace`` rights (``kernel.yama.ptrace_scope`` 0 or ``CAP_SYS_PTRACE``).
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import Load
from bench.procs import BenchError, Children, read_json_line
from bench.single import _Server

__all__ = ["ProfileOptions", "py_spy", "run", "summarise"]


@dataclass(frozen=True, kw_only=True)
class ProfileOptions:
    """What the profile mode runs."""

    strategy: str = "framecast"
    clients: int = 1000
    processes: int = 2
    seconds: float = 6.0
    rate_hz: int = 200
    native: bool = True
    top: int = 40
    warmup: float = 0.5
    server_cpus: tuple[int, ...] = ()
    client_cpus: tuple[int, ...] = ()


def py_spy() -> str | None:
    """The ``py-spy`` executable beside this interpreter, or on ``PATH``."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def summarise(folded: str, *, top: int = 25) -> dict[str, Any]:
    """Top functions of py-spy's collapsed stacks (``frame;frame;... count`` per line).

    Returns:
        ``samples`` (total), ``self`` and ``total``: lists of
        ``{"function", "samples", "share"}``, largest first. Own time is the
        leaf frame's; inclusive time counts a function once per stack.
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f.strip() for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n

    def ranked(counter: collections.Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": n, "share": round(n / samples, 4) if samples else 0.0}
            for name, n in counter.most_common(top)
        ]

    return {"samples": samples, "self": ranked(own), "total": ranked(inclusive)}


def _record(binary: str, pid: int, out: Path, fmt: str, seconds: float, options: ProfileOptions) -> None:
    argv = [
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(options.rate_hz),
        "--format",
        fmt,
        "--function",
        "--output",
        str(out),
    ]
    if options.native:
        argv.append("--native")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise BenchError(f"py-spy record ({fmt}) failed with status {done.returncode}: {tail[0]}")


def _text(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"py-spy profile of the bench gateway ({meta['strategy']} strategy, {meta['clients']} clients, "
        "saturated)",
        f"{meta['machine']} · {meta['samples']} samples at {meta['rate_hz']} Hz over {meta['seconds']} s"
        + (" · native frames" if meta["native"] else ""),
        "",
    ]
    for key, title in (("self", "own time (leaf frame)"), ("total", "inclusive time")):
        lines += [f"Top functions by {title}:", f"{'share':>7}  {'samples':>7}  function"]
        lines += [f"{row['share']:>7.1%}  {row['samples']:>7}  {row['function']}" for row in summary[key]]
        lines.append("")
    return "\n".join(lines)


def run(
    options: ProfileOptions, *, directory: Path, machine: str, say: Callable[[str], None]
) -> dict[str, Any]:
    """Profile one strategy at saturation; writes ``profile-<strategy>.svg`` and ``.txt`` in ``directory``.

    Raises:
        BenchError: py-spy is missing or failed, or the bench processes did.
    """
    binary = py_spy()
    if binary is None:
        raise BenchError("py-spy not found: install the bench extra (pip install -e '.[bench]')")
    directory.mkdir(parents=True, exist_ok=True)
    svg = directory / f"profile-{options.strategy}.svg"
    text = directory / f"profile-{options.strategy}.txt"
    say(f"profile: {options.strategy} to {options.clients} clients under py-spy")
    with Children() as children, tempfile.TemporaryDirectory() as scratch:
        server = _Server(children, options.strategy, [], cpus=options.server_cpus)
        load = Load(
            children,
            url=f"ws://127.0.0.1:{server.port}/",
            connections=options.clients,
            processes=options.processes,
            cpus=options.client_cpus,
            nice=0 if options.client_cpus else 5,
        )
        server.wait_for(options.clients)
        server.run(options.warmup, 30)
        # One saturated phase, sampled twice in a row: py-spy writes one format per recording.
        window = options.seconds / 2
        stdin = server.process.stdin
        assert stdin is not None
        stdin.write(json.dumps({"cmd": "run", "seconds": options.seconds + 1.0, "rate": 0}) + "\n")
        stdin.flush()
        started = time.monotonic()
        folded = Path(scratch) / "stacks.txt"
        _record(binary, server.process.pid, svg, "flamegraph", window, options)
        _record(binary, server.process.pid, folded, "raw", window, options)
        reply = read_json_line(server.process, options.seconds * 3 + 30, server.name)
        recorded = round(time.monotonic() - started, 1)
        server.quit()
        load.finish()
        summary = summarise(folded.read_text(), top=options.top)
    meta = {
        "strategy": options.strategy,
        "clients": options.clients,
        "seconds": round(window, 1),
        "rate_hz": options.rate_hz,
        "native": options.native,
        "machine": machine,
        "samples": summary["samples"],
    }
    text.write_text(_text(summary, meta) + "\n")
    say(f"profile: {summary['samples']} samples; flamegraph {svg}, summary {text}")
    return {
        **meta,
        "phase_s": recorded,
        "fanned_out": reply.get("fanned_out"),
        "svg": svg.name,
        "text": text.name,
        "self": summary["self"],
        "total": summary["total"],
    }
