"""The gateway's entry point: ``python -m gateway`` and ``framecast gateway``.

Reads the settings, runs one :class:`~gateway.app.Gateway` until SIGTERM/SIGINT, then
drains it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from framecast import logs
from framecast.limits import raise_open_files_limit
from framecast.settings import fail
from gateway.app import Gateway
from gateway.auth import Authenticator
from gateway.config import GatewayConfig, read_config

# Descriptors a gateway needs besides its clients: Redis (pub/sub and the command pool), the
# listening socket, logs, health and metrics requests.
_FDS_KEPT = 128

__all__ = ["main"]

log = logging.getLogger("gateway")


async def _run(config: GatewayConfig, auth: Authenticator, prog: str) -> int:
    gateway = Gateway(config, authenticator=auth)
    try:
        await gateway.start()
    except OSError as exc:
        await gateway.broker.aclose()
        if exc.errno == errno.EADDRINUSE:
            return fail(
                prog, f"port {config.port} is in use ({exc.strerror}); stop the other server or pick --port"
            )
        return fail(prog, f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "gateway %s listening on http://%s:%d (WebSocket /ws and /ws/<stream>; Redis %s)",
        config.id,
        config.host,
        gateway.port,
        logs.redact_url(config.redis_url),
    )
    await stop.wait()
    await gateway.drain()
    log.info("gateway %s stopped", config.id)
    return 0


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m gateway") -> int:
    """Run a gateway until SIGTERM/SIGINT; returns the exit status."""
    config = read_config(argv, prog=prog)
    logs.setup(config.log_level, name="gateway")
    try:
        auth = Authenticator(secret=config.jwt_secret, public_key_path=config.jwt_public_key)
    except ValueError as exc:
        return fail(prog, str(exc), 2)
    open_files = raise_open_files_limit()
    room = open_files - _FDS_KEPT
    if config.max_connections > room:
        default = GatewayConfig.__dataclass_fields__["max_connections"].default
        if config.max_connections != default:
            # Past the limit the kernel refuses clients (EMFILE) before the gateway can answer 503.
            return fail(
                prog,
                f"--max-connections (FRAMECAST_MAX_CONNECTIONS) {config.max_connections} needs "
                f"{config.max_connections + _FDS_KEPT} open files, but the limit is {open_files}: "
                "lower it or raise the limit ('ulimit -n', the container's nofile)",
                2,
            )
        log.warning(
            "the open-files limit is %d: --max-connections lowered from its default %d to %d "
            "(raise the limit with 'ulimit -n' or the container's nofile)",
            open_files,
            default,
            max(1, room),
        )
        config = dataclasses.replace(config, max_connections=max(1, room))
    runner: dict[str, Any] = {}
    if config.uvloop:
        try:
            import uvloop  # type: ignore[import-not-found,unused-ignore]

            runner["loop_factory"] = uvloop.new_event_loop
        except ImportError:
            log.warning("--uvloop: uvloop is not installed (pip install uvloop); using asyncio's loop")
    with asyncio.Runner(**runner) as run:
        return run.run(_run(config, auth, prog))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
