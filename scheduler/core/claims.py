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
