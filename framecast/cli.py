"""The ``framecast`` command: one entry point, one subcommand per component.

Each subcommand lives in its own module with its own ``main(argv)``, imported
only when asked for, so ``framecast gateway`` never imports OpenCV.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

_COMMANDS: dict[str, tuple[str, str]] = {
    "up": (
        "framecast.local.up",
        "run the whole topology on this machine (valkey, producer, gateways, nginx)",
    ),
    "producer": ("producer.service", "read a camera, run a predictor, publish results to Redis"),
    "inference": (
        "producer.inference.main",
        "one model for many cameras: the shared, batched inference worker",
    ),
    "gateway": ("gateway.main", "serve a Redis-fed stream to WebSocket clients"),
    "watch": ("framecast.client.watch", "print the results a gateway serves, one line each"),
    "record": (
        "framecast.client.record",
        "save a stream's live video to an .mp4 or .webm file (no re-encoding)",
    ),
    "bench": (
        "bench.__main__",
        "measure fan-out strategies, the topology and the predictors (from a source checkout)",
    ),
}

_CHECKOUT_ONLY = {"bench": "bench"}
"""Commands whose package is not in the wheel: they run from a source checkout of framecast."""


def _usage() -> str:
    lines = ["usage: framecast <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in _COMMANDS.items()]
    lines += ["", "Run 'framecast <command> --help' for a command's options."]
    return "\n".join(lines)


def _print(text: str) -> int:
    """Print ``text``; a reader that went away (``framecast | head``) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python's documented recipe: point stdout at /dev/null so the flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        return _print(_usage())
    if args[0] in ("-V", "--version"):
        from framecast import __version__

        return _print(f"framecast {__version__}")
    name, rest = args[0], args[1:]
    if name not in _COMMANDS:
        print(f"framecast: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        # A subcommand's import can take seconds (OpenCV, numpy): Ctrl-C then, or in a command
        # that does not handle it itself, is one line and the shell's 130, not a traceback.
        try:
            module = importlib.import_module(_COMMANDS[name][0])
        except ModuleNotFoundError as exc:
            package = _CHECKOUT_ONLY.get(name)
            if package is None or (exc.name or "").split(".")[0] != package:
                raise
            print(
                f"framecast {name}: error: it runs from a source checkout of framecast (its package is "
                f"not installed with framecast): run 'python -m {package}' in the checkout",
                file=sys.stderr,
            )
            return 2
        status: int = module.main(rest, prog=f"framecast {name}")
    except KeyboardInterrupt:
        print(f"framecast {name}: interrupted", file=sys.stderr, flush=True)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
