"""Kubernetes objects to the core's snapshot: what each bound pod holds, row by row."""
from __future__ import annotations

import json

import pytest

from scheduler import contract
from scheduler.core.objects import snapshot_of

GiB = 2**30
NOW = 1_000_000.0


def node(name: str, gpus: int = 4, mib: int = 81920) -> dict:
    return {"metadata": {"name": name, "labels": {contract.GPU_MEMORY_LABEL: str(mib)}},
            "status": {"allocatable": {contract.GPU_RESOURCE: str(gpus)}, "capacity": {contract.GPU_RESOURCE: str(gpus)}}}


def pod(name: str, on: str, memory: str = "", whole: int = 0, ids: tuple[int, ...] = (), phase: str = "Running",
        placement_node: str | None = None) -> dict:
    ann = {}
    if memory:
        ann[contract.GPU_MEMORY] = memory
    if ids:
        ann[contract.GPU_IDS] = ",".join(map(str, ids))
        ann[contract.PLACEMENT] = json.dumps({"node": placement_node or on, "gpus": list(ids)})
    res = {"limits": {contract.GPU_RESOURCE: str(whole)}} if whole else {}
    return {"metadata": {"name": name, "namespace": "t", "annotations": ann},
            "spec": {"nodeName": on, "containers": [{"name": "c", "resources": res}]}, "status": {"phase": phase}}


@pytest.mark.parametrize("pods,committed_gib", [
    # nothing bound: every GPU free
    ([], [0, 0, 0, 0]),
    # a 20 GiB share the extender placed on GPU 2 (gpu-ids and placement agree)
    ([pod("a", "n1", "20Gi", ids=(2,))], [0, 0, 20, 0]),
    # a whole GPU commits all of its 80 GiB; two shares add up on one GPU
    ([pod("a", "n1", whole=1, ids=(0,)), pod("b", "n1", "10Gi", ids=(3,)), pod("c", "n1", "30Gi", ids=(3,))],
     [80, 0, 0, 40]),
    # finished pods and pods on other nodes hold nothing here
    ([pod("a", "n1", "20Gi", ids=(1,), phase="Succeeded"), pod("b", "n2", "20Gi", ids=(1,))], [0, 0, 0, 0]),
])
def test_bound_pods_count_on_the_gpus_their_trusted_ids_name(pods, committed_gib):
    s = snapshot_of([node("n1"), node("n2")], pods, now=NOW, stale_after_s=600)
    assert (s.committed[s.index["n1"]] // GiB).tolist() == committed_gib


def test_forged_ids_are_not_where_the_pod_is_counted():
    # gpu-ids say GPU 3, but placement (written with them at bind) names another node:
    # not ours, so the snapshot infers where the share sits instead of believing GPU 3
    s = snapshot_of([node("n1")], [pod("a", "n1", "20Gi", ids=(3,), placement_node="n9")], now=NOW, stale_after_s=600)
    row = s.committed[s.index["n1"]]
    assert row.sum() == 20 * GiB and row[3] == 0


def _with_cpu(p: dict, cpu: str) -> dict:
    p["spec"]["containers"][0]["resources"].setdefault("requests", {})["cpu"] = cpu
    return p


@pytest.mark.parametrize("pods,want_requested,want_free", [
    # n1 offers 96 cores; a GPU pod (4 cores) and a CPU-only pod (10.5) both count: 14.5 requested
    ([_with_cpu(pod("a", "n1", whole=1, ids=(0,)), "4"), _with_cpu(pod("b", "n1"), "10500m")], 14_500, 81_500),
    # finished pods and pods on other nodes hold no CPU here
    ([_with_cpu(pod("a", "n1", phase="Failed"), "4"), _with_cpu(pod("b", "n2"), "4")], 0, 96_000),
])
def test_every_bound_pods_cpu_counts_on_its_node(pods, want_requested, want_free):
    n1 = node("n1")
    n1["status"]["allocatable"]["cpu"] = "96"
    s = snapshot_of([n1, node("n2")], pods, now=NOW, stale_after_s=600)
    assert int(s.cpu_requested[0]) == want_requested and int(s.cpu_free[0]) == want_free
    gpu_pods = [a for row in s.allocations for a in row]
    assert all(a.cpu_milli == (4_000 if a.pod_key == "t/a" else 0) for a in gpu_pods)  # shapes learn it


@pytest.mark.parametrize("extra, want", [
    # no pin: the pod takes any GPU
    ({}, frozenset()),
    # pinned by the annotation, or by the product label in its nodeSelector (request.py reads both)
    ({"annotations": {contract.GPU_PRODUCTS: "NVIDIA-L40S, NVIDIA-A100-*"}},
     frozenset({"NVIDIA-L40S", "NVIDIA-A100-*"})),
    ({"nodeSelector": {contract.GPU_PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3"}}, frozenset({"NVIDIA-H100-80GB-HBM3"})),
    # an annotation the extender would refuse counts the pod as unpinned, not as lost
    ({"annotations": {contract.GPU_PRODUCTS: " , "}}, frozenset()),
    ({"annotations": {contract.GPU_PRODUCTS: ",".join(f"P{i}-*" for i in range(65))}}, frozenset()),
])
def test_bound_pods_carry_their_gpu_product_pin(extra, want):
    """Learned shapes keep pinned pods apart (scoring.workload_shapes), so a bound pod's
    allocation carries the products it accepts."""
    from scheduler.core.objects import allocation_of

    p = pod("a", "n1", whole=1, ids=(0,))
    p["metadata"]["annotations"].update(extra.get("annotations", {}))
    if "nodeSelector" in extra:
        p["spec"]["nodeSelector"] = extra["nodeSelector"]
    node_name, alloc = allocation_of(p)
    assert node_name == "n1" and alloc.products == want and alloc.count == 1


@pytest.mark.parametrize("p,want_host,want_gpu", [
    # a share with CPU and memory: both parts, the requests read once for both
    (pod("a", "n1", "20Gi", ids=(1,)) | {"spec": {"nodeName": "n1", "containers": [
        {"name": "c", "resources": {"requests": {"cpu": "4", "memory": "8Gi"}}}]}}, (4000, 8 * GiB), True),
    # a CPU-only pod: requests, no GPU allocation
    ({"metadata": {"name": "b", "namespace": "t"}, "spec": {"nodeName": "n1", "containers": [
        {"name": "c", "resources": {"requests": {"cpu": "250m"}}}]}}, (250, 0), False),
    # hostile requests (1e30 cores, -5Gi): counted as none, with why, and the share still
    # holds its GPU memory
    (pod("e", "n1", "20Gi", ids=(1,)) | {"spec": {"nodeName": "n1", "containers": [
        {"name": "c", "resources": {"requests": {"cpu": "1e30", "memory": "-5Gi"}}}]}}, (0, 0), True),
    # finished or unbound: neither
    (pod("c", "n1", "20Gi", phase="Succeeded"), None, False),
    (pod("d", "", "20Gi"), None, False),
])
def test_holdings_of_reads_a_pods_requests_once(monkeypatch, p, want_host, want_gpu):
    """A pod event needs what a pod holds of CPU and memory and of GPUs; reading its
    requests was a third of the event's cost, so it is done once for both."""
    import scheduler.core.objects as objects
    import scheduler.core.request as request
    from scheduler.core.resources import pod_requests

    calls = []

    def counted(x):
        calls.append(1)
        return pod_requests(x)

    monkeypatch.setattr(objects, "pod_requests", counted)
    monkeypatch.setattr(request, "pod_requests", counted)
    host, held = objects.holdings_of(p)
    assert len(calls) == (1 if want_host else 0)
    assert (None if host is None else (host[1].cpu_milli, host[1].memory)) == want_host
    if want_host == (0, 0):
        assert len(host[1].problems) == 2  # both refusals kept, for the log
    assert (held is not None) == want_gpu
    if held:
        assert held[0] == host[0] == "n1" and (held[1].cpu_milli, held[1].ram) == want_host
        assert held == objects.allocation_of(p)
