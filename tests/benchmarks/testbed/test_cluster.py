"""The test bed itself, on the real control plane: GPU nodes, scheduling, kwok's ready delay."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import TEST_NODES
from tests.helpers import condition, eventually, gpu_deployment

pytestmark = pytest.mark.integration


def test_nodes_are_ready_gpu_nodes(core):
    nodes = core.list_node(label_selector="type=kwok").items
    assert len(nodes) == TEST_NODES
    for n in nodes:
        assert n.status.allocatable["nvidia.com/gpu"] == "8"
        assert n.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert n.metadata.labels["nvidia.com/gpu.memory"] == "81559"
        assert condition(n, "Ready").status == "True"
        assert "gpusched.io/gpus" in n.metadata.annotations


def test_deployment_is_scheduled_on_kwok_nodes_and_ready_after_delay(apps, core, namespace):
    delay = 3.0
    apps.create_namespaced_deployment(namespace, gpu_deployment(
        "llm", 3, gpus=2, annotations={"gpusched.io/ready-delay": f"{delay:.0f}s"}))

    def all_ready():
        pods = core.list_namespaced_pod(namespace, label_selector="app=llm").items
        ok = [p for p in pods if condition(p, "Ready") and condition(p, "Ready").status == "True"]
        return pods if len(pods) == 3 and len(ok) == 3 else None

    pods = eventually(all_ready, timeout=60, what="3 pods Ready")
    nodes = {n.metadata.name for n in core.list_node(label_selector="type=kwok").items}
    for p in pods:
        assert p.spec.node_name in nodes
        scheduled = condition(p, "PodScheduled").last_transition_time
        ready = condition(p, "Ready").last_transition_time
        # kwok held the pod for the annotated delay (timestamps have 1 s resolution)
        assert (ready - scheduled).total_seconds() >= delay - 1, (scheduled, ready)


def test_gpu_capacity_is_respected_by_the_default_scheduler(apps, core, namespace):
    # 4 nodes x 8 GPUs = 32; 5 pods x 8 GPUs: exactly one must stay Pending.
    apps.create_namespaced_deployment(namespace, gpu_deployment("big", 5, gpus=8))

    def settled():
        pods = core.list_namespaced_pod(namespace, label_selector="app=big").items
        placed = [p for p in pods if p.spec.node_name]
        # the fifth pod's PodScheduled=False comes a moment after the others are bound
        said = [p for p in pods if not p.spec.node_name and condition(p, "PodScheduled")]
        return (pods, placed) if len(pods) == 5 and len(placed) == 4 and said else None

    pods, placed = eventually(settled, timeout=60, what="4 of 5 pods placed, the fifth told why")
    assert len({p.spec.node_name for p in placed}) == 4
    pending = [p for p in pods if not p.spec.node_name]
    assert condition(pending[0], "PodScheduled").reason == "Unschedulable"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], capture_output=True, text=True, timeout=120)


def test_second_up_on_same_state_dir_is_refused_and_leaves_the_first_running(cluster):
    r = _cli("cluster", "up", "--state", str(cluster.dir))
    assert r.returncode == 1
    assert "already holds a running cluster" in r.stderr and "cluster down" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert all(p.alive() for p in cluster.state.procs)


def test_busy_port_is_refused_with_a_hint(cluster, tmp_path):
    port = cluster.state.ports["apiserver"]
    r = _cli("cluster", "up", "--state", str(tmp_path / "other"), "--apiserver-port", str(port))
    assert r.returncode == 1
    assert f"port {port}" in r.stderr and "in use" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
