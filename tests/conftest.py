"""Session fixtures: one real local control plane for all integration tests.

If the cluster cannot start, every integration test errors with the reason: they
are never skipped.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    from kubernetes import client

    from benchmarks.testbed.cluster import LocalCluster

TEST_NODES = 4


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator["LocalCluster"]:
    from benchmarks.testbed.cli import wait_nodes_ready
    from benchmarks.testbed.cluster import LocalCluster
    from benchmarks.testbed.nodes import create_nodes
    from benchmarks.testbed.profiles import small
    from kubernetes import client

    state = Path(os.environ.get("GPUSCHED_TEST_STATE") or tmp_path_factory.mktemp("cluster"))
    c = LocalCluster(state)
    c.up()
    try:
        api = client.CoreV1Api(c.api_client())
        create_nodes(api, small(TEST_NODES))
        wait_nodes_ready(api, TEST_NODES, timeout=60)
        yield c
    finally:
        c.down()


@pytest.fixture(scope="session")
def core(cluster) -> "client.CoreV1Api":
    from kubernetes import client
    return client.CoreV1Api(cluster.api_client())


@pytest.fixture(scope="session")
def apps(cluster) -> "client.AppsV1Api":
    from kubernetes import client
    return client.AppsV1Api(cluster.api_client())


@pytest.fixture
def namespace(core, request) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    import hashlib
    import re
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{digest}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)
    # GPU capacity is shared by the whole session: wait until this test's pods are gone.
    from tests.helpers import eventually
    eventually(lambda: not core.list_namespaced_pod(name).items, timeout=60, what=f"pods of {name} deleted")


@pytest.fixture(scope="session")
def gpusched(cluster):
    """The extender and a second kube-scheduler with the chart's kube-scheduler configuration (deploy/chart/gpusched/files)."""
    from benchmarks.testbed.stack import GpuschedScheduler
    g = GpuschedScheduler(cluster)
    g.start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def prom(cluster):
    """A real Prometheus of the module's own (the module's tests set its targets)."""
    from benchmarks.testbed.prometheus import Prometheus
    p = Prometheus(cluster)
    p.start()
    yield p
    p.stop()
