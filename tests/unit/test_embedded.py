"""framecast.local.embedded's port checks agree with the servers that bind those ports."""

from __future__ import annotations

import socket
from pathlib import Path

from framecast.local.embedded import port_in_use
from tests.support.wait import wait_until

_TIME_WAIT = "06"  # the state column of /proc/net/tcp


def _time_wait_on(port: int) -> bool:
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(
        int(local.split(":")[1], 16) == port and state == _TIME_WAIT
        for local, state in ((row.split()[1], row.split()[3]) for row in rows)
    )


def _leave_time_wait() -> int:
    """A port whose listener is gone, with a connection it closed first left in TIME_WAIT."""
    with socket.socket() as listener:
        # As nginx's listeners do: Linux lets a new bind share the port with TIME_WAIT
        # sockets only when both ends set SO_REUSEADDR.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port: int = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            # The side that closes first keeps TIME_WAIT: here, the server's end on `port`.
            accepted.close()
            assert client.recv(1) == b""
    wait_until(lambda: _time_wait_on(port), timeout=10, what=f"TIME_WAIT on port {port}")
    return port


def test_a_port_with_only_time_wait_connections_is_free() -> None:
    port = _leave_time_wait()
    # What port_in_use used to do: a plain bind fails (the TIME_WAIT socket is really there)...
    with socket.socket() as plain:
        try:
            plain.bind(("127.0.0.1", port))
        except OSError:
            pass
        else:
            raise AssertionError(f"port {port} had no TIME_WAIT socket: the test proves nothing")
    # ...while nginx, binding with SO_REUSEADDR, can listen on it, and port_in_use says so.
    assert not port_in_use(port)
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        # A listener makes it busy again.
        assert port_in_use(port)
