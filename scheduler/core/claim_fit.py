"""Where a pod asking GPU memory by ResourceClaim (driver gpu.gpusched.io) may go without
over-committing a GPU that also holds gpusched's annotation shares.

kube-scheduler's DRA allocator, not the extender, picks a claim's device, and it sees only
claims: a device's ResourceSlice `memory` capacity less what allocated claims consume. It
does not see annotation shares or the extender's in-flight reservations. So the extender
passes a node only when EVERY device the allocator could pick there is also free in
gpusched's own accounting (claims, annotation shares and reservations): then whichever
device it picks is truly free. A sound rule, and a conservative one: a node where one
device looks free to the allocator but holds shares is refused even if another would do.

Pure: claims, slices and arrays in, decisions and reasons out. Every field is hostile;
what cannot be read is a problem with a reason, never an exception.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scheduler import contract
from scheduler.core.claims import MAX_DEVICE_BYTES, claim_key, memory_bytes
from scheduler.core.snapshot import Allocation
from scheduler.quantity import format_bytes

MAX_REQUESTS = 32  # resource.k8s.io/v1 DeviceRequestsMaxSize
MAX_COUNT = 64  # a node has at most 64 GPUs (snapshot.MAX_GPUS)
MAX_SLICE_DEVICES = 128  # resource.k8s.io/v1 ResourceSliceMaxDevices


@dataclass(frozen=True)
class ClaimDemand:
    """What the allocator must find for one unallocated claim, of DeviceClass gpu.gpusched.io:
    one entry per device, the bytes of `memory` it asks, or None for a whole device."""
    key: str  # "claim:<namespace>/<name>", as scheduler.core.claims.claim_key
    asks: tuple[int | None, ...]


@dataclass(frozen=True)
class SliceDevice:
    name: str  # the GPU's NVML UUID, lowercased (the agent's device name)
    capacity: int  # bytes of `memory` the allocator may hand out
    multiple: bool  # allowMultipleAllocations: else one claim takes the whole device


def _memory_ask(exactly: Mapping[str, Any], where: str) -> tuple[int | None, str | None]:
    cap = exactly.get("capacity")
    if cap is None:
        return None, None
    reqs = cap.get("requests") if isinstance(cap, Mapping) else None
    if not isinstance(reqs, Mapping):
        return None, f"{where}: capacity has no requests"
    text = reqs.get(contract.DRA_MEMORY)
    if text is None:
        return None, None  # other capacities only: the allocator gives the whole memory
    if not isinstance(text, str):
        return None, f"{where}: capacity.requests.{contract.DRA_MEMORY} is not a quantity"
    n, problem = memory_bytes(text, f"{where} {contract.DRA_MEMORY}")
    if n is None:
        return None, problem
    if n <= 0:
        return None, f"{where}: asks no {contract.DRA_MEMORY}"
    return n, None


def claim_demand(claim: Any) -> tuple[ClaimDemand | None, str | None]:
    """(what an unallocated claim asks of class gpu.gpusched.io, why it cannot be placed).
    (None, None): nothing of ours, or already allocated (the allocator picks nothing new).
    Shapes the rule above cannot bound (All, firstAvailable, adminAccess) are refused."""
    if not isinstance(claim, Mapping):
        return None, "not an object"
    status = claim.get("status")
    if isinstance(status, Mapping) and status.get("allocation") is not None:
        return None, None
    spec = claim.get("spec")
    devices = spec.get("devices") if isinstance(spec, Mapping) else None
    requests = devices.get("requests") if isinstance(devices, Mapping) else None
    if requests is None:
        return None, None
    if not isinstance(requests, list) or len(requests) > MAX_REQUESTS:
        return None, f"spec.devices.requests: expected a list of at most {MAX_REQUESTS}"
    asks: list[int | None] = []
    for i, r in enumerate(requests):
        where = f"request {i}"
        if not isinstance(r, Mapping):
            return None, f"{where}: not an object"
        alternatives = r.get("firstAvailable")
        if isinstance(alternatives, list) and any(
                isinstance(a, Mapping) and a.get("deviceClassName") == contract.DRA_DRIVER for a in alternatives):
            return None, f"{where}: firstAvailable with class {contract.DRA_DRIVER} is not supported by gpusched"
        exactly = r.get("exactly")
        if not isinstance(exactly, Mapping) or exactly.get("deviceClassName") != contract.DRA_DRIVER:
            continue
        if exactly.get("adminAccess"):
            return None, f"{where}: adminAccess to {contract.DRA_DRIVER} devices is not supported by gpusched"
        if exactly.get("allocationMode", "ExactCount") != "ExactCount":
            return None, f"{where}: allocationMode {str(exactly.get('allocationMode'))[:20]!r} is not supported " \
                         "by gpusched (ExactCount only)"
        count = exactly.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            return None, f"{where}: count must be 1..{MAX_COUNT}"
        memory, problem = _memory_ask(exactly, where)
        if problem:
            return None, problem
        asks += [memory] * count
    if not asks:
        return None, None
    if len(asks) > MAX_COUNT:
        return None, f"asks {len(asks)} devices, more than any node has"
    return ClaimDemand(claim_key(claim), tuple(asks)), None


def slice_devices(rslice: Any) -> tuple[str | None, tuple[SliceDevice, ...], tuple[str, ...]]:
    """(node, devices, problems) of a ResourceSlice of driver gpu.gpusched.io; node None for
    a slice of another driver or of no node. A device whose capacity does not read is kept
    with the largest capacity any GPU may have: the allocator might still offer it."""
    spec = rslice.get("spec") if isinstance(rslice, Mapping) else None
    if not isinstance(spec, Mapping) or spec.get("driver") != contract.DRA_DRIVER:
        return None, (), ()
    node = spec.get("nodeName")
    if not isinstance(node, str) or not node:
        return None, (), ("slice names no node",)
    raw = spec.get("devices")
    if not isinstance(raw, list):
        return node, (), ()
    out: list[SliceDevice] = []
    problems: list[str] = []
    for d in raw[:MAX_SLICE_DEVICES]:
        name = d.get("name") if isinstance(d, Mapping) else None
        if not isinstance(name, str) or not name:
            problems.append("a device without a name")
            continue
        cap = d.get("capacity")
        mem = cap.get(contract.DRA_MEMORY) if isinstance(cap, Mapping) else None
        text = mem.get("value") if isinstance(mem, Mapping) else None
        capacity, problem = memory_bytes(text if isinstance(text, str) else "", f"device {name[:64]} memory")
        if capacity is None:
            # unreadable: as large as a GPU may be, the allocator's most permissive reading
            problems.append(str(problem))
            capacity = MAX_DEVICE_BYTES
        out.append(SliceDevice(name, capacity, d.get("allowMultipleAllocations") is True))
    return node, tuple(out), tuple(problems)


# ---------- the rule, over candidate nodes

@dataclass(frozen=True)
class NodeDevices:
    """One node's devices, as the allocator and as gpusched see them: [R, D] arrays (R candidate
    nodes, D the most devices any has; padding has present False)."""
    present: np.ndarray  # bool: a device of the node's slices
    capacity: np.ndarray  # int64: its slice capacity
    multiple: np.ndarray  # bool: allowMultipleAllocations
    claimed: np.ndarray  # int64: what allocated claims consume of it (a whole device: its capacity)
    free: np.ndarray  # int64: gpusched's free memory on its GPU (0: not in the node's report, not usable)
    whole_free: np.ndarray  # bool: gpusched holds nothing on its GPU


# why a node fails, by code; the number after is the first offending device's column
FITS, NO_DEVICE, SHARES_ON_DEVICE, HELD_ON_DEVICE = 0, 1, 2, 3


def fit_claims(asks: Sequence[int | None], d: NodeDevices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ok [R], why [R] code, device [R] column) for a pod whose unallocated claims ask `asks`.

    On each device the allocator may put any of the asks whose memory is at most what it
    sees free (capacity - claimed; a whole ask, or any ask on a device without multiple
    allocations, needs it unclaimed). Together they take at most min(its free, their sum):
    gpusched must have that much free there, and the device untouched where a whole ask
    fits. A node fails too where some ask fits no device at all in this view: the
    allocator's differs from it (a claim released meanwhile), so its choice is unknown."""
    rows = d.present.shape[0]
    seen = np.where(d.present, np.maximum(d.capacity - d.claimed, 0), -1)
    unclaimed = d.present & (d.claimed == 0)
    share_total = np.zeros(seen.shape, np.int64)
    takes_whole = np.zeros(seen.shape, bool)
    any_fits = np.ones(rows, bool)
    for m in asks:
        if m is None:
            fits = unclaimed
            takes_whole |= fits
        else:
            shared = d.multiple & (seen >= m)
            fits = shared | (~d.multiple & unclaimed & (d.capacity >= m))
            share_total += np.where(shared, m, 0)
            takes_whole |= fits & ~d.multiple
        any_fits &= fits.any(axis=1)
    could = np.minimum(share_total, np.maximum(seen, 0))
    held = takes_whole & ~d.whole_free
    short = (could > 0) & (d.free < could)
    bad = held | short
    ok = any_fits & ~bad.any(axis=1)
    why = np.select([~any_fits, held.any(axis=1), short.any(axis=1)],
                    [NO_DEVICE, HELD_ON_DEVICE, SHARES_ON_DEVICE], FITS)
    column = np.where(held.any(axis=1), np.argmax(held, axis=1), np.argmax(short, axis=1))
    return ok, why, column


def fit_reason(code: int, asks: Sequence[int | None], device: str, gpu: int | None, seen_free: int,
               gpusched_free: int) -> str:
    """The FailedScheduling text of one refused node."""
    what = " + ".join("a whole GPU" if m is None else format_bytes(m) for m in asks[:4]) + \
        (" + ..." if len(asks) > 4 else "")
    where = f"device {device[:48]}" + (f" (GPU {gpu})" if gpu is not None else " (not in the node's report)")
    if code == NO_DEVICE:
        return (f"gpusched: no {contract.DRA_DRIVER} device fits {what} as the claims stand "
                "(kube-scheduler's view differs; retrying)")
    if code == HELD_ON_DEVICE:
        return (f"gpusched: kube-scheduler's allocator could give {what} {where} whole, "
                "but gpusched holds memory there for annotation pods")
    return (f"gpusched: kube-scheduler's allocator could give {what} {where} "
            f"({format_bytes(seen_free)} free to it), but only {format_bytes(gpusched_free)} is free "
            "after gpusched's annotation shares")


# ---------- bind: what the allocator chose, checked against the records

def held_by_others(allocations: Sequence[Allocation], gpu: int, total: int, own_prefix: str) -> int:
    """Bytes of GPU `gpu` held by allocations other than a claim's own (keys `own_prefix`#i);
    a whole GPU holds its total."""
    return sum(total if a.whole else a.memory_per_gpu for a in allocations
               if gpu in a.gpu_ids and not a.pod_key.startswith(own_prefix))


def overcommit(claim_allocs: Sequence[Allocation], node_allocs: Sequence[Allocation],
               totals: Mapping[int, int], own_prefix: str) -> str | None:
    """Why a claim's allocation on a node over-commits a GPU, with everything else held there
    counted, or None. A whole GPU must hold nothing else; a share fits in what is left."""
    for a in claim_allocs:
        for g in a.gpu_ids:
            total = totals.get(g, 0)
            others = held_by_others(node_allocs, g, total, own_prefix)
            mine = total if a.whole else a.memory_per_gpu
            if (a.whole and others) or others + mine > total:
                return (f"GPU {g} holds {format_bytes(others)} of {format_bytes(total)} for others, "
                        f"the claim {'wants it whole' if a.whole else 'consumes ' + format_bytes(mine)}")
    return None


# ---------- which claims a pod uses

def pod_claims(pod: Any) -> tuple[tuple[str, ...], str | None]:
    """(the names of the ResourceClaims a pod uses, in its namespace; why they are not known).
    A claim from a template is named in status.resourceClaimStatuses once the resourceclaim
    controller made it; a status entry without a name means the pod needs no claim there."""
    spec = pod.get("spec") if isinstance(pod, Mapping) else None
    entries = spec.get("resourceClaims") if isinstance(spec, Mapping) else None
    if not entries:
        return (), None
    if not isinstance(entries, list) or len(entries) > MAX_REQUESTS:
        return (), f"spec.resourceClaims: expected a list of at most {MAX_REQUESTS}"
    status = pod.get("status")
    statuses = status.get("resourceClaimStatuses") if isinstance(status, Mapping) else None
    made = {s["name"]: s.get("resourceClaimName") for s in statuses or []
            if isinstance(s, Mapping) and isinstance(s.get("name"), str)} if isinstance(statuses, list) else {}
    names: list[str] = []
    for e in entries:
        if not isinstance(e, Mapping) or not isinstance(e.get("name"), str):
            return (), "spec.resourceClaims: an entry without a name"
        if isinstance(e.get("resourceClaimName"), str) and e["resourceClaimName"]:
            names.append(e["resourceClaimName"])
        elif e["name"] not in made:
            return (), f"the ResourceClaim of {e['name'][:64]!r} is not made yet"
        else:
            made_name = made[e["name"]]
            if isinstance(made_name, str) and made_name:
                names.append(made_name)
    return tuple(names), None
