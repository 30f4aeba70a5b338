"""The extender driven by a real kube-scheduler on the test bed (kwok GPU nodes, 4 x 8 x H100 80GB)."""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scheduler import contract
from scheduler.nodeinfo import MiB, encode_time
from tests.helpers import eventually, gpu_deployment

pytestmark = pytest.mark.integration

GPU_MIB = 81079  # usable per H100 on the test bed (81,559 less the driver's 480)
MODEL_A = "meta-llama/Llama-3.1-8B-Instruct"


def pod(name: str, *, gpus: int = 0, memory: str | None = None, model: str | None = None,
        extra: dict[str, str] | None = None) -> dict:
    annotations = dict(extra or {})
    if memory:
        annotations[contract.GPU_MEMORY] = memory
    if model:
        annotations[contract.MODEL] = model
    resources = {"limits": {contract.GPU_RESOURCE: str(gpus)}} if gpus else {}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations, "labels": {"app": name}},
        "spec": {"schedulerName": "gpusched", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "server", "image": "vllm/vllm-openai:v0.9.0", "resources": resources}]},
    }


def bound(core, ns: str, name: str, timeout: float = 30):
    return eventually(lambda: (p := core.read_namespaced_pod(name, ns)).spec.node_name and p, timeout=timeout,
                      what=f"{name} bound")


def failed_scheduling_messages(core, ns: str, name: str) -> list[str]:
    evs = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    return [e.message for e in evs if e.reason == "FailedScheduling"]


def gpu_usage(core) -> dict[tuple[str, int], int]:
    """MiB committed per (node, GPU index), from every bound pod's gpu-ids annotation."""
    used: dict[tuple[str, int], int] = defaultdict(int)
    for p in core.list_pod_for_all_namespaces().items:
        ann = p.metadata.annotations or {}
        if not p.spec.node_name or contract.GPU_IDS not in ann:
            continue
        ids = [int(i) for i in ann[contract.GPU_IDS].split(",")]
        mem = ann.get(contract.GPU_MEMORY)
        for i in ids:
            gpus = int(((p.spec.containers[0].resources.limits or {}).get(contract.GPU_RESOURCE)) or 0)
            used[(p.spec.node_name, i)] += GPU_MIB if gpus else _mib(mem)
    return used


def _mib(q: str) -> int:
    from scheduler.quantity import parse_bytes
    return -(-parse_bytes(q) // MiB)


def set_model_cache(core, node: str, models: dict[str, tuple[int, str]]) -> None:
    cache = {m: {"bytes": b, "tier": t} for m, (b, t) in models.items()}
    core.patch_node(node, {"metadata": {"annotations": {
        contract.MODEL_CACHE: json.dumps(cache, separators=(",", ":")),
        contract.REPORTED_AT: encode_time(datetime.now(timezone.utc)),
    }}})


def test_model_pod_goes_to_the_node_that_caches_its_model(gpusched, core, namespace):
    set_model_cache(core, "gpu-node-0002", {MODEL_A: (16 * 2**30, "disk")})
    try:
        eventually(lambda: MODEL_A in gpusched.debug_node("gpu-node-0002").get("models", {}), timeout=10,
                   what="extender sees the cache")
        core.create_namespaced_pod(namespace, pod("model-a", gpus=1, model=MODEL_A))
        p = bound(core, namespace, "model-a")
        assert p.spec.node_name == "gpu-node-0002"
        placement = json.loads(p.metadata.annotations[contract.PLACEMENT])
        assert placement["node"] == "gpu-node-0002" and len(placement["gpus"]) == 1
        assert p.metadata.annotations[contract.GPU_IDS] == ",".join(map(str, placement["gpus"]))
    finally:
        set_model_cache(core, "gpu-node-0002", {})


def test_a_share_packs_onto_a_half_used_gpu(gpusched, core, namespace):
    core.create_namespaced_pod(namespace, pod("first", memory="40Gi"))
    first = bound(core, namespace, "first")
    core.create_namespaced_pod(namespace, pod("second", memory="39Gi"))
    second = bound(core, namespace, "second")
    # 40 + 39 GiB = 80,896 MiB <= 81,079 MiB: the second share fills the first GPU instead of opening one
    assert second.spec.node_name == first.spec.node_name
    assert second.metadata.annotations[contract.GPU_IDS] == first.metadata.annotations[contract.GPU_IDS]


@pytest.mark.parametrize("annotations,reason", [
    ({contract.GPU_MEMORY: "100Gi"}, "gpusched:"),            # no 80 GB GPU holds 100 GiB
    ({contract.GPU_MEMORY: "-5Gi"}, "must be positive"),
    ({contract.GPU_MEMORY: "1e30"}, "larger than"),
    ({contract.GPU_MEMORY: "abc"}, "is not a quantity"),
])
def test_pods_that_cannot_fit_stay_pending_with_our_reason(gpusched, core, namespace, annotations, reason):
    core.create_namespaced_pod(namespace, pod("nofit", extra=annotations))
    msgs = eventually(lambda: failed_scheduling_messages(core, namespace, "nofit"), timeout=30,
                      what="FailedScheduling event")
    assert any(reason in m for m in msgs), msgs
    assert not core.read_namespaced_pod("nofit", namespace).spec.node_name


def test_whole_gpu_pods_left_pending_count_in_the_learned_shapes(gpusched, core, namespace):
    """24 pods of 8 GPUs on 4 nodes of 8: kube-scheduler binds 4 and leaves 20 Pending on
    Insufficient nvidia.com/gpu without calling the extender. Its pending pods' informer
    sees them, and the next re-learning (at most SHAPES_EVERY_S, 60 s, plus a 10 s re-judge
    later) weighs their shape by all 24: 1.0, where the 4 bound alone are below
    LEARN_MIN_PODS and the defaults give 8 GPUs 0.1."""
    for i in range(24):
        core.create_namespaced_pod(namespace, pod(f"eight-{i}", gpus=8))
    eventually(lambda: any(p.spec.node_name for p in core.list_namespaced_pod(namespace).items),
               timeout=60, what="a first one bound")

    def eight_gpu_weight() -> float:
        return sum(s["weight"] for s in gpusched.get("/debug/shapes").json() if s["whole"] == 8)

    weight = eventually(lambda: (w := eight_gpu_weight()) > 0.5 and w, timeout=120, interval=2,
                        what="an 8-GPU shape learnt from the pending pods")
    assert weight > 0.5
    assert len([p for p in core.list_namespaced_pod(namespace).items if not p.spec.node_name]) >= 20


def reads(gpusched) -> dict[tuple[str, str], float]:
    """gpusched_extender_requests_read_total by (verb, how), since the extender started."""
    return {(s.labels["verb"], s.labels["how"]): s.value for m in text_string_to_metric_families(
        gpusched.get("/metrics").text) if m.name == "gpusched_extender_requests_read" for s in m.samples
        if s.name.endswith("_total")}


def test_200_pods_at_once_never_overcommit_a_gpu(gpusched, apps, core, namespace):
    # 4 nodes x 8 GPUs, 3 shares of 26 GiB (26,624 MiB) per 81,079 MiB GPU = 96 fit; 104 stay Pending
    before = reads(gpusched)  # the extender serves the whole session, nodes of other tests' come and go
    apps.create_namespaced_deployment(namespace, gpu_deployment(
        "burst", 200, gpus=0, scheduler="gpusched", annotations={contract.GPU_MEMORY: "26Gi"}))

    def settled():
        pods = core.list_namespaced_pod(namespace, label_selector="app=burst").items
        placed = [p for p in pods if p.spec.node_name]
        return placed if len(pods) == 200 and len(placed) >= 96 else None

    placed = eventually(settled, timeout=240, interval=1, what="96 pods placed")
    usage = gpu_usage(core)
    assert max(usage.values()) <= GPU_MIB, {k: v for k, v in usage.items() if v > GPU_MIB}
    assert len(placed) == 96
    assert len(usage) == 32  # every GPU got used before any pod was refused
    # kube-scheduler's calls came in the shape the extender reads names from as bytes (it
    # skips prioritize when one node is left, so fewer of those than pods placed)
    after = reads(gpusched)
    calls = {k: after[k] - before.get(k, 0) for k in after}
    assert calls.get(("filter", "rows"), 0) >= 96 and calls.get(("prioritize", "rows"), 0) > 0, calls
    assert calls.get(("filter", "decoded"), 0) == calls.get(("prioritize", "decoded"), 0) == 0, calls


def test_while_the_extender_is_down_gpusched_pods_wait_and_other_schedulers_go_on(gpusched, core, namespace):
    """The chart's default (ignorable: false): no gpusched pod is bound behind the extender's
    back. While it is down the pod stays Pending with a FailedScheduling reason, a pod of the
    default scheduler is unaffected, and once it is back the pod is bound with GPU ids."""
    node = "gpu-node-0001"

    def pinned(name: str) -> dict:
        body = pod(name, memory="40Gi")
        body["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
        return body

    other = pod("default-scheduler-pod")
    del other["spec"]["schedulerName"]
    gpusched.stop_extender()
    try:
        core.create_namespaced_pod(namespace, pinned("while-down"))
        core.create_namespaced_pod(namespace, other)
        why = eventually(lambda: failed_scheduling_messages(core, namespace, "while-down"), timeout=60,
                         what="a FailedScheduling event while the extender is down")
        # kube-scheduler's own words: the extender call that failed (in a cluster its URL names
        # the Service, gpusched-extender.<namespace>.svc)
        assert any(f"{gpusched.url}/filter" in m for m in why), why
        assert bound(core, namespace, "default-scheduler-pod", timeout=60).spec.node_name
        assert not core.read_namespaced_pod("while-down", namespace).spec.node_name
    finally:
        gpusched.start_extender()
    # retried after backoff (at most 10 s) and bound by the extender, with its GPU
    p = bound(core, namespace, "while-down", timeout=60)
    assert contract.GPU_IDS in (p.metadata.annotations or {})
    # One 40 GiB share per 81,079 MiB GPU (2 x 40,960 > 81,079): 8 per node, one taken.
    for i in range(8):
        core.create_namespaced_pod(namespace, pinned(f"after-{i}"))

    def after():
        return [q for q in core.list_namespaced_pod(namespace).items if q.metadata.name.startswith("after-")]

    eventually(lambda: len([q for q in after() if q.spec.node_name]) >= 7, timeout=60, what="7 placed")
    eventually(lambda: failed_scheduling_messages(core, namespace,
                                                  next(q.metadata.name for q in after() if not q.spec.node_name)),
               timeout=30, what="the 8th refused")
    placed = [q for q in after() if q.spec.node_name] + [p]
    ids = [int(q.metadata.annotations[contract.GPU_IDS]) for q in placed]
    assert len(placed) == 8 and len(set(ids)) == 8
