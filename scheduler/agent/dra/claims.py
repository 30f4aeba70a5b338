"""What a ResourceClaim asks this node to prepare: its allocation's devices of driver
gpu.gpusched.io, each resolved to a GPU of this node, with the memory it consumes.

The kubelet sends only the claim's namespace, name and UID; the allocation is read from
the API server, where kube-scheduler wrote it. Everything in it is checked before a
container gets a GPU: the UID (a claim deleted and recreated under the same name is
another claim), the driver, the pool (each node is its own pool: a device of another
node's pool is refused), the device (a GPU of this node, by UUID), the memory consumed
(positive, at most the GPU's). Pure: objects in, plan or ClaimRefused out.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler import contract, names
from scheduler.agent.dra.devices import GPU, device_name, publishable
from scheduler.quantity import QuantityError, parse_bytes

# ResourceClaim UIDs are RFC 4122 UUIDs; the kubelet's are checked against this before one
# becomes part of a file name.
UID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ClaimRefused(ValueError):
    """This claim cannot be prepared on this node; the message says why (the kubelet shows it
    in the pod's events and retries)."""


@dataclass(frozen=True)
class ClaimRef:
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"ResourceClaim {self.namespace}/{self.name} (uid {self.uid})"


@dataclass(frozen=True)
class PreparedGPU:
    """One GPU of the claim: the allocation results naming it, and what they consume."""
    results: tuple[tuple[str, str | None], ...]  # (request, shareID) of each result, in the claim's order
    pool: str
    device: str
    uuid: str
    index: int
    memory_total: int  # NVML's total, bytes: the denominator of vLLM's --gpu-memory-utilization
    capacity: int  # the device's published `memory` capacity (usable bytes)
    consumed: int  # bytes the claim consumes of `capacity`

    @property
    def whole(self) -> bool:
        return self.consumed >= self.capacity


@dataclass(frozen=True)
class ClaimPlan:
    ref: ClaimRef
    gpus: tuple[PreparedGPU, ...]  # by GPU index (PCI bus order, CUDA_DEVICE_ORDER=PCI_BUS_ID)


def ref_problem(namespace: object, name: object, uid: object) -> str | None:
    """Why the kubelet's claim reference is unusable, or None."""
    if (err := names.label_error(namespace)) is not None:
        return f"claim namespace {namespace!r} {err}"
    if (err := names.subdomain_error(name)) is not None:
        return f"claim name {name!r} {err}"
    if not isinstance(uid, str) or not UID_RE.fullmatch(uid):
        return f"claim uid {uid!r} is not a UUID"
    return None


def _consumed(result: Mapping[str, Any], capacity: int, where: str) -> int:
    cc = result.get("consumedCapacity")
    if cc is None:
        return capacity  # allocated as a device that is not shared: all of it
    if not isinstance(cc, Mapping) or not isinstance(cc.get(contract.DRA_MEMORY), str):
        raise ClaimRefused(f"{where}: consumedCapacity has no {contract.DRA_MEMORY!r} quantity")
    text = cc[contract.DRA_MEMORY]
    try:
        n = parse_bytes(text, what=f"{where}: consumed {contract.DRA_MEMORY}")
    except QuantityError as exc:
        raise ClaimRefused(str(exc)) from None
    if n > capacity:
        raise ClaimRefused(f"{where}: consumes {text} of {contract.DRA_MEMORY}, the GPU has {capacity} bytes")
    return n


def plan(claim: Any, ref: ClaimRef, node: str, gpus: Sequence[GPU]) -> ClaimPlan:
    """The GPUs of this claim on this node. Raises ClaimRefused, naming the claim and the reason."""
    if not isinstance(claim, Mapping):
        raise ClaimRefused(f"{ref}: not found")
    meta: Mapping[str, Any] = claim["metadata"] if isinstance(claim.get("metadata"), Mapping) else {}
    if meta.get("uid") != ref.uid:
        raise ClaimRefused(f"{ref}: the API server's claim of that name has uid {meta.get('uid')!r} "
                           "(deleted and recreated?)")
    if meta.get("namespace") != ref.namespace or meta.get("name") != ref.name:
        raise ClaimRefused(f"{ref}: the API server returned {meta.get('namespace')}/{meta.get('name')}")
    status: Mapping[str, Any] = claim["status"] if isinstance(claim.get("status"), Mapping) else {}
    alloc = status.get("allocation")
    results = alloc.get("devices", {}).get("results") if isinstance(alloc, Mapping) and \
        isinstance(alloc.get("devices"), Mapping) else None
    if not isinstance(results, list):
        raise ClaimRefused(f"{ref}: not allocated")
    ours = [r for r in results if isinstance(r, Mapping) and r.get("driver") == contract.DRA_DRIVER]
    if not ours:
        drivers = sorted({str(r.get("driver")) for r in results if isinstance(r, Mapping)})
        raise ClaimRefused(f"{ref}: no device of driver {contract.DRA_DRIVER} in its allocation "
                           f"(drivers: {', '.join(drivers) or 'none'})")
    by_name = {device_name(g.uuid): g for g in publishable(gpus) if g.uuid}
    picked: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(ours):
        where = f"{ref}, result {i} ({r.get('pool')}/{r.get('device')})"
        if r.get("pool") != node:
            raise ClaimRefused(f"{where}: allocated in pool {r.get('pool')!r}, this is node {node!r}")
        if r.get("adminAccess"):
            raise ClaimRefused(f"{where}: admin access is not supported by {contract.DRA_DRIVER}")
        dev = r.get("device")
        g = by_name.get(dev) if isinstance(dev, str) else None
        if g is None:
            raise ClaimRefused(f"{where}: no healthy GPU {r.get('device')!r} on node {node}")
        assert g.uuid is not None and g.memory_usable is not None and g.memory_total is not None
        consumed = _consumed(r, g.memory_usable, where)
        share = r.get("shareID")
        p = picked.setdefault(str(dev), {"gpu": g, "results": [], "consumed": 0})
        p["results"].append((str(r.get("request", "")), share if isinstance(share, str) else None))
        p["consumed"] += consumed
    out = []
    for dev, p in picked.items():
        g = p["gpu"]
        if p["consumed"] > g.memory_usable:
            raise ClaimRefused(f"{ref}: its requests consume {p['consumed']} bytes of {dev}, "
                               f"the GPU has {g.memory_usable}")
        out.append(PreparedGPU(results=tuple(p["results"]), pool=node, device=dev,
                               uuid=g.uuid, index=g.index, memory_total=g.memory_total,
                               capacity=g.memory_usable, consumed=p["consumed"]))
    return ClaimPlan(ref, tuple(sorted(out, key=lambda x: x.index)))
