"""docker-compose.yml on a real Docker Engine, reached only through nginx's port published on 127.0.0.1.

The base images are local stand-ins (deploy/standins/); the framecast images are built from the
repository's unmodified Dockerfiles. One project serves the whole module; every test first puts
it back to three healthy gateways, and the project is removed with its networks and images.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from collections.abc import Iterator

import pytest

from framecast.local.embedded import free_port
from tests.docker._clients import each_gets, hello_gateway, raw_sockets, watchers
from tests.docker._compose import COMPOSE, ROOT, Project, docker, docker_ok
from tests.support.wait import poll, wait_until

pytestmark = pytest.mark.docker


class Stack:
    def __init__(self, project: Project, port: int) -> None:
        self.project = project
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws/default"

    def scale(self, gateways: int) -> list[str]:
        """Scale the gateways without touching anything else; return their healthy containers."""
        self.project.compose("up", "-d", "--no-recreate", "--scale", f"gateway={gateways}")
        return self.project.wait_healthy("gateway", gateways)

    def gateway_ids(self) -> dict[str, str]:
        """Container id per gateway id prefix (the gateway's id is ``<hostname>-<pid>``)."""
        return {self.project.hostname(c): c for c in self.project.containers("gateway")}


def _host(gateway_id: str) -> str:
    return gateway_id.rsplit("-", 1)[0]


@pytest.fixture(scope="module")
def stack(docker_engine: None) -> Iterator[Stack]:
    port = free_port()
    env = {
        **os.environ,
        "FRAMECAST_BIND": "127.0.0.1",
        "FRAMECAST_PORT_PUBLISHED": str(port),
        "FRAMECAST_CLUSTER_PORT_PUBLISHED": str(free_port()),
    }
    project = Project(f"framecast-test-{os.getpid()}", env)
    try:
        project.compose("up", "-d", "--build", "--scale", "gateway=3")
        for service, count in (("redis", 1), ("producer", 1), ("gateway", 3), ("lb", 1)):
            project.wait_healthy(service, count)
        yield Stack(project, port)
    finally:
        project.down()
    # Nothing of the project is left behind.
    label = f"com.docker.compose.project={project.name}"
    assert not docker("ps", "-aq", "--filter", f"label={label}").split()
    assert not docker("network", "ls", "-q", "--filter", f"label={label}").split()
    assert not docker("images", "-q", "--filter", f"label={label}").split()


async def test_three_replicas_healthy_clients_spread_results_in_order(stack: Stack) -> None:
    replicas = stack.scale(3)
    hosts = {stack.project.hostname(c) for c in replicas}
    async with watchers(stack.url, 30) as clients:
        await each_gets(clients, 5, what="5 results per client")
        served = Counter(_host(w.gateway or "") for w in clients)
        assert set(served) == hosts, served
        for w in clients:
            w.check_no_gap_no_duplicate()
        assert not any(w.disconnects for w in clients)


async def test_scale_up_reaches_new_replicas_and_scale_down_resumes_without_gap(stack: Stack) -> None:
    before = set(stack.scale(3))
    lb = stack.project.containers("lb")[0]
    lb_started = stack.project.started_at(lb)

    after = set(stack.scale(5))
    assert before < after
    new_hosts = {stack.project.hostname(c) for c in after - before}
    # nginx was not restarted: its resolver found the new replicas by itself (valid=5s).
    assert stack.project.containers("lb") == [lb] and stack.project.started_at(lb) == lb_started

    async def new_clients_reach_new_replicas() -> bool:
        served = await asyncio.gather(*(hello_gateway(stack.ws_url) for _ in range(20)))
        return bool(new_hosts & {_host(g) for g in served})

    for _ in range(10):  # bounded: nginx re-resolves every 5 s
        if await new_clients_reach_new_replicas():
            break
        await asyncio.sleep(1)
    else:
        raise AssertionError(f"no new client reached the new replicas {new_hosts}")

    async with watchers(stack.url, 25) as clients, raw_sockets(stack.ws_url, 10) as raw:
        await each_gets(clients, 3, what="3 results per client on 5 replicas")
        assert len({w.gateway for w in clients}) > 1
        stack.project.compose("up", "-d", "--no-recreate", "--scale", "gateway=1")
        survivor = stack.project.hostname(stack.project.wait_healthy("gateway", 1)[0])
        moved = [w for w in clients if _host(w.results[-1][0]) != survivor]
        assert moved, "every client was on the surviving replica"
        await poll(
            lambda: all(w.gateway and _host(w.gateway) == survivor for w in clients),
            timeout=60,
            what="every client on the surviving replica",
        )
        await each_gets(clients, 3, what="3 results per client after scaling down")
        for w in moved:
            assert w.disconnects and w.subscription.reconnects >= 1
        # The removed replicas said "going away" (1001), through nginx, to their clients.
        closed = [ws for gateway, ws in raw if _host(gateway) != survivor]
        assert closed
        await poll(lambda: all(ws.close_code is not None for ws in closed), timeout=30, what="closes")
        assert {ws.close_code for ws in closed} == {1001}
        for w in clients:
            w.check_no_gap_no_duplicate()


async def test_killed_gateway_clients_resume_on_the_others(stack: Stack) -> None:
    stack.scale(3)
    async with watchers(stack.url, 24) as clients:
        await each_gets(clients, 3, what="3 results per client")
        victim_host, _ = Counter(_host(w.gateway or "") for w in clients).most_common(1)[0]
        victim = stack.gateway_ids()[victim_host]
        orphans = [w for w in clients if _host(w.gateway or "") == victim_host]
        docker("kill", victim)
        await poll(
            lambda: all(w.gateway and _host(w.gateway) != victim_host for w in orphans),
            timeout=60,
            what="the killed gateway's clients on other gateways",
        )
        await each_gets(clients, 3, what="3 results per client after the kill")
        for w in clients:
            w.check_no_gap_no_duplicate()
        assert all(w.disconnects for w in orphans)
    # Back to three for the next test: the killed container is started again.
    stack.scale(3)


async def test_restarted_producer_starts_an_epoch_and_resumers_get_reset(stack: Stack) -> None:
    stack.scale(3)
    async with watchers(stack.url, 6) as clients:
        await each_gets(clients, 3, what="3 results per client")
        old = clients[0].subscription.cursor.position("default")
        assert old is not None
        stack.project.compose("restart", "producer")
        await poll(
            lambda: all(w.results[-1][1].epoch != old.epoch for w in clients),
            timeout=90,
            what="results of the restarted producer",
        )
        for w in clients:
            w.check_no_gap_no_duplicate()
            assert w.results[-1][1].seq < old.seq + 1000  # a fresh epoch counts from its start
    # A client resuming from the old epoch is told so, then served the new one.
    async with watchers(stack.url, 1, since=old) as (late,):
        await each_gets([late], 2, what="results after the reset")
        assert [r.reason for r in late.resets] == ["epoch-changed"]
        assert all(r.epoch != old.epoch for _, r in late.results)
        late.check_no_gap_no_duplicate()


async def test_deaf_gateway_takes_no_new_clients(stack: Stack) -> None:
    """Needs the gateway to answer 503 at the handshake while not ready (issue 13, section 1)."""
    stack.scale(3)
    ids = stack.gateway_ids()
    deaf_host, deaf = next(iter(ids.items()))
    back = f"{stack.project.name}_back"
    docker("network", "disconnect", back, deaf)
    try:
        # Its Redis link is gone: the canary stops and /readyz turns 503 (nginx still reaches it).
        wait_until(lambda: not _ready(deaf), timeout=60, what="the deaf gateway to report not ready")
        served = await asyncio.gather(*(hello_gateway(stack.ws_url) for _ in range(30)))
        hosts = Counter(_host(g) for g in served)
        assert deaf_host not in hosts, hosts
        assert set(hosts) == set(ids) - {deaf_host}
    finally:
        docker("network", "connect", back, deaf)
    stack.project.wait_healthy("gateway", 3)


def _ready(container: str) -> bool:
    """Whether the gateway answers 200 on /readyz (probed from inside its container)."""
    probe = "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"
    return docker_ok("exec", container, "python", "-c", probe)


@pytest.mark.parametrize(
    ("service", "variable", "value", "named"),
    [
        ("gateway", "REDIS_URL", "valkey:6379", "REDIS_URL"),
        ("gateway", "FRAMECAST_MAX_CONNECTIONS", "0", "FRAMECAST_MAX_CONNECTIONS"),
        ("producer", "FRAMECAST_DETECTOR", "no-such-detector", "no-such-detector"),
        # The JWT secret left unset where the deployment says tokens are required.
        ("gateway", "FRAMECAST_REQUIRE_AUTH", "true", "FRAMECAST_JWT_SECRET"),
        # More clients behind the balancer (replicas x limit) than it can proxy.
        (
            "lb",
            "FRAMECAST_MAX_CONNECTIONS",
            "1000000",
            "gateway replicas x FRAMECAST_MAX_CONNECTIONS 1000000",
        ),
    ],
)
def test_a_bad_setting_stops_the_container_at_start_with_one_line_naming_it(
    stack: Stack, service: str, variable: str, value: str, named: str
) -> None:
    out = subprocess.run(
        [
            COMPOSE,
            "-p",
            stack.project.name,
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "-e",
            f"{variable}={value}",
            service,
        ],
        cwd=ROOT,
        env=stack.project.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and named in errors[0], out.stderr
