"""PendingPods: the pending pods' copy binds check, and the whole-GPU requests it keeps for the
learned workload."""
from __future__ import annotations

from scheduler import contract
from scheduler.extender.pending import PendingPods


def _pod(name: str, *, gpus: str = "", memory: str = "", cpu: str = "", node: str = "") -> dict:
    resources: dict = {}
    if gpus:
        resources["limits"] = {contract.GPU_RESOURCE: gpus}
    if cpu:
        resources["requests"] = {"cpu": cpu}
    annotations = {contract.GPU_MEMORY: memory} if memory else {}
    return {"metadata": {"name": name, "namespace": "ns", "annotations": annotations},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": resources}]}}


def _gated(pod: dict) -> dict:
    pod["spec"]["schedulingGates"] = [{"name": "kueue.x-k8s.io/admission"}]  # not tried by kube-scheduler yet
    return pod


def _deleting(pod: dict) -> dict:
    pod["metadata"]["deletionTimestamp"] = "2026-12-07T06:00:00Z"
    return pod


def _asks(p: PendingPods) -> dict[str, tuple[int, int]]:
    return {key: (req.whole_gpus, req.cpu_milli) for key, req in p.requests()}


def test_only_pending_whole_gpu_pods_whose_request_reads_are_asks():
    p = PendingPods()
    p.set_pods([_pod("eight", gpus="8", cpu="64"), _pod("share", memory="20Gi"), _pod("cpu", cpu="2"),
                _pod("bound", gpus="1", node="n1"),
                _pod("hostile", gpus="-5"),  # parse_pod refuses it: the filter says why, here it is left out
                _pod("huge", gpus="1e30"), _gated(_pod("gated", gpus="1")), _deleting(_pod("deleting", gpus="1"))])
    assert _asks(p) == {"ns/eight": (8, 64_000)}
    assert len(p) == 7  # every pending pod is still there for the bind's check
    assert p.get("ns/hostile") is not None


def test_watch_events_keep_the_asks_as_a_relist_would():
    p = PendingPods()
    p.set_pods([])
    p.on_pod("ADDED", _pod("a", gpus="2"))
    p.on_pod("ADDED", _pod("b", gpus="1", cpu="4"))
    assert _asks(p) == {"ns/a": (2, 0), "ns/b": (1, 4_000)}
    p.on_pod("MODIFIED", _pod("a", gpus="2", node="n1"))  # bound: it leaves the selector
    p.on_pod("MODIFIED", _pod("b", memory="10Gi"))  # now a share: no longer an ask
    assert _asks(p) == {}
    p.on_pod("MODIFIED", _pod("b", gpus="4"))
    p.on_pod("DELETED", _pod("b", gpus="4"))
    assert _asks(p) == {} and len(p) == 0
