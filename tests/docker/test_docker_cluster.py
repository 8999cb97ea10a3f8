"""The compose file's `cluster` profile on a real Docker Engine: 3 valkey primaries, --cluster services."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest

from framecast.local.embedded import free_port
from tests.docker._clients import each_gets, watchers
from tests.docker._compose import Project, docker

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def cluster(docker_engine: None) -> Iterator[tuple[Project, str]]:
    port = free_port()
    env = {
        **os.environ,
        "FRAMECAST_BIND": "127.0.0.1",
        "FRAMECAST_PORT_PUBLISHED": str(free_port()),
        "FRAMECAST_CLUSTER_PORT_PUBLISHED": str(port),
    }
    project = Project(f"framecast-cluster-{os.getpid()}", env, profiles=("cluster",))
    try:
        # Only the cluster chain: naming the services leaves the standalone ones out.
        project.compose(
            "up", "-d", "--build", "--scale", "cluster-gateway=2", "cluster-lb", "cluster-producer"
        )
        yield project, f"http://127.0.0.1:{port}"
    finally:
        project.down()
    label = f"com.docker.compose.project={project.name}"
    assert not docker("ps", "-aq", "--filter", f"label={label}").split()


async def test_cluster_profile_serves_ordered_results_from_both_gateways(
    cluster: tuple[Project, str],
) -> None:
    project, url = cluster
    for service, count in (("valkey-1", 1), ("valkey-2", 1), ("valkey-3", 1)):
        project.wait_healthy(service, count)
    gateways = project.wait_healthy("cluster-gateway", 2)
    project.wait_healthy("cluster-producer", 1)
    project.wait_healthy("cluster-lb", 1)
    # The standalone services were not started.
    assert project.containers("redis") == [] and project.containers("gateway") == []

    nodes = docker("exec", project.containers("valkey-1")[0], "valkey-cli", "cluster", "nodes")
    assert sum("master" in line for line in nodes.splitlines()) == 3, nodes

    async with watchers(url, 10) as clients:
        await each_gets(clients, 5, what="5 results per client through the cluster")
        served = Counter((w.gateway or "").rsplit("-", 1)[0] for w in clients)
        assert set(served) == {project.hostname(c) for c in gateways}, served
        for w in clients:
            w.check_no_gap_no_duplicate()
