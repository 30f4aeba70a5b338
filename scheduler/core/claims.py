"""ResourceClaims (resource.k8s.io/v1, as the API returns them) to the GPU memory they hold.

kube-scheduler's DRA allocator writes into a claim's status which devices of which pool it
got, and for a share how much of the device's `memory` capacity it consumes. The agent
publishes each GPU as a device of driver gpu.gpusched.io in a pool named after its node,
named by its NVML UUID lowercased (scheduler/agent/dra/devices.py). The extender counts
those allocations as held memory on the node report's GPU of that UUID, so a pod placed by
DRA and a pod placed by the extender never get the same GPU memory twice.

Two steps, because a claim and the report that names its GPUs arrive separately:
`claim_held` reads a claim alone (node, device names, bytes); `allocations_on` resolves the
devices against the node's report at the time the snapshot is built. Every field is hostile:
a device or node that does not check out is left uncounted and said in the problems, never
raised. Pure: objects in, data out.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scheduler import contract
from scheduler.core.snapshot import Allocation, NodeState
from scheduler.nodeinfo import MAX_GPU_MEMORY_MIB
from scheduler.quantity import QuantityError, parse_bytes

MiB = 2**20
MAX_DEVICE_BYTES = MAX_GPU_MEMORY_MIB * MiB  # what a node report may claim per GPU (1 TiB)
MAX_RESULTS = 64  # results read per claim: a GPU node has at most 64 GPUs (snapshot.MAX_GPUS)


@dataclass(frozen=True)
class HeldDevice:
    device: str  # the ResourceSlice device name: the GPU's UUID, lowercased
    consumed: int | None  # bytes of `memory` consumed; None: allocated whole (no consumedCapacity)


@dataclass(frozen=True)
class HeldClaim:
    """What one allocated claim holds of driver gpu.gpusched.io, before its GPUs are resolved."""
    key: str  # "claim:<namespace>/<name>", apart from pod keys in the snapshot's allocations
    node: str
    devices: tuple[HeldDevice, ...]


def claim_key(claim: Mapping[str, Any]) -> str:
    meta = claim.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return f"claim:{meta.get('namespace', '')}/{meta.get('name', '')}"


def _selected_node(alloc: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(node, problem): the one node the allocation's nodeSelector names, None where it has
    none. kube-scheduler writes node-local allocations as matchFields metadata.name In [node]."""
    sel = alloc.get("nodeSelector")
    if sel is None:
        return None, None
    terms = sel.get("nodeSelectorTerms") if isinstance(sel, Mapping) else None
    if isinstance(terms, list) and len(terms) == 1 and isinstance(terms[0], Mapping):
        fields = terms[0].get("matchFields")
        if not terms[0].get("matchExpressions") and isinstance(fields, list) and len(fields) == 1 \
                and isinstance(fields[0], Mapping):
            f = fields[0]
            values = f.get("values")
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and isinstance(values, list) \
                    and len(values) == 1 and isinstance(values[0], str) and values[0]:
                return values[0], None
    return None, "its nodeSelector does not name one node"


def _consumed(result: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """(bytes consumed or None for a whole device, problem)."""
    cc = result.get("consumedCapacity")
    if cc is None:
        return None, None
    text = cc.get(contract.DRA_MEMORY) if isinstance(cc, Mapping) else None
    if not isinstance(text, str):
        return None, f"consumedCapacity has no {contract.DRA_MEMORY!r} quantity"
    return memory_bytes(text, f"consumed {contract.DRA_MEMORY}")


def memory_bytes(text: str, what: str) -> tuple[int | None, str | None]:
    """(bytes, None) for a device memory quantity no GPU could exceed, else (None, why)."""
    try:
        return parse_bytes(text, what=what, max_bytes=MAX_DEVICE_BYTES), None
    except QuantityError as exc:
        return None, str(exc)


def claim_held(claim: Any) -> tuple[HeldClaim | None, tuple[str, ...]]:
    """(what the claim holds of gpu.gpusched.io devices, problems). None: the claim holds
    nothing of ours (not allocated, other drivers only, or nothing that checks out)."""
    if not isinstance(claim, Mapping):
        return None, ("not an object",)
    status = claim.get("status")
    alloc = status.get("allocation") if isinstance(status, Mapping) else None
    if alloc is None:
        return None, ()
    devices = alloc.get("devices") if isinstance(alloc, Mapping) else None
    results = devices.get("results") if isinstance(devices, Mapping) else None
    if not isinstance(results, list):
        return None, ("allocation has no device results",)
    ours = [r for r in results[:MAX_RESULTS] if isinstance(r, Mapping) and r.get("driver") == contract.DRA_DRIVER]
    if not ours:
        return None, ()
    assert isinstance(alloc, Mapping)
    node, problem = _selected_node(alloc)
    if problem:
        return None, (problem,)
    problems: list[str] = []
    held: list[HeldDevice] = []
    for r in ours:
        pool, dev = r.get("pool"), r.get("device")
        where = f"device {str(pool)[:64]}/{str(dev)[:64]}"
        if not isinstance(pool, str) or not pool or not isinstance(dev, str) or not dev:
            problems.append(f"{where}: no pool or device name")
            continue
        node = node or pool  # each node is its own pool (the agent's slices)
        if pool != node:
            problems.append(f"{where}: pool {pool!r} is not node {node!r}'s")
            continue
        consumed, problem = _consumed(r)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        held.append(HeldDevice(dev, consumed))
    if not held or node is None:
        return None, tuple(problems)
    return HeldClaim(claim_key(claim), node, tuple(held)), tuple(problems)


MAX_NODE_NAME = 253  # a Node's name is a DNS subdomain
NO_NODE = ("its allocation names no node (no nodeSelector metadata.name, no pool): nvidia.com/gpu pods "
           "are not kept off its GPUs")
NOT_READ = ("its allocation cannot be read (a result without a driver name, devices not a list): not counted; "
            "nvidia.com/gpu pods are kept off its nodes")


def _asks_our_class(claim: Mapping[str, Any]) -> bool:
    """Whether the claim's spec asks DeviceClass gpu.gpusched.io anywhere (exactly or firstAvailable)."""
    spec = claim.get("spec")
    devices = spec.get("devices") if isinstance(spec, Mapping) else None
    requests = devices.get("requests") if isinstance(devices, Mapping) else None
    for r in requests[:MAX_RESULTS] if isinstance(requests, list) else ():
        if not isinstance(r, Mapping):
            continue
        exactly, alternatives = r.get("exactly"), r.get("firstAvailable")
        if isinstance(exactly, Mapping) and exactly.get("deviceClassName") == contract.DRA_DRIVER:
            return True
        if isinstance(alternatives, list) and any(isinstance(a, Mapping) and a.get("deviceClassName") ==
                                                  contract.DRA_DRIVER for a in alternatives[:MAX_RESULTS]):
            return True
    return False


def _node_name(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_NODE_NAME else None


def _selector_names(alloc: Mapping[str, Any]) -> list[str]:
    """Every node a nodeSelector names by `matchFields metadata.name In [...]`, in any term:
    read leniently, where _selected_node wants exactly one."""
    sel = alloc.get("nodeSelector")
    terms = sel.get("nodeSelectorTerms") if isinstance(sel, Mapping) else None
    names: list[str] = []
    for term in terms[:MAX_RESULTS] if isinstance(terms, list) else ():
        fields = term.get("matchFields") if isinstance(term, Mapping) else None
        for f in fields[:MAX_RESULTS] if isinstance(fields, list) else ():
            values = f.get("values") if isinstance(f, Mapping) and f.get("key") == "metadata.name" \
                and f.get("operator") == "In" else None
            names += [n for n in map(_node_name, values[:MAX_RESULTS] if isinstance(values, list) else ()) if n]
    return names


def allocated_nodes(claim: Any) -> tuple[tuple[str, ...], str | None]:
    """(the nodes where an allocated claim of gpu.gpusched.io may hold GPUs, problem): what
    keeps nvidia.com/gpu pods off (scheduler/core/beside_claims.py), read even where
    claim_held cannot count the claim, so a claim gpusched cannot count still closes its node.

    Ours: a result of driver gpu.gpusched.io, or, where the results cannot be read (not a
    list, an entry not an object or without a driver name), a spec asking that DeviceClass.
    The nodes: those its nodeSelector names by metadata.name (the pod runs on one of them)
    and the pools of its results of our driver or of no readable driver (the agent names
    each pool after its node, where the GPU is): both, where they disagree, since either may
    be where a device is held. Ours and allocated but naming no node: (), NO_NODE."""
    if not isinstance(claim, Mapping):
        return (), None
    status = claim.get("status")
    alloc = status.get("allocation") if isinstance(status, Mapping) else None
    if alloc is None:
        return (), None  # not allocated: holds nothing anywhere
    alloc = alloc if isinstance(alloc, Mapping) else {}
    devices = alloc.get("devices")
    results = devices.get("results") if isinstance(devices, Mapping) else None
    entries = results[:MAX_RESULTS] if isinstance(results, list) else []
    drivers = [r.get("driver") if isinstance(r, Mapping) else None for r in entries]
    unreadable = not isinstance(results, list) or any(not isinstance(d, str) for d in drivers)
    if contract.DRA_DRIVER not in drivers and not (unreadable and _asks_our_class(claim)):
        return (), None  # another driver's, or nothing says it is ours
    nodes = _selector_names(alloc) + [
        n for r, d in zip(entries, drivers) if d == contract.DRA_DRIVER or not isinstance(d, str)
        for n in [_node_name(r.get("pool")) if isinstance(r, Mapping) else None] if n]
    if not nodes:
        return (), NO_NODE
    return tuple(sorted(set(nodes))), None


def allocations_on(held: HeldClaim, state: NodeState | None) -> tuple[list[Allocation], tuple[str, ...]]:
    """The snapshot allocations of a held claim on its node, one per GPU, and the devices
    left uncounted. A device is the report's GPU of that UUID; a share consuming at least
    the GPU's memory (a whole device's consumedCapacity is all of it) counts as whole."""
    if state is None:
        return [], ()  # no row to count it on; the rebuild after the node appears does
    gpus = state.report.gpus if state.report else ()
    by_device = {g.uuid.lower(): g for g in gpus if g.uuid}  # the agent's device name (devices.device_name)
    per_gpu: dict[int, int | None] = {}
    problems: list[str] = []
    for d in held.devices:
        g = by_device.get(d.device)
        if g is None:
            problems.append(f"device {d.device[:64]}: no GPU of that UUID in node {held.node}'s report")
            continue
        if d.consumed is None or g.index in per_gpu and per_gpu[g.index] is None:
            per_gpu[g.index] = None
        else:
            per_gpu[g.index] = (per_gpu.get(g.index) or 0) + d.consumed
    total = {g.index: g.memory_total for g in gpus}
    out = []
    for index, consumed in sorted(per_gpu.items()):
        whole = consumed is None or consumed >= total[index]
        out.append(Allocation(pod_key=f"{held.key}#{index}", gpu_ids=(index,),
                              memory_per_gpu=total[index] if consumed is None else consumed, whole=whole))
    return out, tuple(problems)
