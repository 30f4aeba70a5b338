"""Kubernetes objects (as the API returns them, JSON dicts) to the core's data: what a
Node offers, what a bound pod holds, and the snapshot of both. Pure: no I/O, no clock;
the extender's informers and the autoscaler's pre-warming read the cluster through it.

Every field is hostile input: a pod's annotations may be forged (gpu-ids are trusted only
where the placement written with them agrees), a node's report may claim GPUs its kubelet
does not vouch for (clamped, and said in report_errors)."""
from __future__ import annotations

import json
from typing import Any, Sequence

from scheduler import contract
from scheduler.core.claims import allocations_on, claim_held
from scheduler.core.resources import Requests, node_cpu_allocatable, node_memory_allocatable, pod_requests
from scheduler.core.request import RequestError, parse_pod
from scheduler.core.snapshot import Allocation, ClusterSnapshot, NodeState, build_snapshot
from scheduler.nodeinfo import report_from_annotations, vouched_gpus
from scheduler.quantity import QuantityError, parse_bytes


def pod_key(pod: dict[str, Any]) -> str:
    """The key namespace/name: one key for a pod across the watch, kube-scheduler's calls and binds."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def parse_gpu_ids(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        ids = tuple(int(x) for x in text.split(","))
    except ValueError:
        return None
    return ids if all(0 <= i < 64 for i in ids) and len(set(ids)) == len(ids) else None


def trusted_gpu_ids(node: str, annotations: dict[str, Any]) -> tuple[int, ...] | None:
    """The pod's gpu-ids, if they are the ones our bind wrote; None: infer them instead.

    The extender's Binding writes gpu-ids and placement together, and the API server
    copies them onto the pod straight into storage, leaving no record of who wrote them
    (no managedFields entry, no pod admission). So the pod is trusted only as far as it
    is self-consistent: placement names the pod's node and the same GPUs. Who may write
    either annotation at all is the admission policy's job (gpusched-gpu-ownership:
    the extender's ServiceAccount only); a pair that does not agree, or ids alone, are
    not ours and the snapshot places the pod where it most likely is."""
    ids = parse_gpu_ids(annotations.get(contract.GPU_IDS))
    if ids is None:
        return None
    try:
        placement = json.loads(annotations.get(contract.PLACEMENT) or "null")
    except (ValueError, RecursionError):
        return None
    if not isinstance(placement, dict) or placement.get("node") != node:
        return None
    gpus = placement.get("gpus")
    if not isinstance(gpus, list) or [g for g in gpus if isinstance(g, int) and not isinstance(g, bool)] != list(ids):
        return None
    return ids


def allocation_of(pod: dict[str, Any]) -> tuple[str, Allocation] | None:
    """What a bound, live pod holds on its node; None for pods that hold no GPU.

    Pods with annotations the extender would have rejected (e.g. bound by the default
    binder while the extender was down) still count, as conservatively as they parse."""
    return holdings_of(pod)[1]


def holdings_of(pod: dict[str, Any]) -> tuple[tuple[str, Requests] | None, tuple[str, Allocation] | None]:
    """For a bound, live pod: ((node, its CPU and memory requests, as kube-scheduler counts
    them for any pod, with why parts were not read), allocation_of(pod)); (None, None) for a
    pod not bound or finished. The requests are read once: a pod event needs both, and
    reading them was a third of its cost."""
    node = bound_node(pod)
    if node is None:
        return None, None
    host = pod_requests(pod)
    return (node, host), _allocation_on(node, pod, host)


def _allocation_on(node: str, pod: dict[str, Any], host: Requests) -> tuple[str, Allocation] | None:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    products: frozenset[str] = frozenset()
    try:
        req = parse_pod(pod, host=host)
        whole, memory, products = req.whole_gpus, req.gpu_memory, req.products
    except RequestError:
        whole = _whole_gpus_lenient(pod.get("spec") or {})
        try:
            memory = parse_bytes(annotations.get(contract.GPU_MEMORY, ""))
        except QuantityError:
            memory = 0
    if whole == 0 and memory == 0:
        return None
    ids = trusted_gpu_ids(node, annotations)
    if ids is not None and whole and len(ids) != whole:
        ids = None  # annotation disagrees with the request: infer instead
    return node, Allocation(pod_key=pod_key(pod), gpu_ids=ids or (), memory_per_gpu=memory, whole=whole > 0,
                            count=max(whole, 1), cpu_milli=host.cpu_milli, ram=host.memory, products=products)


def bound_node(pod: dict[str, Any]) -> str | None:
    """The node a bound, live pod holds resources on; None for a pod not bound or finished."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    node = spec.get("nodeName") if isinstance(spec, dict) else None
    if not node or not isinstance(node, str) or (isinstance(status, dict) and status.get("phase") in ("Succeeded", "Failed")):
        return None
    return node


def _whole_gpus_lenient(spec: dict[str, Any]) -> int:
    total = 0
    for c in spec.get("containers") or []:
        res = (c.get("resources") or {})
        v = (res.get("limits") or {}).get(contract.GPU_RESOURCE) or (res.get("requests") or {}).get(contract.GPU_RESOURCE)
        try:
            total += max(int(v), 0) if v is not None else 0
        except (TypeError, ValueError):
            pass
    return min(total, 64)


def node_state_of(node: dict[str, Any]) -> NodeState:
    meta, status = node.get("metadata") or {}, node.get("status") or {}
    labels = meta.get("labels") or {}
    count = _gpu_quantity(status.get("allocatable"))
    capacity = max(_gpu_quantity(status.get("capacity")), count)  # a kubelet without capacity: allocatable
    try:
        mib = int(labels.get(contract.GPU_MEMORY_LABEL, 0))
    except (TypeError, ValueError):
        mib = 0
    schedulable = not (node.get("spec") or {}).get("unschedulable", False)
    return NodeState(
        name=meta.get("name", ""),
        gpu_count=count if schedulable else 0,
        product=labels.get(contract.GPU_PRODUCT_LABEL, ""),
        gpu_memory_label_mib=mib,
        report=report_from_annotations(meta.get("annotations")),
        allocations=[],
        kubelet_gpus=(capacity, count),
        cpu_allocatable=node_cpu_allocatable(node)[0],
        ram_allocatable=node_memory_allocatable(node)[0],
    )


def _gpu_quantity(resources: Any) -> int:
    try:
        return max(int((resources or {}).get(contract.GPU_RESOURCE, 0)), 0)
    except (TypeError, ValueError, AttributeError):
        return 0


def report_errors(state: NodeState) -> tuple[str, ...]:
    """Why a node's report is not trusted: fields that do not decode, and GPUs the kubelet
    does not vouch for (the snapshot clamps the same way; this is for logs and Events)."""
    errors = tuple(state.report.errors) if state.report else ()
    if state.report and state.report.gpus and state.kubelet_gpus is not None:
        _, clamped = vouched_gpus(state.report.gpus, *state.kubelet_gpus)
        if clamped:
            errors += (clamped,)
    return errors


def snapshot_of(nodes: Sequence[dict[str, Any]], pods: Sequence[dict[str, Any]], now: float,
                stale_after_s: float, claims: Sequence[dict[str, Any]] = ()) -> ClusterSnapshot:
    """The cluster as the placement core sees it, from Node, Pod and ResourceClaim objects:
    each node's offer and report, what every bound, live pod holds on it, and the GPU memory
    kube-scheduler's DRA allocator gave claims of driver gpu.gpusched.io there (claims that
    do not check out are left uncounted: core/claims.py)."""
    per_node: dict[str, list[Allocation]] = {}
    host: dict[str, tuple[int, int]] = {}
    for pod in pods:
        on, held = holdings_of(pod)
        if on:
            cpu, ram = host.get(on[0], (0, 0))
            host[on[0]] = (cpu + on[1].cpu_milli, ram + on[1].memory)
        if held:
            per_node.setdefault(held[0], []).append(held[1])
    states = [node_state_of(n) for n in nodes]
    by_name = {s.name: s for s in states}
    for claim in claims:
        hc, _ = claim_held(claim)
        if hc is not None:
            per_node.setdefault(hc.node, []).extend(allocations_on(hc, by_name.get(hc.node))[0])
    return build_snapshot([n.holding(per_node.get(n.name, []), host.get(n.name, (0, 0))) for n in states],
                          now=now, stale_after_s=stale_after_s)
