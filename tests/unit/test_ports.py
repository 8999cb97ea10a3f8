"""framecast.local.ports: ports for servers that cannot bind port 0, never handed out twice at once."""

from __future__ import annotations

import multiprocessing
import socket

import pytest

from framecast.exceptions import EmbeddedError
from framecast.local.ports import _ephemeral, free_port, port_range


def test_the_range_lies_outside_the_kernels_ephemeral_range() -> None:
    first, last = _ephemeral()
    ports = port_range({})
    assert len(ports) >= 1000
    assert ports[-1] < first or ports.start > last
    assert free_port() in ports


def test_the_range_can_be_chosen_and_a_bad_one_is_named() -> None:
    assert port_range({"FRAMECAST_PORT_RANGE": "20000-20009"}) == range(20000, 20010)
    for bad in ("20000", "9-20", "30000-20000", "a-b", "20000-70000"):
        with pytest.raises(EmbeddedError, match="FRAMECAST_PORT_RANGE"):
            port_range({"FRAMECAST_PORT_RANGE": bad})


def _take(count: int, results: multiprocessing.Queue[list[int]]) -> None:
    results.put([free_port() for _ in range(count)])


def test_processes_taking_ports_at_once_never_get_the_same_one() -> None:
    context = multiprocessing.get_context("spawn")  # fresh interpreters, like separate test runs
    results: multiprocessing.Queue[list[int]] = context.Queue()
    workers = [context.Process(target=_take, args=(100, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    taken = [port for _ in workers for port in results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=30)
    assert len(taken) == 400
    assert len(set(taken)) == 400
    assert set(taken) <= set(port_range())


def _listening_beside_a_free_port() -> tuple[socket.socket, int]:
    """A listening socket whose port has a free neighbour, and that neighbour.

    Both neighbours of a kernel-chosen port can be taken on a busy machine: another port is
    tried (bounded), so the test always runs.
    """
    for _ in range(50):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        for neighbour in (taken - 1, taken + 1):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", neighbour))
                except OSError:
                    continue
            return busy, neighbour
        busy.close()
    raise AssertionError("50 listening ports in a row had no free neighbour")


def test_a_port_something_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    # A range of two ports, one of them busy: every port handed out is the other one.
    busy, neighbour = _listening_beside_a_free_port()
    with busy:
        low, high = sorted((busy.getsockname()[1], neighbour))
        monkeypatch.setenv("FRAMECAST_PORT_RANGE", f"{low}-{high}")
        assert {free_port() for _ in range(6)} == {neighbour}


def test_every_port_busy_is_an_error_naming_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("FRAMECAST_PORT_RANGE", f"{port}-{port}")
        with pytest.raises(EmbeddedError, match=f"no free port in {port}-{port}"):
            free_port()
