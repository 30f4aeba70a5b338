"""CPU and memory as kube-scheduler counts them: a node's allocatable CPU (millicores)
and memory (bytes), and a pod's requests of each.

The placement core scores GPUs, but a node whose CPU or memory is spoken for strands its
GPUs: an 8-GPU pod asking 120 cores and 700 GiB fits only a node that still has them.
kube-scheduler's NodeResourcesFit counts every pod bound to a node, gpusched's or not, so
the extender reads every bound pod's requests here, as kube-scheduler computes them
(k8s.io/component-helpers/resource PodRequests, v0.36.3, with kube-scheduler 1.36's
default gates), per resource: the pod-level `spec.resources.requests` where set
(PodLevelResources); else the larger of the regular containers' sum (plus restartable init
containers, i.e. sidecars, which keep running) and each init container's request on top of
the sidecars started before it; then the pod's overhead. While an in-place resize is
pending, a container's (or, for a pod-level request, the pod's) figure is the largest of
the spec, its status `resources.requests` and `allocatedResources`; with the resize marked
Infeasible, the spec's is left out. Not modelled: CPU or memory from node-allocatable DRA
claims (DRANodeAllocatableResources, alpha and off in 1.36). A container without a request
asks for nothing here: the API server copies a limit into a missing request before the pod
is stored.

Every figure is hostile input: an unreadable, negative or absurd one counts as 0 (a
request) or unknown (allocatable), with the reason returned; nothing here raises. The
extender's live state logs them (scheduler/extender/live.py): a node's when it changes, a
bound pod's once per pod and reason. The pod being placed (core/request.py) counts such a
part as 0 without a word: the API server refuses negative or unreadable quantities, so only
one over the maximum gets there, and kube-scheduler's own fit then finds no node for it.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from scheduler.quantity import MAX_BYTES, MAX_MILLICORES, QuantityError, parse_memory, parse_millicores

CPU = "cpu"
MEMORY = "memory"


class Resource(NamedTuple):
    name: str  # as in requests and allocatable
    parse: Callable[..., int]  # text -> whole units (millicores, bytes); QuantityError when unreadable
    most: int  # a larger sum is clamped to it (a typo or an attack)


CPU_RESOURCE = Resource(CPU, parse_millicores, MAX_MILLICORES)
MEMORY_RESOURCE = Resource(MEMORY, parse_memory, MAX_BYTES)


class Requests(NamedTuple):
    """What a pod asks of its node's CPU (millicores) and memory (bytes), and why parts of
    it were not read."""
    cpu_milli: int
    memory: int
    problems: tuple[str, ...] = ()


def _amount(requests: Any, res: Resource, what: str, problems: list[str]) -> int:
    value = requests.get(res.name) if isinstance(requests, dict) else None
    if value is None:
        return 0
    try:
        return res.parse(value, what=f"{what}.{res.name}")
    except QuantityError as exc:
        problems.append(str(exc))
        return 0


def _requests(resources: Any) -> Any:
    return resources.get("requests") if isinstance(resources, dict) else None


def _effective(spec: Any, status: Any, allocated: Any, infeasible: bool, res: Resource, where: str,
               problems: list[str]) -> int:
    """determineEffectiveRequests: while a resize is pending the larger of what the spec
    asks, what runs (status resources) and what the kubelet allocated; an infeasible resize
    does not count the spec's ask. No status resources: the spec alone."""
    asked = _amount(spec, res, f"{where} requests", problems)
    if not isinstance(status, dict):
        return asked
    running = max(_amount(_requests(status), res, f"{where} status resources.requests", problems),
                  _amount(allocated, res, f"{where} status allocatedResources", problems))
    return running if infeasible else max(asked, running)


def _resize_infeasible(status: Any) -> bool:
    conditions = status.get("conditions") if isinstance(status, dict) else None
    for cond in conditions if isinstance(conditions, list) else ():
        if isinstance(cond, dict) and cond.get("type") == "PodResizePending":
            return cond.get("reason") == "Infeasible"
    return False


def _statuses(status: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(status, dict):
        return out
    for field in ("containerStatuses", "initContainerStatuses"):
        listed = status.get(field)
        for cs in listed if isinstance(listed, list) else ():
            if isinstance(cs, dict) and isinstance(cs.get("name"), str):
                out[cs["name"]] = cs
    return out


def _containers(spec: dict[str, Any], status: Any, res: Resource, problems: list[str]) -> int:
    """AggregateContainerRequests, for one resource."""
    statuses = _statuses(status)
    infeasible = _resize_infeasible(status) if statuses else False

    def asked(c: dict[str, Any], where: str, resized: bool) -> int:
        name = c.get("name")
        cs = statuses.get(name) if resized and isinstance(name, str) else None
        return _effective(_requests(c.get("resources")), cs.get("resources") if cs else None,
                          cs.get("allocatedResources") if cs else None, infeasible, res, where, problems)

    containers, inits = spec.get("containers"), spec.get("initContainers")
    running = sum(asked(c, f"spec.containers[{i}]", True)
                  for i, c in enumerate(containers if isinstance(containers, list) else []) if isinstance(c, dict))
    sidecars = init_peak = 0
    for i, c in enumerate(inits if isinstance(inits, list) else []):
        if not isinstance(c, dict):
            continue
        sidecar = c.get("restartPolicy") == "Always"
        # only sidecars are resized in place; an init container's status is not read
        need = asked(c, f"spec.initContainers[{i}]", sidecar)
        if sidecar:
            running += need
            sidecars += need
            init_peak = max(init_peak, sidecars)
        else:
            init_peak = max(init_peak, need + sidecars)
    return max(running, init_peak)


def _pod_request(spec: dict[str, Any], status: Any, res: Resource, problems: list[str]) -> int:
    pod_level = _requests(spec.get("resources"))
    if isinstance(pod_level, dict) and pod_level.get(res.name) is not None:
        # PodLevelResources: the pod's own request stands for its containers' (per
        # resource: a pod-level memory request alone leaves CPU to the containers)
        total = _effective(pod_level, status.get("resources") if isinstance(status, dict) else None,
                           status.get("allocatedResources") if isinstance(status, dict) else None,
                           _resize_infeasible(status), res, "spec.resources", problems)
    else:
        total = _containers(spec, status, res, problems)
    overhead = spec.get("overhead")
    if isinstance(overhead, dict) and overhead.get(res.name) is not None:
        try:
            total += res.parse(overhead[res.name], what=f"spec.overhead.{res.name}")
        except QuantityError as exc:
            problems.append(str(exc))
    return min(total, res.most)


def pod_requests(pod: Any) -> Requests:
    """The pod's CPU and memory requests as NodeResourcesFit counts them."""
    spec = pod.get("spec") if isinstance(pod, dict) else None
    if not isinstance(spec, dict):
        return Requests(0, 0)
    problems: list[str] = []
    status = pod.get("status")
    cpu = _pod_request(spec, status, CPU_RESOURCE, problems)
    memory = _pod_request(spec, status, MEMORY_RESOURCE, problems)
    return Requests(cpu, memory, tuple(problems))


def _allocatable(node: Any, res: Resource, what: str) -> tuple[int, str | None]:
    status = node.get("status") if isinstance(node, dict) else None
    allocatable = status.get("allocatable") if isinstance(status, dict) else None
    value = allocatable.get(res.name) if isinstance(allocatable, dict) else None
    if value is None:
        return 0, None
    try:
        return res.parse(value, what=f"status.allocatable.{res.name}"), None
    except QuantityError as exc:
        return 0, f"{exc}; {what} not counted on this node"


def node_cpu_allocatable(node: Any) -> tuple[int, str | None]:
    """(the node's allocatable millicores, 0 where not known; why not, if it was given
    but unreadable). 0 means: CPU does not limit this node's GPUs (as before CPU was read)."""
    return _allocatable(node, CPU_RESOURCE, "CPU")


def node_memory_allocatable(node: Any) -> tuple[int, str | None]:
    """(the node's allocatable memory in bytes, 0 where not known; why not, if unreadable).
    0 means: memory does not limit this node's GPUs."""
    return _allocatable(node, MEMORY_RESOURCE, "memory")
