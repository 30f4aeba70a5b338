"""This node's GPUs as one ResourceSlice of driver gpu.gpusched.io (resource.k8s.io/v1).

Each healthy GPU is one device that may be allocated many times
(`allowMultipleAllocations`) with a consumable `memory` capacity: a share is a claim
that requests part of it, a whole GPU one that requests none (and so consumes all of it,
`CapacityRequirements` in k8s.io/api resource/v1). kube-scheduler's allocator, not
gpusched, sums what the claims consume. Pure: GPUs in, object out.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from scheduler import contract

# A device name is a DNS label. NVML's UUID "GPU-5a1c00e2-7d3b-..." lowercased is one
# (40 characters), and naming devices by UUID means an allocation names the very GPU,
# whatever order the driver enumerates them in after a reboot.
_UUID_RE = re.compile(r"GPU-[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


class GPU(Protocol):
    """What a slice needs of nvml.GPUInfo."""
    index: int
    uuid: str | None
    name: str | None
    memory_total: int | None
    healthy: bool
    lost: bool

    @property
    def memory_usable(self) -> int | None: ...


def device_name(uuid: str) -> str | None:
    """The device name of the GPU with this NVML UUID, or None for a UUID of another form."""
    return uuid.lower() if isinstance(uuid, str) and _UUID_RE.fullmatch(uuid) else None


def slice_name(node: str) -> str:
    """One slice per node and driver: '<node>-gpu.gpusched.io' (a DNS subdomain, as the node's name is)."""
    return f"{node}-{contract.DRA_DRIVER}"


def publishable(gpus: Iterable[GPU]) -> list[GPU]:
    """The GPUs worth offering: healthy, with a UUID of NVML's form and a known memory size."""
    return [g for g in gpus if g.healthy and not g.lost and g.uuid is not None and device_name(g.uuid)
            and g.memory_usable]


def device(g: GPU) -> dict[str, Any]:
    """One GPU as a resource.k8s.io/v1 Device. `memory` is what workloads can use (NVML's total less
    the driver's reservation): a share can never be granted memory the GPU does not have."""
    assert g.uuid is not None and g.memory_usable is not None  # publishable() checked
    attrs: dict[str, Any] = {"uuid": {"string": g.uuid}, "index": {"int": g.index}}
    if g.name:
        attrs["productName"] = {"string": g.name[:64]}  # attribute strings are at most 64 characters
    return {
        "name": device_name(g.uuid),
        "attributes": attrs,
        "capacity": {contract.DRA_MEMORY: {"value": str(g.memory_usable)}},
        "allowMultipleAllocations": True,
    }


def resource_slice(node: str, gpus: Sequence[GPU], generation: int, node_uid: str | None = None) -> dict[str, Any]:
    """The ResourceSlice for `node`: its own pool (named after the node), one slice in it."""
    meta: dict[str, Any] = {"name": slice_name(node)}
    if node_uid:  # garbage-collected with its Node, as the kubelet plugin library does
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid,
                                    "controller": True}]
    return {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
        "metadata": meta,
        "spec": {
            "driver": contract.DRA_DRIVER,
            "nodeName": node,
            "pool": {"name": node, "generation": generation, "resourceSliceCount": 1},
            "devices": [device(g) for g in sorted(publishable(gpus), key=lambda g: g.index)],
        },
    }
