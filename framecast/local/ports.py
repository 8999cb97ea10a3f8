"""Ports for servers that cannot bind port 0 and report what they got (valkey, nginx, a cluster bus).

The usual trick, bind port 0, read the port, close, hand the number to the server, races twice:

* the kernel hands the same ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``,
  32768-60999 on Linux) to every outgoing connection, so between the check and the server's bind
  any client socket on the machine may take the port as its source port (a test suite that opens
  thousands of client sockets makes that likely);
* another process doing the same check at the same moment may get the same answer.

:func:`free_port` avoids both: it hands out ports from a range just *below* the ephemeral one, which
the kernel never picks for a client socket, and it takes them in turn from a counter shared by
every process on the machine (a file under the temp directory, read and advanced under ``flock``), so
two processes, tests running side by side or in other checkouts, never get the same port until the
whole range has gone round. A port something else listens on is skipped.

``FRAMECAST_PORT_RANGE=LOW-HIGH`` picks the range instead (inclusive).
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from framecast.exceptions import EmbeddedError

__all__ = ["free_port", "port_in_use", "port_range"]

# How many ports the range holds at most: enough that a port comes round again only after
# thousands of servers, few enough to stay clear of the low, well-known ones.
_SPAN = 10000
_LOWEST = 10000
_EPHEMERAL = "/proc/sys/net/ipv4/ip_local_port_range"
_DEFAULT_EPHEMERAL = (32768, 60999)  # Linux's default; macOS's 49152-65535 lies above it
_COUNTER = "framecast-ports"


def port_range(environ: Mapping[str, str] | None = None) -> range:
    """The ports :func:`free_port` hands out: ``FRAMECAST_PORT_RANGE``, else the ones just below the
    kernel's ephemeral range (just above it when there is no room below).

    Raises:
        EmbeddedError: ``FRAMECAST_PORT_RANGE`` is not ``LOW-HIGH`` within 1024-65535.
    """
    env = os.environ if environ is None else environ
    given = env.get("FRAMECAST_PORT_RANGE", "").strip()
    if given:
        low_text, _, high_text = given.partition("-")
        try:
            low, high = int(low_text), int(high_text)
        except ValueError:
            low = high = 0
        if not 1024 <= low <= high <= 65535:
            raise EmbeddedError(f"FRAMECAST_PORT_RANGE={given!r}: expected LOW-HIGH within 1024-65535")
        return range(low, high + 1)
    first, last = _ephemeral()
    if first - _LOWEST >= 1000:
        return range(max(_LOWEST, first - _SPAN), first)
    return range(last + 1, min(65536, last + 1 + _SPAN))


def _ephemeral() -> tuple[int, int]:
    try:
        first, last = (int(x) for x in Path(_EPHEMERAL).read_text().split())
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL
    return first, last


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on ``host:port`` (or it cannot be bound).

    Binds the way nginx, valkey and the gateways do, with ``SO_REUSEADDR``: connections
    of an earlier run left in TIME_WAIT do not make a free port look busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port for a server to bind on ``host``: free now, and handed to no other caller on this
    machine until the whole :func:`port_range` has gone round.

    Raises:
        EmbeddedError: Every port of the range is in use.
    """
    ports = port_range()
    with _counter() as (read, write):
        last = read()
        start = (last + 1 - ports.start) % len(ports) if last in ports else os.getpid() % len(ports)
        for step in range(len(ports)):
            port = ports[(start + step) % len(ports)]
            if not port_in_use(port, host):
                write(port)
                return port
    raise EmbeddedError(f"no free port in {ports.start}-{ports[-1]} (FRAMECAST_PORT_RANGE picks others)")


@contextlib.contextmanager
def _counter() -> Iterator[tuple[Callable[[], int], Callable[[int], None]]]:
    """The machine-wide last port handed out, locked for the duration of the block."""
    import fcntl  # POSIX only, like the servers it is for

    path = Path(tempfile.gettempdir()) / _COUNTER
    try:
        # One file for every user, so that two users' test runs do not collide either.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        fd = os.open(path.with_name(f"{_COUNTER}-{os.getuid()}"), os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+b") as file:
        if os.fstat(fd).st_uid == os.getuid():
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o666)  # the umask may have narrowed the shared file's mode
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file closes

        def read() -> int:
            file.seek(0)
            try:
                return int(file.read(16) or b"0")
            except ValueError:
                return 0

        def write(port: int) -> None:
            file.seek(0)
            file.truncate()
            file.write(b"%d" % port)
            file.flush()

        yield read, write
