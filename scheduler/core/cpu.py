"""CPU as kube-scheduler counts it: a node's allocatable millicores and a pod's request.

The placement core scores GPUs, but a node whose CPU is spoken for strands its GPUs: an
8-GPU pod asking 120 cores fits only a node that still has them. kube-scheduler's
NodeResourcesFit counts every pod bound to a node, gpusched's or not, so the extender
reads every bound pod's request here, as kube-scheduler computes it
(k8s.io/component-helpers/resource PodRequests): the larger of the regular containers'
sum (plus restartable init containers, i.e. sidecars, which keep running) and each
init container's request on top of the sidecars started before it, plus the pod's
overhead. A container without a CPU request asks for nothing here: the API server
copies a limit into a missing request before the pod is stored.

Every figure is hostile input: an unreadable, negative or absurd one counts as 0 (a
request) or unknown (allocatable), with the reason returned for the caller to log;
nothing here raises.
"""
from __future__ import annotations

from typing import Any

from scheduler.quantity import MAX_MILLICORES, QuantityError, parse_millicores

CPU = "cpu"


def _requested(container: Any, where: str, problems: list[str]) -> int:
    if not isinstance(container, dict):
        return 0
    resources = container.get("resources")
    requests = resources.get("requests") if isinstance(resources, dict) else None
    value = requests.get(CPU) if isinstance(requests, dict) else None
    if value is None:
        return 0
    try:
        return parse_millicores(value, what=f"{where} requests.cpu")
    except QuantityError as exc:
        problems.append(str(exc))
        return 0


def pod_cpu_request(pod: Any) -> tuple[int, tuple[str, ...]]:
    """(millicores the pod asks of its node, why parts were not read)."""
    problems: list[str] = []
    spec = pod.get("spec") if isinstance(pod, dict) else None
    if not isinstance(spec, dict):
        return 0, ()
    containers = spec.get("containers")
    inits = spec.get("initContainers")
    running = sum(_requested(c, f"spec.containers[{i}]", problems)
                  for i, c in enumerate(containers if isinstance(containers, list) else []))
    sidecars = init_peak = 0
    for i, c in enumerate(inits if isinstance(inits, list) else []):
        asked = _requested(c, f"spec.initContainers[{i}]", problems)
        if isinstance(c, dict) and c.get("restartPolicy") == "Always":
            running += asked
            sidecars += asked
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, asked + sidecars)
    total = max(running, init_peak)
    overhead = spec.get("overhead")
    if isinstance(overhead, dict) and overhead.get(CPU) is not None:
        try:
            total += parse_millicores(overhead[CPU], what="spec.overhead.cpu")
        except QuantityError as exc:
            problems.append(str(exc))
    return min(total, MAX_MILLICORES), tuple(problems)


def node_cpu_allocatable(node: Any) -> tuple[int, str | None]:
    """(the node's allocatable millicores, 0 where not known; why not, if it was given
    but unreadable). 0 means: CPU does not limit this node's GPUs (as before CPU was read)."""
    status = node.get("status") if isinstance(node, dict) else None
    allocatable = status.get("allocatable") if isinstance(status, dict) else None
    value = allocatable.get(CPU) if isinstance(allocatable, dict) else None
    if value is None:
        return 0, None
    try:
        return parse_millicores(value, what="status.allocatable.cpu"), None
    except QuantityError as exc:
        return 0, f"{exc}; CPU not counted on this node"
